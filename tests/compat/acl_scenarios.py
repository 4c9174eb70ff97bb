"""Access-control scenarios run against a Weir broker by the integration tests
(tests/it/acl.rs), with confluent-kafka (librdkafka) over SASL_PLAINTEXT and SCRAM-SHA-512.
Usage: acl_scenarios.py <bootstrap host:port> <user> <password> <scenario> [args...]

Scenarios, each printing one JSON line per step:
- `produce <topic> <value>`: `produce` (delivered, or the error's name).
- `consume <group> <topic>`: `consume`, the values read by a group member subscribed to the
  topic, or the first error's name.
- `assign <topic>`: `assign`, the values read from partition 0 with no group, or the first
  error's name.
- `topics`: `topics`, the names Metadata lists.
- `admin <create topic> <delete topic>`: `create` and `delete`, each topic's error name or
  null.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def produce(sasl, topic, value):
    errors = []
    producer = Producer({**sasl, "message.timeout.ms": 8000, "error_cb": lambda e: errors.append(e.name())})
    outcome = {}
    producer.produce(topic, value.encode(), on_delivery=lambda e, m: outcome.update(error=e and e.name()))
    producer.flush(15)
    say("produce", delivered="error" in outcome and outcome["error"] is None, error=outcome.get("error"))


def read(consumer, step):
    """Polls until a value or an error comes (20 s at most)."""
    values, error = [], None
    deadline = time.time() + 20
    while not values and error is None and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        if message.error() is None:
            values.append(message.value().decode())
        elif message.error().code() != KafkaError._PARTITION_EOF:
            error = message.error().name()
    consumer.close()
    say(step, values=values, error=error)


def consume(sasl, group, topic):
    consumer = Consumer({**sasl, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    read(consumer, "consume")


def assign(sasl, topic):
    consumer = Consumer({**sasl, "group.id": "readers-assign", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    read(consumer, "assign")


def topics(sasl):
    metadata = AdminClient(sasl).list_topics(timeout=15)
    say("topics", names=sorted(metadata.topics))


def admin(sasl, create, delete):
    client = AdminClient(sasl)
    for step, futures in [
        ("create", client.create_topics([NewTopic(create, 1)], request_timeout=15)),
        ("delete", client.delete_topics([delete], request_timeout=15)),
    ]:
        for name, future in futures.items():
            try:
                future.result(20)
                say(step, topic=name, error=None)
            except KafkaException as e:
                say(step, topic=name, error=e.args[0].name())


if __name__ == "__main__":
    bootstrap, user, password, scenario, *rest = sys.argv[1:]
    sasl = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
    }
    {"produce": produce, "consume": consume, "assign": assign, "topics": topics, "admin": admin}[
        scenario
    ](sasl, *rest)
