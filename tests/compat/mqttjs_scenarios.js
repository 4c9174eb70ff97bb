// Scenarios run with MQTT.js (npm `mqtt`, installed into tests/compat/node_modules by `cargo
// xtask test`) against a Weir broker by the integration tests (tests/it/mqtt_clients.rs).
// Usage: node mqttjs_scenarios.js <scenario> <4|5> <mqtt host:port>.
// Each step prints one JSON line; the Rust test checks them. Every wait is bounded: a step
// that does not happen within WAIT_S seconds fails the scenario (exit status 1) naming it.

const mqtt = require("mqtt");

const WAIT_S = 20;

const say = (step, fields) => console.log(JSON.stringify({ step, ...fields }));

// `promise`, or a failure naming `what` after WAIT_S seconds.
const within = (what, promise) => {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${WAIT_S}s waiting for ${what}`)), WAIT_S * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
};

// Waits until `check()` holds, re-checking whenever a message arrives at `peer`.
const until = (peer, what, check) =>
  within(
    what,
    new Promise((resolve) => {
      const test = () => {
        if (check()) {
          peer.client.removeListener("message", test);
          resolve();
        }
      };
      peer.client.on("message", test);
      test();
    }),
  );

// One client and every message it received, as {topic, payload (Buffer), qos, retain,
// properties}.
async function peer(name, addr, version, options = {}) {
  const client = mqtt.connect(`mqtt://${addr}`, {
    clientId: name,
    protocolVersion: version,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: WAIT_S * 1000,
    ...options,
  });
  const messages = [];
  client.on("message", (topic, payload, packet) => {
    messages.push({ topic, payload, qos: packet.qos, retain: packet.retain, properties: packet.properties || {} });
  });
  const connack = await within(`${name} CONNACK`, new Promise((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
  }));
  const on = (topic) => messages.filter((m) => m.topic === topic);
  const p = { name, client, messages, connack, on };
  // Waits for `count` messages on `topic`, or for one whose payload is `payload`.
  p.waitFor = async (topic, { count = 1, payload } = {}) => {
    const what = payload !== undefined ? `${JSON.stringify(payload)} on ${topic}` : `${count} messages on ${topic}`;
    await until(p, `${name}: ${what}`, () =>
      payload !== undefined ? on(topic).some((m) => m.payload.toString() === payload) : on(topic).length >= count,
    );
    return on(topic);
  };
  return p;
}

const brief = (ms) => ms.map((m) => [m.topic, m.payload.toString(), m.qos, m.retain]);

