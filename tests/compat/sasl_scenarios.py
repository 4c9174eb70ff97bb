"""SASL scenarios run against a Weir broker by the integration tests (tests/it/security.rs,
tests/it/tls.rs).
Usage: sasl_scenarios.py [--tls CAFILE] <client> <bootstrap host:port> <mechanism> <user>
<password> <topic>, where <client> is `confluent` (librdkafka through confluent-kafka) or
`kafka-python`. With `--tls`, SASL runs over TLS (SASL_SSL), the server's certificate verified
against CAFILE (its name too: both clients check it by default).
Each prints one JSON line per step: `produce` (delivered, or the error) and, when it was
delivered, `consume` (the values read back from the start of partition 0)."""

import json
import sys
import time

# The CA file of `--tls`; None: SASL_PLAINTEXT.
CAFILE = None


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def confluent(bootstrap, mechanism, user, password, topic):
    from confluent_kafka import Consumer, Producer, TopicPartition

    sasl = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    if CAFILE is not None:
        sasl.update({"security.protocol": "SASL_SSL", "ssl.ca.location": CAFILE})
    errors = []
    producer = Producer(
        {**sasl, "message.timeout.ms": 8000, "error_cb": lambda e: errors.append(e.name())}
    )
    outcome = {}
    producer.produce(topic, b"over sasl", on_delivery=lambda e, m: outcome.update(error=e and e.name()))
    producer.flush(15)
    delivered = "error" in outcome and outcome["error"] is None
    say("produce", delivered=delivered, error=outcome.get("error"), errors=sorted(set(errors)))
    if not delivered:
        return
    consumer = Consumer({**sasl, "group.id": "sasl-readers", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values = []
    deadline = time.time() + 30
    while not values and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            values.append(message.value().decode())
    consumer.close()
    say("consume", values=values)


def kafka_python(bootstrap, mechanism, user, password, topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    sasl = dict(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_plain_username=user,
        sasl_plain_password=password,
    )
    if CAFILE is not None:
        sasl.update(security_protocol="SASL_SSL", ssl_cafile=CAFILE)
    try:
        producer = KafkaProducer(**sasl, request_timeout_ms=10000, max_block_ms=10000)
        producer.send(topic, b"over sasl").get(timeout=30)
        producer.close()
    except Exception as e:  # the error's type is the result
        say("produce", delivered=False, error=type(e).__name__)
        return
    say("produce", delivered=True, error=None)
    consumer = KafkaConsumer(**sasl, consumer_timeout_ms=10000)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    values = [m.value.decode() for m in consumer]
    consumer.close()
    say("consume", values=values)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--tls"]:
        CAFILE, args = args[1], args[2:]
    {"confluent": confluent, "kafka-python": kafka_python}[args[0]](*args[1:])
