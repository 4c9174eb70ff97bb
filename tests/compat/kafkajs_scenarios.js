// Scenarios run with kafkajs (npm, installed into tests/compat/node_modules by `cargo xtask
// test`) against a Weir broker by the integration tests (tests/it/kafka_clients.rs,
// tests/it/tls.rs).
// Usage: node kafkajs_scenarios.js <scenario> <bootstrap host:port> [arguments].
// Each step prints one JSON line; the Rust test checks them.

const { Kafka, CompressionTypes, logLevel } = require("kafkajs");

const say = (step, fields) => console.log(JSON.stringify({ step, ...fields }));

const until = async (what, check, seconds = 60) => {
  const deadline = Date.now() + seconds * 1000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

async function group(bootstrap) {
  const kafka = new Kafka({ clientId: "weir-js", brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: "js", numPartitions: 3 }] });
  const producer = kafka.producer();
  await producer.connect();
  const produce = (prefix, count) =>
    producer.send({
      topic: "js",
      acks: -1,
      compression: CompressionTypes.GZIP,
      messages: Array.from({ length: count }, (_, i) => ({ value: `${prefix}${i}`, partition: i % 3 })),
    });
  await produce("r", 30);

  const seen = new Set();
  const assigned = {};
  const members = [];
  for (const name of ["a", "b", "c"]) {
    const consumer = kafka.consumer({ groupId: "js-readers", sessionTimeout: 6000, heartbeatInterval: 500 });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      assigned[name] = (e.payload.memberAssignment.js || []).slice().sort();
    });
    await consumer.connect();
    await consumer.subscribe({ topics: ["js"], fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => seen.add(message.value.toString()) });
    members.push({ name, consumer });
  }
  const split = (names) => {
    const parts = names.flatMap((n) => assigned[n] || []).sort();
    return JSON.stringify(parts) === "[0,1,2]" && names.every((n) => (assigned[n] || []).length > 0);
  };
  await until("three members sharing the partitions", () => split(["a", "b", "c"]));
  await until("the first 30 records", () => seen.size === 30);
  say("three", { assigned: { ...assigned } });
  await members[2].consumer.disconnect();
  delete assigned.c;
  await until("two members taking over", () => split(["a", "b"]));
  await produce("s", 9);
  await until("all 39 records", () => seen.size === 39);
  say("two", { assigned: { ...assigned }, read: seen.size });
  for (const m of members.slice(0, 2)) await m.consumer.disconnect();
  await producer.disconnect();

  const offsets = await admin.fetchOffsets({ groupId: "js-readers", topics: ["js"] });
  const committed = {};
  for (const p of offsets[0].partitions) committed[`js:${p.partition}`] = Number(p.offset);
  const described = await admin.describeGroups(["js-readers"]);
  say("after", { committed, state: described.groups[0].state });
  const listed = await admin.listGroups();
  say("listed", { groups: listed.groups.map((g) => g.groupId).sort() });
  await admin.deleteGroups(["js-readers"]);
  const after = await admin.listGroups();
  say("deleted", { groups: after.groups.map((g) => g.groupId) });
  await admin.disconnect();
}

// SASL over TLS (SASL_SSL): the server's certificate verified against the PEM CA file
// `cafile` (Node checks the name too), SASL `mechanism` ("plain", "scram-sha-256", ...) as
// `user`; produces one record to `topic`, then reads it back with a consumer group.
async function saslTls(bootstrap, cafile, mechanism, user, password, topic) {
  const kafka = new Kafka({
    clientId: "weir-js-tls",
    brokers: [bootstrap],
    logLevel: logLevel.NOTHING,
    ssl: { ca: [require("fs").readFileSync(cafile, "utf8")] },
    sasl: { mechanism, username: user, password },
    connectionTimeout: 10000,
  });
  const producer = kafka.producer();
  await producer.connect();
  const [sent] = await producer.send({ topic, acks: -1, messages: [{ value: "over tls" }] });
  await producer.disconnect();
  say("produce", { delivered: sent.errorCode === 0 });
  const values = [];
  const consumer = kafka.consumer({ groupId: "js-tls-readers" });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({ eachMessage: async ({ message }) => values.push(message.value.toString()) });
  await until("the record read back", () => values.length > 0);
  await consumer.disconnect();
  say("consume", { values });
}

const scenarios = { group, sasl_tls: saslTls };
scenarios[process.argv[2]](...process.argv.slice(3)).then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
