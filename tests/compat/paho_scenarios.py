"""Scenarios run with paho-mqtt 2.1 (Python, MQTT 3.1.1 and 5) against a Weir broker by the
integration tests (tests/it/mqtt_clients.rs; `tls` by tests/it/tls.rs).

Usage: paho_scenarios.py <scenario> <mqtt host:port> [more arguments: a Kafka address, a
phase, ...]. A scenario's name ends with the protocol it speaks (`_v311` or `_v5`). Each step
prints one JSON line; the Rust test checks them. Every wait is bounded: a step that does not
happen within WAIT seconds fails the scenario (exit status 1) with a message naming it. No
sleep synchronizes anything: where time passing is the behaviour under test (`expiry`,
`will_delay`) the scenario sleeps or waits for a fixed time on purpose."""

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

# How long any single wait may take. Generous: CI machines are small and busy.
WAIT = 20.0

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


class Failed(Exception):
    """A step did not happen; the message says which."""


def text(payload):
    """A payload as text for the JSON lines (undecodable bytes escaped)."""
    return payload.decode("utf-8", errors="backslashreplace")


def props_dict(props):
    """The MQTT 5 properties of a received PUBLISH, as JSON-friendly facts."""
    if props is None:
        return {}
    out = {}
    for name, key in [
        ("UserProperty", "user_properties"),
        ("ContentType", "content_type"),
        ("ResponseTopic", "response_topic"),
        ("PayloadFormatIndicator", "payload_format"),
        ("MessageExpiryInterval", "message_expiry"),
        ("SubscriptionIdentifier", "subscription_ids"),
        ("TopicAlias", "topic_alias"),
    ]:
        if hasattr(props, name):
            value = getattr(props, name)
            out[key] = [list(p) for p in value] if name == "UserProperty" else value
    if hasattr(props, "CorrelationData"):
        out["correlation_data"] = props.CorrelationData.hex()
    return out


def publish_props(**fields):
    props = Properties(PacketTypes.PUBLISH)
    for name, value in fields.items():
        setattr(props, name, value)
    return props


