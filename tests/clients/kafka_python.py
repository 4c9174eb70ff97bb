"""Scenarios run with kafka-python against a Weir broker by the integration tests
(tests/it/kafka_clients.rs). Usage: kafka_python.py <scenario> <bootstrap host:port>.
Each step prints one JSON line; the Rust test checks them."""

import json
import sys

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


if __name__ == "__main__":
    {"admin": admin, "produce_consume": produce_consume, "committed_offsets": committed_offsets}[sys.argv[1]](sys.argv[2])
