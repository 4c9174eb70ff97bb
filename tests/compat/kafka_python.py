"""Scenarios run with kafka-python against a Weir broker by the integration tests
(tests/it/kafka_clients.rs). Usage: kafka_python.py <scenario> <bootstrap host:port>.
Each step prints one JSON line; the Rust test checks them."""

import json
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import KafkaError


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def error_code(call):
    """0 when `call` succeeds, else the Kafka error code it raised."""
    try:
        call()
        return 0
    except KafkaError as e:
        return getattr(e, "errno", -1)


def describe_result(described, kind, name):
    """{setting: [value, source]} of one resource in a describe_configs answer."""
    entries = described[kind][name]
    return {key: [e["value"], e["config_source"]] for key, e in entries.items()}


def admin(bootstrap):
    client = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    created = client.create_topics(
        [NewTopic("orders", 3, 1, topic_configs={"retention.ms": "60000"})]
    )
    topic = created["topics"][0] if isinstance(created, dict) else None
    say(
        "create",
        error=topic["error_code"] if topic else -1,
        partitions=topic["num_partitions"] if topic else -1,
        retention_ms=topic["configs"]["retention.ms"]["value"] if topic else None,
    )
    say("again", error=error_code(lambda: client.create_topics([NewTopic("orders", 1, 1)])))
    bad_config = NewTopic("x", 1, 1, topic_configs={"segment.bytes": "1"})
    say("bad_config", error=error_code(lambda: client.create_topics([bad_config])))
    say("replicated", error=error_code(lambda: client.create_topics([NewTopic("y", 1, 3)])))
    say("listed", topics=sorted(client.list_topics()))
    say("cluster", cluster=client.describe_cluster())
    say("delete", error=error_code(lambda: client.delete_topics(["orders"])))
    say("delete_missing", error=error_code(lambda: client.delete_topics(["orders"])))
    say("listed_after", topics=sorted(client.list_topics()))
    kept = NewTopic("kept", 2, -1, topic_configs={"retention.bytes": "1048576"})
    say("kept", error=error_code(lambda: client.create_topics([kept])))
    topic = ConfigResource(ConfigResourceType.TOPIC, "kept")
    described = client.describe_configs([topic], config_filter="all")
    say("describe", configs=describe_result(described, "topic", "kept"))
    broker = ConfigResource(ConfigResourceType.BROKER, "0")
    described = client.describe_configs([broker], config_filter="all")
    say("describe_broker", configs=describe_result(described, "broker", "0"))
    grow = {"kept": NewPartitions(4)}
    say("grow", error=error_code(lambda: client.create_partitions(grow)))
    say("shrink", error=error_code(lambda: client.create_partitions({"kept": NewPartitions(2)})))
    # Three records in partition 3, then everything before offset 2 is deleted.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(3):
        producer.send("kept", value=b"r%d" % i, partition=3)
    producer.flush()
    producer.close()
    deleted = client.delete_records({TopicPartition("kept", 3): 2})
    say("delete_records", low_watermark=deleted[TopicPartition("kept", 3)]["low_watermark"])
    past_end = {TopicPartition("kept", 3): 9}
    say("delete_past_end", error=error_code(lambda: client.delete_records(past_end)))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    start = consumer.beginning_offsets([TopicPartition("kept", 3)])
    say("log_start", offset=start[TopicPartition("kept", 3)])
    consumer.close()
    client.close()