class Peer:
    """One paho client on its own network thread (loop_start), every callback recorded under
    one condition variable, every wait bounded by WAIT."""

    def __init__(
        self,
        name,
        addr,
        version,
        client_id=None,
        clean=True,
        transport="tcp",
        cond=None,
        cafile=None,
    ):
        """`clean` is 3.1.1's Clean Session (MQTT 5's clean start is a `connect` argument);
        `transport="websockets"` speaks MQTT over WebSocket (path `/mqtt`); peers given one
        `cond` share it, so one wait can look at all of them; with `cafile`, the connection is
        TLS (paho's `tls_set`), the server's certificate and name checked against that CA."""
        self.name = name
        self.version = version
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        cid = name if client_id is None else client_id
        kwargs = {"clean_session": clean} if version == V311 else {}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cid,
            protocol=version,
            transport=transport,
            **kwargs,
        )
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        if cafile is not None:
            self.client.tls_set(ca_certs=cafile)
        self.client.max_inflight_messages_set(20)
        self.cond = threading.Condition() if cond is None else cond
        self.connack = None
        self.disconnected = None
        self.messages = []
        self.subacks = {}
        self.unsubacks = {}
        self.acked = {}
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_publish = self._on_publish
        # A lost connection is a fact to report, not something to paper over.
        c.reconnect_delay_set(min_delay=3600, max_delay=3600)
        self.handler = None
        # Topic aliases the server set up (MQTT 5): paho 2.1 passes a PUBLISH with an alias
        # and an empty topic on as it is, so the application resolves it. (In on_message, so
        # in packet order for QoS 0 and 1; paho calls it for QoS 2 only at PUBREL.)
        self.aliases = {}
        self.disconnect_packets = []

    # Callbacks (paho's network thread).
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.connack = {
                "reason_code": reason_code.value,
                "session_present": bool(flags.session_present),
                "properties": properties,
            }
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.cond:
            self.disconnected = {"reason_code": reason_code.value}
            self.cond.notify_all()

    def _on_message(self, client, userdata, message):
        sent_topic = message.topic
        topic = sent_topic
        props = getattr(message, "properties", None)
        alias = getattr(props, "TopicAlias", None) if props is not None else None
        if alias is not None:
            if sent_topic:
                self.aliases[alias] = sent_topic
            else:
                topic = self.aliases.get(alias, "")
        record = {
            "topic": topic,
            "sent_topic": sent_topic,
            "alias": alias,
            "payload": bytes(message.payload),
            "qos": message.qos,
            "retain": bool(message.retain),
            "props": props_dict(getattr(message, "properties", None)),
            "raw_props": getattr(message, "properties", None),
        }
        if self.handler is not None:
            self.handler(record)
        with self.cond:
            self.messages.append(record)
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.subacks[mid] = [rc.value for rc in reason_codes]
            self.cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        with self.cond:
            self.unsubacks[mid] = [rc.value for rc in reason_codes]
            self.cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.cond:
            self.acked[mid] = reason_code.value
            self.cond.notify_all()

    # Waits.
    def wait(self, what, check, timeout=WAIT):
        """Waits until `check()` (called under the lock) is true; returns its value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = check()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failed(f"{self.name}: timed out after {timeout}s waiting for {what}")
                self.cond.wait(left)

    # Actions.
    def connect(self, keepalive=30, will=None, clean_start=True, properties=None):
        """Connects and waits for CONNACK; returns its facts."""
        if will is not None:
            self.client.will_set(**will)
        kwargs = {}
        if self.version == V5:
            kwargs["clean_start"] = clean_start
            kwargs["properties"] = properties
        self.client.connect(self.host, self.port, keepalive=keepalive, **kwargs)
        self.client.loop_start()
        self.wait("CONNACK", lambda: self.connack)
        return self.connack

    def reconnect(self):
        """Connects again with the same client (id, clean session or start, CONNECT
        properties, will, and the publishes paho has not completed, which it sends again) once
        the previous connection is gone and the network thread stopped; waits for CONNACK and
        returns its facts."""
        with self.cond:
            self.connack = None
            self.disconnected = None
        self.client.reconnect()
        self.client.loop_start()
        self.wait("CONNACK", lambda: self.connack)
        return self.connack

    def lost(self):
        """Waits until the connection is gone (the server closed it or it broke), then stops
        paho's network thread (which would reconnect only after an hour)."""
        self.wait("the end of the connection", lambda: self.disconnected)
        self.client.loop_stop()

    def keep_disconnect_packets(self):
        """Keeps the bytes of each DISCONNECT the server sends, in `disconnect_packets`: paho
        2.1 reads its reason code only when the packet has more than 2 bytes after the fixed
        header, and reports 0 otherwise."""
        handle = self.client._handle_disconnect

        def handle_disconnect():
            self.disconnect_packets.append(bytes(self.client._in_packet["packet"]).hex())
            return handle()

        self.client._handle_disconnect = handle_disconnect

    def in_flight(self):
        """Publishes paho has not completed, by state (`MQTT_MS_WAIT_FOR_PUBREC`, ...)."""
        states = {}
        with self.client._out_message_mutex:
            for m in self.client._out_messages.values():
                states[m.state.name] = states.get(m.state.name, 0) + 1
        return states

    def subscribe(self, topic, qos=0, options=None, properties=None):
        """Subscribes (one filter, or a list of (filter, qos|options)); waits for SUBACK and
        returns its reason codes."""
        if options is not None:
            rc, mid = self.client.subscribe(topic, options=options, properties=properties)
        elif isinstance(topic, list):
            rc, mid = self.client.subscribe(topic, properties=properties)
        else:
            rc, mid = self.client.subscribe(topic, qos, properties=properties)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise Failed(f"{self.name}: SUBSCRIBE {topic} not sent: {mqtt.error_string(rc)}")
        return self.wait(f"SUBACK for {topic}", lambda: self.subacks.get(mid))

    def unsubscribe(self, topic):
        rc, mid = self.client.unsubscribe(topic)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise Failed(f"{self.name}: UNSUBSCRIBE {topic} not sent: {mqtt.error_string(rc)}")
        # MQTT 3.1.1's UNSUBACK has no reason codes: paho reports an empty list.
        self.wait(f"UNSUBACK for {topic}", lambda: mid in self.unsubacks)
        return self.unsubacks[mid]

    def send(self, topic, payload, qos=0, retain=False, properties=None):
        """Publishes without waiting; returns the MQTTMessageInfo."""
        info = self.client.publish(topic, payload, qos, retain, properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise Failed(f"{self.name}: PUBLISH {topic} not sent: {mqtt.error_string(info.rc)}")
        return info

    def done(self, infos):
        """Waits until every publish in `infos` completed (QoS 0: written; QoS 1: PUBACK;
        QoS 2: PUBCOMP), as on_publish reports it. (Not `is_published()`: paho sets that
        after on_publish returns, so a wait woken by on_publish could miss it. Message ids
        are unique here: no scenario sends 65,535 publishes from one client.)"""
        self.wait(
            f"{len(infos)} publishes to complete",
            lambda: all(i.mid in self.acked for i in infos),
        )

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publishes and waits for it to complete; returns the PUBACK/PUBREC reason code (MQTT
        5; 0 otherwise)."""
        info = self.send(topic, payload, qos, retain, properties)
        self.done([info])
        with self.cond:
            return self.acked[info.mid]

    def on(self, topic):
        """Messages received so far on `topic`."""
        with self.cond:
            return [m for m in self.messages if m["topic"] == topic]

    def wait_for(self, topic, count=1, payload=None):
        """Waits until `count` messages arrived on `topic` (or one with `payload`); returns
        the messages on `topic`."""
        if payload is not None:
            what = f"{payload!r} on {topic}"
            self.wait(
                what,
                lambda: any(m["topic"] == topic and m["payload"] == payload for m in self.messages),
            )
        else:
            what = f"{count} messages on {topic}"
            self.wait(what, lambda: sum(m["topic"] == topic for m in self.messages) >= count)
        return self.on(topic)

    def close(self):
        """A normal DISCONNECT; waits until the connection is gone."""
        self.client.disconnect()
        self.wait("the end of the connection", lambda: self.disconnected)
        self.client.loop_stop()

    def silence(self):
        """Stops paho's network thread: no more reads, writes or keep-alive pings, and no
        DISCONNECT; the socket stays open."""
        self.client.loop_stop()

    def abort(self):
        """Ends the connection without a DISCONNECT: the socket is shut down and closed under
        paho (its network thread stopped first, so it does not notice or reconnect)."""
        self.client.loop_stop()
        sock = self.client.socket()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def short(messages):
    """Messages as [topic, payload text, qos, retain] for the JSON lines."""
    return [[m["topic"], text(m["payload"]), m["qos"], m["retain"]] for m in messages]


# Scenarios.


def connect(addr, version):
    """CONNACK facts: an empty client id is accepted (MQTT 5: with an Assigned Client
    Identifier and the server's limits), keep alive 0 is accepted, and the client can
    round-trip a message; a client id never seen before that asks for a persistent session
    (clean start 0) gets session present 0."""
    anon = Peer("anon", addr, version, client_id="")
    ack = anon.connect(keepalive=0)
    fields = {"reason_code": ack["reason_code"], "session_present": ack["session_present"]}
    props = ack["properties"]
    if version == V5:
        for name, key in [
            ("AssignedClientIdentifier", "assigned_client_id"),
            ("ReceiveMaximum", "receive_maximum"),
            ("TopicAliasMaximum", "topic_alias_maximum"),
            ("MaximumPacketSize", "maximum_packet_size"),
            ("ServerKeepAlive", "server_keep_alive"),
        ]:
            fields[key] = getattr(props, name, None)
    say("anonymous", **fields)
    # The anonymous, keep-alive-0 client can subscribe and hear its own publish.
    granted = anon.subscribe("hello/anon", 1)
    anon.publish("hello/anon", b"hi", 1)
    got = anon.wait_for("hello/anon")
    say("anonymous_round_trip", granted=granted, received=short(got))
    anon.close()

    # A client id the broker has never seen, asking for a persistent session.
    if version == V5:
        p = Properties(PacketTypes.CONNECT)
        p.SessionExpiryInterval = 300
        keeper = Peer("keeper-v5", addr, version)
        ack = keeper.connect(clean_start=False, properties=p)
    else:
        keeper = Peer("keeper-v311", addr, version, clean=False)
        ack = keeper.connect()
    keeper.close()
    say("persistent", reason_code=ack["reason_code"], session_present=ack["session_present"])


def keep_alive_cap(addr, version):
    """Run against a broker with `mqtt.keep_alive_max_s = 60` (the Paho interoperability
    suite's test_server_keep_alive): a client asking for 120 s. MQTT 5: CONNACK success with
    Server Keep Alive 60; 3.1.1: refused (return code 2, identifier rejected)."""
    peer = Peer("keep-alive-" + tag(version), addr, version)
    ack = peer.connect(keepalive=120)
    server_keep_alive = getattr(ack["properties"], "ServerKeepAlive", None) if version == V5 else None
    say("asked_120", reason_code=ack["reason_code"], server_keep_alive=server_keep_alive)
    if ack["reason_code"] == 0:
        peer.close()
    else:
        peer.silence()


def assigned_ids(addr, version, count="8"):
    """The client identifiers CONNACK assigns to `count` MQTT 5 clients with empty ones (clean
    start, no session)."""
    ids = []
    for _ in range(int(count)):
        anon = Peer("anon", addr, version, client_id="")
        ack = anon.connect()
        ids.append(getattr(ack["properties"], "AssignedClientIdentifier", None))
        anon.close()
    say("assigned", ids=ids)


def qos(addr, version):
    """Round trips at QoS 0, 1 and 2: a few hundred binary payloads per QoS keep their bytes
    and their order; an empty and a 1,000,000-byte payload arrive whole; delivery is at the
    lower of the publish and subscription QoS; overlapping subscriptions deliver once, at
    the highest of their QoS."""
    per_qos = 300
    sub = Peer("qos-sub", addr, version)
    sub.connect()
    granted = sub.subscribe("qos/#", 2)
    pub = Peer("qos-pub", addr, version)
    pub.connect()

    def payload(q, i):
        # Every byte value appears; the length varies; the index makes each unique.
        return b"%d:%d:" % (q, i) + bytes((i + j) % 256 for j in range(i % 300))

    infos = []
    for q in (0, 1, 2):
        for i in range(per_qos):
            infos.append(pub.send(f"qos/q{q}", payload(q, i), q))
    pub.done(infos)
    with pub.cond:
        reason_codes = sorted(set(pub.acked.values()))
    results = {}
    for q in (0, 1, 2):
        got = sub.wait_for(f"qos/q{q}", per_qos)
        expected = [payload(q, i) for i in range(per_qos)]
        received = [m["payload"] for m in got]
        first_difference = next(
            (i for i, (a, b) in enumerate(zip(received, expected)) if a != b), None
        )
        results[f"q{q}"] = {
            "received": len(received),
            "exact_and_in_order": received == expected,
            "first_difference": first_difference,
            "qos": sorted({m["qos"] for m in got}),
            "retain": sorted({m["retain"] for m in got}),
        }
    say("round_trips", granted=granted, per_qos=per_qos, results=results, ack_codes=reason_codes)

    # Edge sizes: empty, and 1,000,000 bytes (under the 1 MiB packet limit).
    big = bytes(i % 251 for i in range(1_000_000))
    pub.publish("qos/sizes", b"", 1)
    pub.publish("qos/sizes", big, 2)
    got = sub.wait_for("qos/sizes", 2)
    say(
        "sizes",
        lengths=[len(m["payload"]) for m in got],
        big_exact=len(got) == 2 and got[1]["payload"] == big,
    )

    # Delivery QoS = min(publish QoS, subscription QoS).
    subs = {}
    granted = {}
    for s in (0, 1, 2):
        subs[s] = Peer(f"down-{s}", addr, version)
        subs[s].connect()
        granted[s] = subs[s].subscribe("down/t", s)[0]
    for p in (0, 1, 2):
        pub.publish("down/t", b"p%d" % p, p)
    downgrade = {}
    for s, peer in subs.items():
        got = peer.wait_for("down/t", 3)
        downgrade[f"sub{s}"] = [[text(m["payload"]), m["qos"]] for m in got]
        peer.close()
    say("downgrade", granted=granted, delivered=downgrade)

    # Overlapping subscriptions: one delivery per message, at the highest granted QoS.
    over = Peer("overlap", addr, version)
    over.connect()
    codes = over.subscribe([("ov/#", 0), ("ov/+/x", 2), ("ov/a/x", 1)])
    pub.publish("ov/a/x", b"once", 2)
    pub.publish("ov/a/x", b"marker", 2)
    got = over.wait_for("ov/a/x", payload=b"marker")
    say("overlap", granted=codes, received=short(got))
    over.close()
    pub.close()
    sub.close()


def pipelined(addr, version):
    """MQTT 3.1.1 has no receive maximum: a client may send as many QoS 1 and 2 publishes as
    it likes before the first is acknowledged, and Weir holds the connection's input while
    32 wait for the log. With 100 in flight every publish completes (a QoS 2 publish waiting
    for the client's PUBREL must not hold the input that PUBREL is in) and arrives in order.
    (paho does not apply an MQTT 5 server's Receive Maximum itself, so this is 3.1.1 only.)"""
    count = 150
    sub = Peer("pipe-sub", addr, version)
    sub.connect()
    sub.subscribe("pipe/#", 2)
    pub = Peer("pipe-pub", addr, version)
    pub.client.max_inflight_messages_set(100)
    pub.connect()
    results = {}
    for q in (1, 2):
        infos = [pub.send(f"pipe/q{q}", b"%d" % i, q) for i in range(count)]
        try:
            pub.done(infos)
        except Failed as e:
            with pub.cond:
                completed = sum(i.mid in pub.acked for i in infos)
            raise Failed(f"QoS {q}: {completed} of {count} publishes completed: {e}") from None
        got = sub.wait_for(f"pipe/q{q}", count)
        results[f"q{q}"] = {
            "received": len(got),
            "in_order": [m["payload"] for m in got] == [b"%d" % i for i in range(count)],
        }
    say("pipelined", in_flight=100, per_qos=count, results=results)
    pub.close()
    sub.close()


def wildcards(addr, version):
    """`+` matches one level (an empty one too), `#` the parent and every level below;
    UNSUBSCRIBE stops delivery (MQTT 5: UNSUBACK 0x11 for a filter that was not subscribed)."""
    topics = [
        "wc",
        "wc/a",
        "wc/a/temp",
        "wc/b/temp",
        "wc//temp",
        "wc/a/temp/x",
        "wc/a/hum",
        "other/a/temp",
    ]
    filters = ["wc/+/temp", "wc/#", "+/a/temp", "wc/+", "#", "wc/a/temp"]
    peers = {}
    for f in filters:
        name = "wc-" + f.replace("/", "_").replace("#", "H").replace("+", "P")
        peers[f] = Peer(name, addr, version)
        peers[f].connect()
        peers[f].subscribe(f, 1)
    pub = Peer("wc-pub", addr, version)
    pub.connect()
    for t in topics:
        pub.publish(t, t.encode(), 1)
    # Then an end marker on every topic. A subscriber that got the markers of the topics its
    # filter should match has also got whatever else it was going to (one topic's messages
    # keep their order); the marker of a topic it should not match may never come, so only
    # those are awaited, and the Rust side compares what arrived with MQTT's matching rules
    # (paho's topic_matches_sub, reported as `expected`).
    for t in topics:
        pub.publish(t, b"end", 1)
    matched = {}
    expected = {}
    for f, peer in peers.items():
        expected[f] = sorted(t for t in topics if mqtt.topic_matches_sub(f, t))
        for t in expected[f]:
            peer.wait_for(t, payload=b"end")
        with peer.cond:
            matched[f] = sorted(
                {m["topic"] for m in peer.messages if m["payload"] != b"end" and not m["retain"]}
            )
    say("matched", matched=matched, expected=expected)
    for peer in peers.values():
        peer.close()

    # UNSUBSCRIBE: nothing published between UNSUBACK and a new SUBACK arrives.
    peer = Peer("unsub", addr, version)
    peer.connect()
    peer.subscribe("un/t", 1)
    pub.publish("un/t", b"before", 1)
    peer.wait_for("un/t", payload=b"before")
    unsub_codes = peer.unsubscribe("un/t")
    pub.publish("un/t", b"while-unsubscribed", 1)
    peer.subscribe("un/t", 1)
    pub.publish("un/t", b"after", 1)
    got = peer.wait_for("un/t", payload=b"after")
    not_subscribed = peer.unsubscribe("un/never")
    several = peer.unsubscribe(["un/t", "un/nope"])
    say(
        "unsubscribe",
        received=[text(m["payload"]) for m in got],
        codes=unsub_codes,
        not_subscribed=not_subscribed,
        several=several,
    )
    peer.close()
    pub.close()


def retained(addr, version):
    """A retained publish replaces the topic's retained message and an empty one clears it;
    a new subscription gets the matching retained messages with the retain flag set; live
    deliveries have retain 0. MQTT 5: Retain As Published keeps the flag on live deliveries;
    retain handling 1 sends only for a new subscription and 2 never."""
    pub = Peer("ret-pub", addr, version)
    pub.connect()
    pub.publish("ret/a", b"v1", 1, retain=True)
    pub.publish("ret/a", b"v2", 1, retain=True)  # replaces v1
    pub.publish("ret/b", b"kept", 2, retain=True)
    pub.publish("ret/c", b"gone", 1, retain=True)
    pub.publish("ret/c", b"", 1, retain=True)  # clears ret/c

    first = Peer("ret-first", addr, version)
    first.connect()
    first.subscribe("ret/#", 2)
    first.wait_for("ret/a")
    first.wait_for("ret/b")
    # Live messages on every topic: a retained message would come before them.
    for t in ("ret/a", "ret/b", "ret/c"):
        pub.publish(t, b"live", 1)
    for t in ("ret/a", "ret/b", "ret/c"):
        first.wait_for(t, payload=b"live")
    with first.cond:
        got = short(first.messages)
    say("new_subscriber", received=sorted(got, key=lambda m: m[0]))

    # Only matching retained messages: ret/b is not under ret/a/#.
    narrow = Peer("ret-narrow", addr, version)
    narrow.connect()
    narrow.subscribe("ret/+", 1)
    narrow.wait_for("ret/a")
    narrow.wait_for("ret/b")
    narrow.unsubscribe("ret/+")
    narrow.subscribe("ret/a", 0)
    pub.publish("ret/a", b"live2", 1)
    narrow.wait_for("ret/a", payload=b"live2")
    with narrow.cond:
        got = short(narrow.messages)
    say("resubscribe", received=got)
    narrow.close()
    first.close()

    if version == V5:
        rap = Peer("ret-rap", addr, version)
        rap.connect()
        rap.subscribe(
            "ret/a", options=SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=2)
        )
        plain = Peer("ret-plain", addr, version)
        plain.connect()
        plain.subscribe("ret/a", options=SubscribeOptions(qos=1, retainHandling=2))
        pub.publish("ret/a", b"v3", 1, retain=True)
        rap_got = rap.wait_for("ret/a", payload=b"v3")
        plain_got = plain.wait_for("ret/a", payload=b"v3")
        say("retain_as_published", rap=short(rap_got), plain=short(plain_got))
        rap.close()
        plain.close()

        handling = Peer("ret-handling", addr, version)
        handling.connect()
        # 1: sent because the subscription is new.
        handling.subscribe("ret/b", options=SubscribeOptions(qos=1, retainHandling=1))
        handling.wait_for("ret/b")
        # 1 again on the same filter: the subscription exists, nothing is sent.
        handling.subscribe("ret/b", options=SubscribeOptions(qos=1, retainHandling=1))
        pub.publish("ret/b", b"live-1", 1)
        handling.wait_for("ret/b", payload=b"live-1")
        # 0: sent on every SUBSCRIBE.
        handling.subscribe("ret/b", options=SubscribeOptions(qos=1, retainHandling=0))
        handling.wait_for("ret/b", 3)
        pub.publish("ret/b", b"live-2", 1)
        handling.wait_for("ret/b", payload=b"live-2")
        # 2: never sent.
        never = Peer("ret-never", addr, version)
        never.connect()
        never.subscribe("ret/b", options=SubscribeOptions(qos=1, retainHandling=2))
        pub.publish("ret/b", b"live-3", 1)
        handling.wait_for("ret/b", payload=b"live-3")
        never_got = never.wait_for("ret/b", payload=b"live-3")
        say("retain_handling", handling=short(handling.on("ret/b")), never=short(never_got))
        handling.close()
        never.close()
    pub.close()


def wills(addr, version):
    """A will is published when the connection ends without DISCONNECT (socket closed, keep
    alive expired), not after a normal DISCONNECT; MQTT 5 DISCONNECT 0x04 publishes it with
    its properties; a retained will is kept as the topic's retained message."""
    watch = Peer("will-watch", addr, version)
    watch.connect()
    watch.subscribe("wills/#", 2)

    def will(topic, payload, qos=1, retain=False, properties=None):
        return {
            "topic": topic,
            "payload": payload,
            "qos": qos,
            "retain": retain,
            "properties": properties,
        }

    # A normal DISCONNECT: no will. Then an abrupt close on the same topic: its will is the
    # first thing that arrives there (a will of the first client would be in the log first).
    polite = Peer("will-polite", addr, version)
    polite.connect(will=will("wills/a", b"polite-will"))
    polite.close()
    rude = Peer("will-rude", addr, version)
    rude.connect(will=will("wills/a", b"socket-closed", qos=2))
    rude.abort()
    got = watch.wait_for("wills/a", payload=b"socket-closed")
    say("socket_closed", received=short(got), polite_disconnect=polite.disconnected)

    # Keep alive 1 s and then silence: the broker ends the connection (after 1.5 s) and
    # publishes the will.
    silent = Peer("will-silent", addr, version)
    silent.connect(keepalive=1, will=will("wills/silent", b"timed-out"))
    silent.silence()
    got = watch.wait_for("wills/silent")
    say("keep_alive_expired", received=short(got))
    silent.abort()

    # A retained will becomes the topic's retained message.
    kept = Peer("will-kept", addr, version)
    kept.connect(will=will("wills/kept", b"last-words", retain=True))
    kept.abort()
    watch.wait_for("wills/kept")
    late = Peer("will-late", addr, version)
    late.connect()
    late.subscribe("wills/kept", 1)
    got = late.wait_for("wills/kept")
    say("retained_will", received=short(got))
    late.close()

    if version == V5:
        props = Properties(PacketTypes.WILLMESSAGE)
        props.UserProperty = ("reason", "asked")
        props.ContentType = "text/plain"
        asking = Peer("will-asking", addr, version)
        asking.connect(will=will("wills/asked", b"with-will", properties=props))
        asking.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))
        asking.wait("the end of the connection", lambda: asking.disconnected)
        asking.client.loop_stop()
        got = watch.wait_for("wills/asked")
        say(
            "disconnect_with_will",
            received=short(got),
            user_properties=got[0]["props"].get("user_properties"),
            content_type=got[0]["props"].get("content_type"),
        )
    watch.close()


def properties(addr, version):
    """MQTT 5 properties survive the log: user properties (repeated names, non-ASCII, an
    empty value and a name in the `mqtt.` namespace the mapping reserves kept, in order),
    content type, response topic, binary correlation data, payload format
    indicator and message expiry (the remaining interval is sent); request/response through
    a responder that answers on the response topic with the correlation data."""
    sub = Peer("props-sub", addr, version)
    sub.connect()
    sub.subscribe("props/#", 1)
    pub = Peer("props-pub", addr, version)
    pub.connect()
    full = publish_props(
        UserProperty=[
            ("k", "v"),
            ("k", "v2"),
            ("ключ", "värde"),
            ("empty", ""),
            ("mqtt.trace", "t1"),
        ],
        ContentType="application/json",
        ResponseTopic="props/reply",
        CorrelationData=b"\x00\x01corr\xff",
        PayloadFormatIndicator=1,
        MessageExpiryInterval=300,
    )
    code = pub.publish("props/full", b'{"a":1}', 1, properties=full)
    bare_code = pub.publish("props/bare", b"\x00\xff", 2)
    got = sub.wait_for("props/full")
    bare = sub.wait_for("props/bare")
    say(
        "properties",
        ack_codes=[code, bare_code],
        full=got[0]["props"],
        full_payload=text(got[0]["payload"]),
        bare=bare[0]["props"],
    )

    # Request/response.
    responder = Peer("responder", addr, version)
    responder.connect()

    def answer(message):
        props = message["raw_props"]
        reply = Properties(PacketTypes.PUBLISH)
        reply.CorrelationData = props.CorrelationData
        # From paho's network thread: queued, not awaited.
        responder.client.publish(
            props.ResponseTopic, b"re:" + message["payload"], 1, properties=reply
        )

    responder.handler = answer
    responder.subscribe("svc/echo", 1)
    requester = Peer("requester", addr, version)
    requester.connect()
    requester.subscribe("replies/requester", 1)
    for i in range(3):
        props = publish_props(ResponseTopic="replies/requester", CorrelationData=b"req-%d" % i)
        requester.publish("svc/echo", b"ping%d" % i, 1, properties=props)
    got = requester.wait_for("replies/requester", 3)
    say(
        "request_response",
        replies=[
            [bytes.fromhex(m["props"]["correlation_data"]).decode(), text(m["payload"])]
            for m in got
        ],
    )
    responder.close()
    requester.close()
    sub.close()
    pub.close()


def expiry(addr, version):
    """Message expiry: a retained message with a 1 s expiry is not delivered to a subscriber
    that comes 2.5 s later; one with an hour left is, with its remaining interval."""
    pub = Peer("exp-pub", addr, version)
    pub.connect()
    one_second = publish_props(MessageExpiryInterval=1)
    one_hour = publish_props(MessageExpiryInterval=3600)
    pub.publish("exp/short", b"stale", 1, retain=True, properties=one_second)
    pub.publish("exp/long", b"fresh", 1, retain=True, properties=one_hour)
    time.sleep(2.5)  # the behaviour under test is the passing of time
    late = Peer("exp-late", addr, version)
    late.connect()
    late.subscribe("exp/#", 1)
    long_got = late.wait_for("exp/long")
    # A live message on exp/short: a retained one would have arrived before it.
    pub.publish("exp/short", b"live", 1)
    short_got = late.wait_for("exp/short", payload=b"live")
    say(
        "expired",
        short=short(short_got),
        long=short(long_got),
        long_expiry=long_got[0]["props"].get("message_expiry"),
    )
    late.close()
    pub.close()


def subscription_ids(addr, version):
    """Subscription identifiers come back on the messages their subscriptions matched: all of
    them, once, when several subscriptions match one message; none for a subscription
    without one."""
    sub = Peer("sid-sub", addr, version)
    sub.connect()
    p7 = Properties(PacketTypes.SUBSCRIBE)
    p7.SubscriptionIdentifier = 7
    p42 = Properties(PacketTypes.SUBSCRIBE)
    p42.SubscriptionIdentifier = 42
    codes = [
        sub.subscribe("sid/a/#", 1, properties=p7),
        sub.subscribe("sid/+/x", 1, properties=p42),
        sub.subscribe("sid/none", 1),
    ]
    pub = Peer("sid-pub", addr, version)
    pub.connect()
    for t in ("sid/a/x", "sid/a/y", "sid/b/x", "sid/none"):
        pub.publish(t, t.encode(), 1)
        pub.publish(t, b"end", 1)
    out = {}
    for t in ("sid/a/x", "sid/a/y", "sid/b/x", "sid/none"):
        got = sub.wait_for(t, payload=b"end")
        out[t] = [[text(m["payload"]), sorted(m["props"].get("subscription_ids", []))] for m in got]
    say("subscription_ids", granted=codes, received=out)
    sub.close()
    pub.close()


def topic_alias(addr, version):
    """Topic aliases from the client: a PUBLISH with a topic and an alias sets it, one with
    only the alias uses it, a new topic with the same alias moves it. Subscribers (and the
    log) see full topic names."""
    sub = Peer("alias-sub", addr, version)
    sub.connect()
    sub.subscribe("alias/#", 1)
    pub = Peer("alias-pub", addr, version)
    ack = pub.connect()
    maximum = getattr(ack["properties"], "TopicAliasMaximum", None)
    steps = [
        ("alias/long/topic/name", b"first", 1),
        ("", b"second", 1),
        ("alias/other", b"third", 1),
        ("", b"fourth", 1),
        ("alias/long/topic/name", b"fifth", 2),
        ("", b"sixth", 2),
    ]
    codes = [pub.publish(t, p, 1, properties=publish_props(TopicAlias=a)) for t, p, a in steps]
    sub.wait_for("alias/long/topic/name", payload=b"sixth")
    sub.wait_for("alias/other", payload=b"fourth")
    by_topic = {}
    for t in ("alias/long/topic/name", "alias/other"):
        by_topic[t] = [text(m["payload"]) for m in sub.on(t)]
    say(
        "topic_alias",
        topic_alias_maximum=maximum,
        ack_codes=codes,
        received=by_topic,
        alias_on_delivery=[m["props"].get("topic_alias") for m in sub.messages],
    )
    sub.close()
    pub.close()


def limits(addr, version):
    """A SUBSCRIBE with a shared subscription (`$share/g/...`) and a plain filter: the plain
    one is granted and works, whatever the answer for the shared one (reported, not checked:
    shared subscriptions have their own scenario, `shared`, and tests in tests/it/mqtt.rs).
    MQTT 5: a PUBLISH over the 1 MiB maximum packet size ends the connection, with
    DISCONNECT 0x95 when the client reads it before the connection is reset (Weir closes the
    socket with the rest of the oversized packet unread)."""
    peer = Peer("refused", addr, version)
    peer.connect()
    codes = peer.subscribe([("$share/g/shared/x", 1), ("shared/x", 1)])
    other = Peer("refused-pub", addr, version)
    other.connect()
    other.publish("shared/x", b"still-works", 1)
    got = peer.wait_for("shared/x")
    say("mixed_subscribe", codes=codes, received=short(got))
    other.close()
    peer.close()
    if version == V5:
        big = Peer("too-big", addr, version)
        # paho 2.1 reads the reason code of a server's DISCONNECT only when the packet has
        # more than 2 bytes after the fixed header, and reports 0 otherwise: the packet's
        # bytes are kept to see the reason code Weir sent.
        packets = []
        handle = big.client._handle_disconnect

        def handle_disconnect():
            packets.append(bytes(big.client._in_packet["packet"]).hex())
            return handle()

        big.client._handle_disconnect = handle_disconnect
        ack = big.connect()
        big.send("big/t", bytes(1_100_000), 1)
        big.wait("the end of the connection", lambda: big.disconnected)
        big.client.loop_stop()
        say(
            "too_big",
            maximum_packet_size=getattr(ack["properties"], "MaximumPacketSize", None),
            disconnect_packets=packets,
        )


def kafka_to_mqtt(addr, version, kafka):
    """Records Kafka clients produce (kcat) reach MQTT subscribers: under
    `<kafka topic>/<key>`, or under the topic in their `mqtt.topic` header, at QoS 1, with
    other headers as user properties (MQTT 5)."""
    sub = Peer("from-kafka", addr, version)
    sub.connect()
    sub.subscribe([("orders/#", 2), ("devices/#", 2)])

    def kcat(args, value):
        done = subprocess.run(
            ["kcat", "-b", kafka, "-P", *args],
            input=value,
            capture_output=True,
            timeout=WAIT,
        )
        if done.returncode != 0:
            raise Failed(f"kcat {args} failed: {done.stderr!r}")

    kcat(["-t", "orders", "-k", "order-7"], b"seven")
    kcat(["-t", "orders", "-H", "mqtt.topic=devices/7/cmd", "-H", "source=erp"], b"reboot")
    keyed = sub.wait_for("orders/order-7")
    routed = sub.wait_for("devices/7/cmd")
    say(
        "from_kafka",
        keyed=short(keyed),
        routed=short(routed),
        routed_properties=routed[0]["props"].get("user_properties"),
    )
    sub.close()


def tag(version):
    return "v5" if version == V5 else "v311"


def keeper(name, addr, version, **kwargs):
    """A peer for a client that keeps its session (3.1.1: Clean Session 0); connect it with
    `keep_session`."""
    return Peer(name, addr, version, clean=False, **kwargs)


def keep_session(peer, expiry=300, **kwargs):
    """Connects `peer` (made by `keeper`) asking for a persistent session: MQTT 5 clean start 0
    and a Session Expiry Interval of `expiry` s (3.1.1: its Clean Session 0)."""
    if peer.version == V5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = expiry
        return peer.connect(clean_start=False, properties=props, **kwargs)
    return peer.connect(**kwargs)


def wait_stdin(what):
    """Waits for a line on stdin (the Rust test writes one when it has done `what`)."""
    ready, _, _ = select.select([sys.stdin], [], [], WAIT)
    if not ready:
        raise Failed(f"timed out after {WAIT}s waiting for the test to say {what!r} on stdin")
    line = sys.stdin.readline()
    if not line:
        raise Failed(f"stdin closed while waiting for {what!r}")
    return line.strip()


def payloads(messages):
    return [text(m["payload"]) for m in messages]


def session(addr, version, phase):
    """Persistent sessions, in two invocations around a broker restart. Phase `away`: a
    client asking for a persistent session subscribes to `backlog/<v>/#` at QoS 1 and
    disconnects; another publishes 25 QoS 1 messages. (The broker is restarted.) Phase
    `back`: 25 more are published; the client reconnects without subscribing, gets session
    present 1 and the 50 in order, then a live one. A clean start then gets session present
    0 and nothing of the old subscription; a persistent connection after it gets session
    present 0."""
    v = tag(version)
    topic = f"backlog/{v}/a"
    pub = Peer(f"sess-pub-{v}", addr, version)
    pub.connect()
    sub = keeper(f"sess-sub-{v}", addr, version)
    if phase == "away":
        ack = keep_session(sub)
        granted = sub.subscribe(f"backlog/{v}/#", 1)
        sub.close()
        pub.done([pub.send(topic, b"%d" % i, 1) for i in range(25)])
        say("away", session_present=ack["session_present"], granted=granted, published=25)
        pub.close()
        return
    if phase != "back":
        raise Failed(f"unknown phase {phase!r}")
    pub.done([pub.send(topic, b"%d" % i, 1) for i in range(25, 50)])
    ack = keep_session(sub)
    sub.wait_for(topic, 50)
    pub.publish(topic, b"live", 1)
    got = sub.wait_for(topic, payload=b"live")
    say(
        "resumed",
        session_present=ack["session_present"],
        received=payloads(got),
        qos=sorted({m["qos"] for m in got}),
    )
    sub.close()

    # A clean start ends the session: no session present, no subscription, no backlog.
    if version == V5:
        clean = Peer(f"sess-sub-{v}", addr, version)
        ack = clean.connect(clean_start=True)
    else:
        clean = Peer(f"sess-sub-{v}", addr, version, clean=True)
        ack = clean.connect()
    clean.subscribe(f"backlog/{v}/marker", 1)
    # Same Kafka topic and partition as the old subscription's topic: anything of it would
    # arrive before the marker.
    pub.publish(topic, b"after-clean", 1)
    pub.publish(f"backlog/{v}/marker", b"end", 1)
    clean.wait_for(f"backlog/{v}/marker")
    with clean.cond:
        received = short(clean.messages)
    say("clean_start", session_present=ack["session_present"], received=received)
    clean.close()
    again = keeper(f"sess-sub-{v}", addr, version)
    ack = keep_session(again)
    again.close()
    say("after_clean", session_present=ack["session_present"])
    pub.close()


def qos2_cut(pub, count, cut):
    """Sends `count` QoS 2 publishes (payloads "0", "1", ...) on `pub.topic`, with paho
    dropping unseen the PUBCOMPs of messages 10 to 12 (the broker has their PUBREL; paho
    still waits) and the PUBRECs of messages 13 to 17 (the broker has stored them; paho
    still waits and will send them again), and calls `cut()` on paho's network thread once
    all 8 came. Returns the publish infos and a dict that gets, at the cut, what paho had in
    flight (by state)."""
    at_cut = {}
    base = pub.client._last_mid  # paho numbers messages one after the other
    dropped = {"PUBCOMP": set(), "PUBREC": set()}
    drop = {"PUBCOMP": range(10, 13), "PUBREC": range(13, 18)}

    def dropping(kind, handle):
        def handler(*args):
            (mid,) = struct.unpack("!H", pub.client._in_packet["packet"][:2])
            if at_cut or (mid - base - 1) not in drop[kind]:
                return handle(*args)
            dropped[kind].add(mid)
            if all(len(dropped[k]) == len(drop[k]) for k in drop):
                at_cut["in_flight"] = pub.in_flight()
                at_cut["dropped"] = {k: len(v) for k, v in dropped.items()}
                cut()
            return mqtt.MQTT_ERR_SUCCESS

        return handler

    handle_pubackcomp = pub.client._handle_pubackcomp
    pubcomp = dropping("PUBCOMP", handle_pubackcomp)
    pub.client._handle_pubackcomp = lambda cmd: (
        pubcomp(cmd) if cmd == "PUBCOMP" else handle_pubackcomp(cmd)
    )
    pub.client._handle_pubrec = dropping("PUBREC", pub.client._handle_pubrec)
    infos = [pub.send(pub.topic, b"%d" % i, 2) for i in range(count)]
    return infos, at_cut


def qos2_dropped(addr, version):
    """QoS 2 across a cut connection: a client with a persistent session sends 30 QoS 2
    publishes (20 in flight at most; MQTT 5's Receive Maximum of 32 bounds what paho sends
    again at once) and its socket is shut down under paho while some wait for PUBCOMP (3
    whose PUBREL the broker has) and some for PUBREC (5 the broker has stored, maybe more it
    has not), as `qos2_cut` arranges. paho reconnects with the same client id and sends the
    unfinished ones again (PUBLISH with DUP, or PUBREL); every publish completes and a QoS 2
    subscriber gets each message once, in order, then an end marker."""
    v = tag(version)
    topic = f"once/{v}"
    sub = Peer(f"once-sub-{v}", addr, version)
    sub.connect()
    sub.subscribe(topic, 2)
    pub = keeper(f"once-pub-{v}", addr, version)
    pub.topic = topic
    keep_session(pub)

    def cut():
        try:
            pub.client.socket().shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    infos, at_cut = qos2_cut(pub, 30, cut)
    pub.lost()
    with pub.cond:
        completed_before = len(pub.acked)
    ack = pub.reconnect()
    pub.done(infos)
    pub.publish(topic, b"end", 2)
    got = sub.wait_for(topic, payload=b"end")
    with pub.cond:
        codes = sorted(set(pub.acked.values()))
    say(
        "dropped",
        at_cut=at_cut,
        completed_before_reconnect=completed_before,
        session_present=ack["session_present"],
        ack_codes=codes,
        received=payloads(got),
    )
    pub.close()
    sub.close()


def qos2_killed(addr, version, pid):
    """QoS 2 across a broker crash: a client with a persistent session (stored once by a
    first connection that ended) sends 30 QoS 2 publishes and, at the point where
    `qos2_dropped` cuts the connection, the broker (process `pid`) is killed with SIGKILL.
    The scenario prints step `killed` and waits for a line on stdin: the test restarts the
    broker on the same ports and data. paho then reconnects and sends the unfinished ones
    again; every publish completes. A subscriber with a persistent QoS 2 session reconnects
    too; what it gets is reported (the broker stores a session's position when its
    connection ends, so after a crash it sends again what it had sent since)."""
    v = tag(version)
    topic = f"crash/{v}"
    sub = keeper(f"crash-sub-{v}", addr, version)
    keep_session(sub)
    sub.subscribe(topic, 2)
    pub = keeper(f"crash-pub-{v}", addr, version)
    pub.topic = topic
    keep_session(pub)
    pub.publish(topic, b"before", 2)
    pub.close()
    first_ack = pub.reconnect()
    infos, at_cut = qos2_cut(pub, 30, lambda: os.kill(int(pid), signal.SIGKILL))
    pub.lost()
    sub.lost()
    with pub.cond:
        completed_before = len(pub.acked) - 1  # without `before`
    say(
        "killed",
        at_cut=at_cut,
        completed_before_kill=completed_before,
        session_present_before=first_ack["session_present"],
    )
    wait_stdin("restarted")
    ack = pub.reconnect()
    sub_ack = sub.reconnect()
    pub.done(infos)
    pub.publish(topic, b"end", 2)
    got = sub.wait_for(topic, payload=b"end")
    with pub.cond:
        codes = sorted(set(pub.acked.values()))
    say(
        "resumed",
        session_present=ack["session_present"],
        subscriber_session_present=sub_ack["session_present"],
        ack_codes=codes,
        received=payloads(got),
    )
    pub.close()
    sub.close()


def shared(addr, version):
    """Shared subscription `$share/g/jobs/#`: three members and a plain `jobs/#` subscriber;
    300 QoS 1 messages on three topics each reach exactly one member, every member gets some,
    the plain subscriber gets all 300; after one member disconnects, the next 100 go to the
    other two (a message sent to the one that left would be missing), each getting some."""
    v = tag(version)
    cond = threading.Condition()
    members = []
    granted = []
    for i in range(3):
        m = Peer(f"share-{v}-{i}", addr, version, cond=cond)
        m.connect()
        granted.append(m.subscribe("$share/g/jobs/#", 1))
        members.append(m)
    plain = Peer(f"share-plain-{v}", addr, version)
    plain.connect()
    plain.subscribe("jobs/#", 1)
    pub = Peer(f"share-pub-{v}", addr, version)
    pub.connect()

    def count(peers):
        return sum(len(p.messages) for p in peers)

    def numbers(peer):
        return [int(m["payload"]) for m in peer.messages]

    def run(first, last, peers):
        pub.done([pub.send(f"jobs/queue{i % 3}", b"%d" % i, 1) for i in range(first, last)])
        plain.wait(f"{last} messages", lambda: len(plain.messages) >= last)
        # The members share one condition variable.
        peers[0].wait(
            f"{last - first} messages over the members",
            lambda: count(peers) - sum(p.seen for p in peers) >= last - first,
        )
        with cond:
            shares = [numbers(p)[p.seen :] for p in peers]
            for p in peers:
                p.seen = len(p.messages)
        every = sorted(n for share in shares for n in share)
        return {
            "shares": [len(share) for share in shares],
            "exactly_once": every == list(range(first, last)),
        }

    for m in members:
        m.seen = 0
    first = run(0, 300, members)
    leaving = members.pop(0)
    leaving.close()
    after = run(300, 400, members)
    # Any duplicate of the first 300 would have come before the last 100 (one partition).
    with cond:
        everything = sorted(n for p in members + [leaving] for n in numbers(p))
    with plain.cond:
        plain_got = {q: [int(m["payload"]) for m in plain.on(f"jobs/queue{q}")] for q in range(3)}
    say(
        "shared",
        granted=granted,
        first=first,
        after_leave=after,
        each_once_overall=everything == list(range(400)),
        plain_received=sum(len(got) for got in plain_got.values()),
        plain_in_order=all(got == list(range(q, 400, 3)) for q, got in plain_got.items()),
    )
    for m in members:
        m.close()
    plain.close()
    pub.close()


def takeover(addr, version):
    """A second connection with a client id already connected takes the session over: the
    first is closed (MQTT 5: with DISCONNECT 0x8E, Session taken over), the second gets
    session present 1 (the session is persistent) and the subscription the first made
    delivers to it."""
    v = tag(version)
    first = keeper(f"twin-{v}", addr, version)
    first.keep_disconnect_packets()
    keep_session(first)
    first.subscribe(f"twin/{v}/#", 1)
    second = keeper(f"twin-{v}", addr, version)
    second.keep_disconnect_packets()
    ack = keep_session(second)
    first.lost()
    pub = Peer(f"twin-pub-{v}", addr, version)
    pub.connect()
    pub.publish(f"twin/{v}/x", b"hi", 1)
    got = second.wait_for(f"twin/{v}/x")
    say(
        "takeover",
        first_disconnect_packets=first.disconnect_packets,
        first_reason_code=first.disconnected["reason_code"],
        session_present=ack["session_present"],
        received=short(got),
        second_disconnect_packets=second.disconnect_packets,
    )
    pub.close()
    second.close()


def will_delay(addr, version):
    """Will Delay Interval 2 s with Session Expiry Interval 60 s: a client whose socket is
    closed and that reconnects (same client id, clean start 0) within 1 s has no will
    published (nothing in 3 s); when it then vanishes for good, its will arrives, not before
    2 s later."""
    watch = Peer("delay-watch", addr, version)
    watch.connect()
    watch.subscribe("delayed/#", 1)

    def pump():
        peer = keeper("pump", addr, version)
        will_props = Properties(PacketTypes.WILLMESSAGE)
        will_props.WillDelayInterval = 2
        will = {
            "topic": "delayed/pump",
            "payload": b"lost",
            "qos": 1,
            "retain": False,
            "properties": will_props,
        }
        ack = keep_session(peer, expiry=60, will=will)
        return peer, ack

    first, _ = pump()
    first.abort()
    gone = time.monotonic()
    again, ack = pump()
    back_after = time.monotonic() - gone
    # The behaviour under test is the passing of time: 3 s in which no will may arrive.
    try:
        watch.wait("no will", lambda: watch.on("delayed/pump"), timeout=3.0)
    except Failed:
        pass
    early = short(watch.on("delayed/pump"))
    say(
        "reconnected",
        back_after_s=round(back_after, 3),
        session_present=ack["session_present"],
        received=early,
    )
    again.abort()
    gone = time.monotonic()
    got = watch.wait_for("delayed/pump")
    say("vanished", received=short(got), after_s=round(time.monotonic() - gone, 3))
    watch.close()


def no_local(addr, version):
    """No Local: a subscription with it does not get the client's own publishes, and does
    get other clients' ones (a watcher without it gets all); an overlapping subscription
    of the same client without No Local delivers its own publish once."""
    me = Peer("nl-me", addr, version)
    me.connect()
    codes = [me.subscribe("nl/t", options=SubscribeOptions(qos=1, noLocal=True))]
    other = Peer("nl-other", addr, version)
    other.connect()
    watch = Peer("nl-watch", addr, version)
    watch.connect()
    watch.subscribe("nl/#", 1)
    me.publish("nl/t", b"mine-1", 1)
    other.publish("nl/t", b"theirs-1", 1)
    me.publish("nl/t", b"mine-2", 1)
    other.publish("nl/t", b"theirs-2", 1)
    # One topic, in order: an own message delivered would come before `theirs-2`.
    me.wait_for("nl/t", payload=b"theirs-2")
    watch.wait_for("nl/t", payload=b"theirs-2")
    with me.cond:
        mine = short(me.messages)
    say("no_local", codes=codes, received=mine, watched=payloads(watch.on("nl/t")))
    codes.append(me.subscribe("nl/+", 1))
    me.publish("nl/t", b"mine-3", 1)
    other.publish("nl/t", b"theirs-3", 1)
    me.wait_for("nl/t", payload=b"theirs-3")
    with me.cond:
        mine = short(me.messages)
    say("overlapping", codes=codes, received=mine)
    for peer in (me, other, watch):
        peer.close()


def both_ways(prefix, a, b):
    """`a` publishes to `b` (under `<prefix>/down/`), then `b` to `a` (`<prefix>/up/`): 20
    messages and a 200,000-byte one at each QoS. Per direction and QoS: whether the payloads
    arrived exact and in order, how many, and at which QoS."""
    big = bytes(i % 253 for i in range(200_000))
    results = {}
    for direction, sender, receiver in (("down", a, b), ("up", b, a)):
        sent = {}
        for q in (0, 1, 2):
            t = f"{prefix}/{direction}/q{q}"
            sent[t] = [b"%s-%d-%d" % (direction.encode(), q, i) for i in range(20)] + [big]
            sender.done([sender.send(t, p, q) for p in sent[t]])
        out = {}
        for t, expected in sent.items():
            got = receiver.wait_for(t, len(expected))
            out[t.rsplit("/", 1)[1]] = {
                "exact_and_in_order": [m["payload"] for m in got] == expected,
                "received": len(got),
                "qos": sorted({m["qos"] for m in got}),
            }
        results[direction] = out
    return results


def websocket(addr, version, ws_addr):
    """MQTT over WebSocket (paho's `websockets` transport, path `/mqtt`): a WebSocket client
    gets what a TCP client publishes at QoS 0, 1 and 2 and the TCP client what it publishes,
    payloads exact and in order, a 200,000-byte one too."""
    v = tag(version)
    ws = Peer(f"ws-{v}", ws_addr, version, transport="websockets")
    ws_ack = ws.connect()
    ws_granted = ws.subscribe(f"ws/{v}/down/#", 2)
    tcp = Peer(f"ws-tcp-{v}", addr, version)
    tcp.connect()
    tcp_granted = tcp.subscribe(f"ws/{v}/up/#", 2)
    results = both_ways(f"ws/{v}", tcp, ws)
    say(
        "websocket",
        connack=ws_ack["reason_code"],
        granted=[ws_granted, tcp_granted],
        results=results,
    )
    ws.close()
    tcp.close()


def tls(addr, version, wss_addr, cafile):
    """MQTT over TLS and over secure WebSocket (paho's `tls_set` with the test CA, which
    checks the server's certificate and its name, 127.0.0.1): the secure WebSocket client gets
    what the TLS client publishes at QoS 0, 1 and 2 and the TLS client what it publishes,
    payloads exact and in order, a 200,000-byte one too (many TLS records)."""
    v = tag(version)
    secure = Peer(f"tls-{v}", addr, version, cafile=cafile)
    secure_ack = secure.connect()
    secure_granted = secure.subscribe(f"tls/{v}/up/#", 2)
    wss = Peer(f"wss-{v}", wss_addr, version, transport="websockets", cafile=cafile)
    wss_ack = wss.connect()
    wss_granted = wss.subscribe(f"tls/{v}/down/#", 2)
    protocol = secure.client.socket().version()
    results = both_ways(f"tls/{v}", secure, wss)
    say(
        "tls",
        connack=[secure_ack["reason_code"], wss_ack["reason_code"]],
        granted=[secure_granted, wss_granted],
        protocol=protocol,
        results=results,
    )
    secure.close()
    wss.close()


def server_aliases(addr, version):
    """Topic aliases from the server: a subscriber announcing Topic Alias Maximum 2 gets
    messages on four topics with aliases (at most 2; a topic sent in full once, then by alias
    alone; the oldest alias reassigned once both are in use); resolving them as MQTT 5 says
    gives every message's full topic, in publish order. A subscriber announcing none gets
    full topics and no aliases."""
    props = Properties(PacketTypes.CONNECT)
    props.TopicAliasMaximum = 2
    sub = Peer("sa-sub", addr, version)
    sub.connect(properties=props)
    sub.subscribe("sa/#", 1)
    plain = Peer("sa-plain", addr, version)
    plain.connect()
    plain.subscribe("sa/#", 1)
    pub = Peer("sa-pub", addr, version)
    pub.connect()
    order = ["a", "b", "a", "b", "c", "a", "d", "c", "d", "b", "a", "a", "c", "b"]
    sent = [[f"sa/{t}", f"{i}:{t}"] for i, t in enumerate(order)]
    for t, p in sent:
        pub.publish(t, p.encode(), 1)
    last = sent[-1]
    sub.wait_for(last[0], payload=last[1].encode())
    plain.wait_for(last[0], payload=last[1].encode())
    with sub.cond:
        got = [[m["topic"], text(m["payload"])] for m in sub.messages]
        wire = [[m["sent_topic"], m["alias"]] for m in sub.messages]
    with plain.cond:
        plain_got = [[m["topic"], text(m["payload"])] for m in plain.messages]
        plain_aliases = [m["alias"] for m in plain.messages]
    say(
        "server_aliases",
        sent=sent,
        received=got,
        wire=wire,
        plain_received=plain_got,
        plain_aliases=plain_aliases,
    )
    sub.close()
    plain.close()
    pub.close()


SCENARIOS = {
    "connect": connect,
    "assigned_ids": assigned_ids,
    "keep_alive_cap": keep_alive_cap,
    "qos": qos,
    "pipelined": pipelined,
    "wildcards": wildcards,
    "retained": retained,
    "wills": wills,
    "properties": properties,
    "expiry": expiry,
    "subscription_ids": subscription_ids,
    "topic_alias": topic_alias,
    "limits": limits,
    "kafka_to_mqtt": kafka_to_mqtt,
    "session": session,
    "qos2_dropped": qos2_dropped,
    "qos2_killed": qos2_killed,
    "shared": shared,
    "takeover": takeover,
    "will_delay": will_delay,
    "no_local": no_local,
    "websocket": websocket,
    "tls": tls,
    "server_aliases": server_aliases,
}

# Scenarios that exist only in MQTT 5, or only in 3.1.1.
V5_ONLY = {
    "assigned_ids",
    "properties",
    "expiry",
    "subscription_ids",
    "topic_alias",
    "will_delay",
    "no_local",
    "server_aliases",
}
V311_ONLY = {"pipelined"}


def main():
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} <scenario>_<v311|v5> <mqtt host:port> [arguments]")
    name, addr, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    base, _, proto = name.rpartition("_")
    version = {"v311": V311, "v5": V5}.get(proto)
    if (
        base not in SCENARIOS
        or version is None
        or (base in V5_ONLY and version != V5)
        or (base in V311_ONLY and version != V311)
    ):
        sys.exit(f"unknown scenario {name!r}")
    try:
        SCENARIOS[base](addr, version, *rest)
    except Failed as e:
        print(f"scenario {name} failed: {e}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