// QoS 0, 1 and 2 round trips (binary payloads, order kept), retained messages (set, replaced,
// cleared, flagged on delivery to a new subscriber), and on MQTT 5: user properties and
// content type, topic aliases the client assigns, and the 1 MiB packet limit.
async function roundTrip(addr, version) {
  const perQos = 200;
  const sub = await peer(`js-sub-${version}`, addr, version);
  const granted = await within("SUBACK", sub.client.subscribeAsync("js/#", { qos: 2 }));
  const pub = await peer(`js-pub-${version}`, addr, version);
  // Unique, of varied length, with binary bytes.
  const payload = (q, i) =>
    Buffer.concat([Buffer.from(`${q}:${i}:`), Buffer.from(Array.from({ length: i % 64 }, (_, j) => (i * 7 + j) % 256))]);
  // MQTT.js 5.16 does not limit its QoS 1 and 2 publishes in flight to the server's Receive
  // Maximum (32, told in CONNACK), and Weir disconnects an MQTT 5 client that exceeds it
  // (0x93), as the specification says: on MQTT 5 at most 32 are sent before they complete.
  // MQTT 3.1.1 has no receive maximum: every publish is sent at once, and Weir holds the
  // connection's input while 32 wait for the log.
  const window = version === 5 ? 32 : 3 * perQos;
  let sends = [];
  for (const q of [0, 1, 2]) {
    for (let i = 0; i < perQos; i++) {
      sends.push(pub.client.publishAsync(`js/q${q}`, payload(q, i), { qos: q }));
      if (sends.length === window) {
        await within("publishes to complete", Promise.all(sends));
        sends = [];
      }
    }
  }
  await within("every publish to complete", Promise.all(sends));
  const results = {};
  for (const q of [0, 1, 2]) {
    const got = await sub.waitFor(`js/q${q}`, { count: perQos });
    const exact = got.length === perQos && got.every((m, i) => m.payload.equals(payload(q, i)));
    results[`q${q}`] = { received: got.length, exact_and_in_order: exact, qos: [...new Set(got.map((m) => m.qos))] };
  }
  say("round_trips", { granted: granted.map((g) => g.qos), per_qos: perQos, results });

  // Retained: v1 replaced by v2; another topic set then cleared.
  await pub.client.publishAsync("js/ret/a", "v1", { qos: 1, retain: true });
  await pub.client.publishAsync("js/ret/a", "v2", { qos: 1, retain: true });
  await pub.client.publishAsync("js/ret/b", "gone", { qos: 1, retain: true });
  await pub.client.publishAsync("js/ret/b", "", { qos: 1, retain: true });
  const late = await peer(`js-late-${version}`, addr, version);
  await within("SUBACK", late.client.subscribeAsync("js/ret/+", { qos: 1 }));
  await late.waitFor("js/ret/a");
  // Live messages: a retained one would have come before them.
  await pub.client.publishAsync("js/ret/a", "live", { qos: 1 });
  await pub.client.publishAsync("js/ret/b", "live", { qos: 1 });
  await late.waitFor("js/ret/a", { payload: "live" });
  await late.waitFor("js/ret/b", { payload: "live" });
  say("retained", { a: brief(late.on("js/ret/a")), b: brief(late.on("js/ret/b")) });

  if (version === 5) {
    await pub.client.publishAsync("js/props", "{}", {
      qos: 1,
      properties: {
        userProperties: { site: "plant-3", tag: ["x", "y"] },
        contentType: "application/json",
        payloadFormatIndicator: true,
      },
    });
    const [got] = await sub.waitFor("js/props");
    say("properties", {
      user_properties: got.properties.userProperties,
      content_type: got.properties.contentType,
      payload_format: got.properties.payloadFormatIndicator,
    });

    // MQTT.js assigns topic aliases itself (up to the server's Topic Alias Maximum) and sends
    // the topic name only the first time.
    const aliasing = await peer(`js-alias-${version}`, addr, version, { autoAssignTopicAlias: true });
    const sent = [];
    aliasing.client.on("packetsend", (packet) => {
      if (packet.cmd === "publish") sent.push([packet.topic, (packet.properties || {}).topicAlias || null]);
    });
    for (let i = 0; i < 3; i++) {
      for (const t of ["js/alias/one", "js/alias/two"]) await aliasing.client.publishAsync(t, `${t}#${i}`, { qos: 1 });
    }
    await sub.waitFor("js/alias/one", { count: 3 });
    await sub.waitFor("js/alias/two", { count: 3 });
    say("topic_alias", {
      topic_alias_maximum: aliasing.connack.properties && aliasing.connack.properties.topicAliasMaximum,
      sent,
      one: sub.on("js/alias/one").map((m) => m.payload.toString()),
      two: sub.on("js/alias/two").map((m) => m.payload.toString()),
    });
    await aliasing.client.endAsync();

    // Over the 1 MiB Maximum Packet Size the CONNACK announced: the connection ends, with
    // DISCONNECT 0x95 when the client gets to read it (Weir closes the socket with the rest
    // of the oversized packet unread, so the client may get a reset instead; then
    // reason_code is null).
    const big = await peer(`js-big-${version}`, addr, version);
    let reasonCode = null;
    big.client.once("disconnect", (packet) => (reasonCode = packet.reasonCode));
    big.client.on("error", () => {});
    const closed = within("the end of the connection", new Promise((resolve) => big.client.once("close", resolve)));
    big.client.publish("js/big", Buffer.alloc(1_100_000), { qos: 1 }, () => {});
    await closed;
    say("too_big", {
      maximum_packet_size: big.connack.properties && big.connack.properties.maximumPacketSize,
      closed: true,
      reason_code: reasonCode,
    });
    big.client.end(true);
  }
  for (const p of [sub, pub, late]) await within(`${p.name} end`, p.client.endAsync());
}

const SCENARIOS = { round_trip: roundTrip };

async function main() {
  const [name, version, addr] = process.argv.slice(2);
  const scenario = SCENARIOS[name];
  if (!scenario || !["4", "5"].includes(version) || !addr) {
    console.error(`usage: node mqttjs_scenarios.js <${Object.keys(SCENARIOS).join("|")}> <4|5> <host:port>`);
    process.exit(2);
  }
  await scenario(addr, Number(version));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`scenario failed: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