def produce_consume(bootstrap):
    # Idempotent by default in kafka-python 3: InitProducerId, then sequenced batches.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(5):
        producer.send("py", key=b"k%d" % i, value=b"v%d" % i)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000
    )
    partition = TopicPartition("py", 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    got = [[m.offset, m.key.decode(), m.value.decode()] for m in consumer]
    say("consumed", records=got)
    consumer.close()


def reader(bootstrap, partition):
    """A consumer of group "readers" assigned `partition`, committing by hand."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="readers",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    consumer.assign([partition])
    return consumer


def committed_offsets(bootstrap):
    """A consumer with an assigned partition and a group id commits its position; a second
    consumer of the same group resumes there; the admin client lists the group's offsets."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(6):
        producer.send("events", value=b"e%d" % i, partition=0)
    producer.flush()
    producer.close()
    partition = TopicPartition("events", 0)
    first = reader(bootstrap, partition)
    read = []
    for message in first:
        read.append(message.value.decode())
        if len(read) == 4:
            break
    first.commit({partition: OffsetAndMetadata(4, "four read", -1)})
    say("first", read=read, committed=first.committed(partition))
    first.close()
    second = reader(bootstrap, partition)
    say("second", read=[m.value.decode() for m in second])
    second.close()
    client = KafkaAdminClient(bootstrap_servers=bootstrap)
    # Two groups in one request (OffsetFetch v8); "nobody" has committed nothing.
    listed = client.list_group_offsets(["readers", "nobody"])
    say(
        "listed",
        offsets={
            group: {f"{tp.topic}:{tp.partition}": [om.offset, om.metadata] for tp, om in offsets.items()}
            for group, offsets in listed.items()
        },
    )
    client.close()


class Member(threading.Thread):
    """A subscribed member of group "fleet-readers" on its own thread: it polls, notes what
    it reads and its assignment, and commits its position after every poll."""

    def __init__(self, bootstrap, name, seen, lock):
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            "fleet",
            bootstrap_servers=bootstrap,
            group_id="fleet-readers",
            client_id=name,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        self.name, self.seen, self.lock = name, seen, lock
        self.assigned = []
        self.stopping = threading.Event()

    def run(self):
        try:
            while not self.stopping.is_set():
                batches = self.consumer.poll(timeout_ms=200)
                with self.lock:
                    for records in batches.values():
                        for r in records:
                            self.seen.append([r.partition, r.offset, r.value.decode()])
                    self.assigned = sorted(tp.partition for tp in self.consumer.assignment())
                self.commit()
        finally:
            # Leaving sends LeaveGroup even when the last commit met a rebalance: a member
            # that died here would stay in the group until its session timed out.
            self.consumer.close()

    def commit(self):
        try:
            self.consumer.commit()
        except KafkaError:
            pass  # a rebalance is under way: the next poll rejoins, the next commit counts

    def stop(self):
        self.stopping.set()
        self.join(timeout=60)


def wait_until(what, check, seconds=60):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def group(bootstrap):
    """Three subscribed members share a 3-partition topic, then one leaves and the other
    two take its partition over; every record is read and every position committed."""
    client = KafkaAdminClient(bootstrap_servers=bootstrap)
    client.create_topics([NewTopic("fleet", 3, 1)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(30):
        producer.send("fleet", value=b"r%d" % i, partition=i % 3)
    producer.flush()
    seen, lock = [], threading.RLock()
    members = [Member(bootstrap, name, seen, lock) for name in ("a", "b", "c")]
    for m in members:
        m.start()

    def split_among(ms):
        with lock:
            parts = [p for m in ms for p in m.assigned]
            return sorted(parts) == [0, 1, 2] and all(m.assigned for m in ms)

    def values():
        with lock:
            return {v for _, _, v in seen}

    wait_until("three members sharing the partitions", lambda: split_among(members))
    wait_until("the first 30 records", lambda: len(values()) == 30)
    with lock:
        say("three", assigned={m.name: m.assigned for m in members})
    members[2].stop()
    wait_until("two members taking over", lambda: split_among(members[:2]))
    for i in range(9):
        producer.send("fleet", value=b"s%d" % i, partition=i % 3)
    producer.flush()
    producer.close()
    wait_until("all 39 records", lambda: len(values()) == 39)
    with lock:
        say("two", assigned={m.name: m.assigned for m in members[:2]}, read=len(values()))
    for m in members[:2]:
        m.stop()
    described = client.describe_groups(["fleet-readers"])["fleet-readers"]
    committed = client.list_group_offsets("fleet-readers")["fleet-readers"]
    say(
        "after",
        state=described["group_state"],
        committed={f"{tp.topic}:{tp.partition}": om.offset for tp, om in committed.items()},
    )
    client.close()


def group_resume(bootstrap):
    """After a broker restart, a new member of the group reads only what came after the
    committed positions."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(3):
        producer.send("fleet", value=b"late%d" % i, partition=i)
    producer.flush()
    producer.close()
    seen, lock = [], threading.RLock()
    member = Member(bootstrap, "d", seen, lock)
    member.start()
    wait_until("the 3 late records", lambda: len(seen) >= 3)
    time.sleep(1)  # anything else that was to come would come now
    member.stop()
    say("resumed", read=sorted(v for _, _, v in seen))
    client = KafkaAdminClient(bootstrap_servers=bootstrap)
    say("listed", groups=client.list_groups())
    say("deleted", result=client.delete_groups(["fleet-readers", "nobody"]))
    say("listed_after", groups=client.list_groups())
    client.close()


if __name__ == "__main__":
    scenarios = {
        "admin": admin,
        "produce_consume": produce_consume,
        "committed_offsets": committed_offsets,
        "group": group,
        "group_resume": group_resume,
    }
    scenarios[sys.argv[1]](sys.argv[2])
