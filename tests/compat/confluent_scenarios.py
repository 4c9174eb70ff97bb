"""Scenarios run with confluent-kafka (Python on librdkafka 2.16, from PyPI) against a Weir
broker by the integration tests (tests/it/kafka_clients.rs). Usage:
confluent_scenarios.py <scenario> <bootstrap host:port> [arguments].
Each step prints one JSON line; the Rust test checks them."""

import json
import sys
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, Producer, TopicPartition


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def read_partition(bootstrap, topic, partition, offset, expected, seconds=30):
    """Values of up to `expected` records of one partition from `offset`, without a group."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, offset)])
    values = []
    deadline = time.monotonic() + seconds
    while len(values) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.append(message.value().decode())
    consumer.close()
    return values


def codecs(bootstrap):
    """Every codec with every acks setting: all delivered, all read back in order; a
    consumer starting at the end reads only what comes after it."""
    results = {}
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        topic = f"codec-{codec}"
        delivered, errors = [], []

        def report(err, message):
            (errors if err else delivered).append(str(err) if err else message.offset())

        sent = []
        for acks in ("0", "1", "all"):
            producer = Producer(
                {
                    "bootstrap.servers": bootstrap,
                    "compression.type": codec,
                    "acks": acks,
                    "linger.ms": 20,
                    "enable.idempotence": False,
                }
            )
            for i in range(20):
                value = f"{codec}-{acks}-{i}-" + "x" * 200
                sent.append(value)
                producer.produce(topic, value=value.encode(), partition=0, on_delivery=report)
            producer.flush(30)
        read = read_partition(bootstrap, topic, 0, OFFSET_BEGINNING, len(sent))
        results[codec] = {"delivered": len(delivered), "errors": errors, "in_order": read == sent}
    say("codecs", results=results)

    # From the end: only what is produced after the consumer is positioned.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition("codec-none", 0, OFFSET_END)])
    deadline = time.monotonic() + 10
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.1)
    # An empty poll cycle resolves OFFSET_END to the current end before anything new lands.
    for _ in range(5):
        consumer.poll(0.2)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(3):
        producer.produce("codec-none", value=b"late%d" % i, partition=0)
    producer.flush(30)
    late = []
    deadline = time.monotonic() + 30
    while len(late) < 3 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            late.append(message.value().decode())
    consumer.close()
    say("latest", read=late)


def idempotent(bootstrap, count):
    """An idempotent producer sends `count` records at a steady pace (the test restarts the
    broker meanwhile) and reports what was delivered."""
    count = int(count)
    delivered, errors = [], []

    def report(err, message):
        if err:
            errors.append(str(err))
        else:
            delivered.append(message.offset())

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120000,
            "reconnect.backoff.max.ms": 500,
        }
    )
    say("started")
    for i in range(count):
        producer.produce("idempotent", value=b"m%d" % i, partition=0, on_delivery=report)
        producer.poll(0)
        time.sleep(0.004)
    left = producer.flush(120)
    say("produced", delivered=len(delivered), errors=errors[:5], error_count=len(errors), undelivered=left)


def read_all(bootstrap, topic, count):
    """Every value in partition 0 of `topic` (at most `count`), in order."""
    values = read_partition(bootstrap, topic, 0, OFFSET_BEGINNING, int(count))
    # Anything past `count` would be a duplicate: look for it.
    extra = read_partition(bootstrap, topic, 0, int(count), 1, seconds=2)
    say("read", count=len(values), distinct=len(set(values)), extra=len(extra),
        in_order=values == [f"m{i}" for i in range(int(count))])


class Member(threading.Thread):
    """A subscribed member of group "plant-readers": it polls, notes what it reads and its
    assignment, and commits after every record it reads."""

    def __init__(self, bootstrap, name, seen, lock):
        super().__init__(daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "plant-readers",
                "client.id": name,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
            }
        )
        self.name, self.seen, self.lock = name, seen, lock
        self.assigned = []
        self.stopping = threading.Event()

    def run(self):
        self.consumer.subscribe(["plant"])
        while not self.stopping.is_set():
            message = self.consumer.poll(0.2)
            with self.lock:
                self.assigned = sorted(tp.partition for tp in self.consumer.assignment())
                if message is None or message.error() is not None:
                    continue
                self.seen.append(message.value().decode())
            try:
                self.consumer.commit(message=message, asynchronous=False)
            except KafkaException:
                pass  # a rebalance is under way: the record comes again to its next owner
        self.consumer.close()

    def stop(self):
        self.stopping.set()
        self.join(timeout=60)


def wait_until(what, check, seconds=60):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def produce_spread(bootstrap, prefix, count):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(count):
        producer.produce("plant", value=b"%s%d" % (prefix.encode(), i), partition=i % 3)
    producer.flush(30)


def group(bootstrap):
    """Three subscribed members share a 3-partition topic; when one closes, the other two
    take its partition over; every record is read and committed."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic("plant", 3, 1)]).values():
        future.result(30)
    produce_spread(bootstrap, "r", 30)
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
            return set(seen)

    wait_until("three members sharing the partitions", lambda: split_among(members))
    wait_until("the first 30 records", lambda: len(values()) == 30)
    with lock:
        say("three", assigned={m.name: m.assigned for m in members})
    members[2].stop()
    wait_until("two members taking over", lambda: split_among(members[:2]))
    produce_spread(bootstrap, "s", 9)
    wait_until("all 39 records", lambda: len(values()) == 39)
    with lock:
        say("two", assigned={m.name: m.assigned for m in members[:2]}, read=len(values()))
    for m in members[:2]:
        m.stop()


def group_resume(bootstrap):
    """After a broker restart, a new member reads only what came after the commits."""
    produce_spread(bootstrap, "late", 3)
    seen, lock = [], threading.RLock()
    member = Member(bootstrap, "d", seen, lock)
    member.start()
    wait_until("the 3 late records", lambda: len(seen) >= 3)
    time.sleep(1)  # anything else that was to come would come now
    member.stop()
    say("resumed", read=sorted(seen))


if __name__ == "__main__":
    scenarios = {
        "codecs": codecs,
        "idempotent": idempotent,
        "read_all": read_all,
        "group": group,
        "group_resume": group_resume,
    }
    scenarios[sys.argv[1]](*sys.argv[2:])
