//! Configuration: one table of keys, three sources.
//!
//! Every key is declared once, in the `config_keys!` invocation below, with its field, its
//! type, its default (as text, parsed by the same code that parses user input, so the
//! documented default is the real one) and its documentation. From that one declaration come
//! the [`Config`] struct, the parser for `weir.toml`, the `WEIR_*` environment overrides, the
//! key list in `weir --help`, and the reference table in `docs/config.md`.
//!
//! Precedence, lowest first: embedded defaults, the config file, environment variables,
//! command-line flags. A value that does not parse is an error naming the key and where the
//! value came from (file and line, or the environment variable); `main` turns it into exit
//! code 2.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

mod values;

pub use values::{
    ConfigValue, Durability, IoBackend, LogFilter, LogFormat, PluginBindings, Raw, TopicFilters,
    TopicRules,
};

/// One documented key.
#[derive(Debug)]
pub struct KeySpec {
    /// Dotted key as written in the TOML file (`section.name`).
    pub key: &'static str,
    /// The default, as text.
    pub default: &'static str,
    /// The value's type as documentation shows it.
    pub kind: &'static str,
    /// What the key does, what happens at the limit.
    pub doc: &'static str,
}

impl KeySpec {
    /// The environment variable that overrides this key: `WEIR_` + the key in upper case with
    /// dots turned into underscores.
    pub fn env_var(&self) -> String {
        format!("WEIR_{}", self.key.replace('.', "_").to_ascii_uppercase())
    }
}

macro_rules! config_keys {
    ($( $(#[doc = $doc:literal])+ $field:ident : $ty:ty = $default:literal, key = $key:literal; )+) => {
        /// The broker's configuration, after defaults, file, environment and flags.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $field: $ty, )+
        }

        /// Every key, in documentation order.
        pub static KEYS: &[KeySpec] = &[
            $( KeySpec { key: $key, default: $default, kind: <$ty as ConfigValue>::KIND,
                         doc: concat!($($doc, "\n"),+) }, )+
        ];

        impl Config {
    /// The users file `auth.users_file` names (empty: `<data_dir>/users`).
    pub fn users_file(&self) -> PathBuf {
        (self.auth_users_file.clone()).unwrap_or_else(|| self.data_dir.join("users"))
    }

            /// The embedded defaults.
            pub fn defaults() -> Config {
                Config {
                    $( $field: match <$ty as ConfigValue>::from_text($default) {
                        Ok(value) => value,
                        // The defaults are constants checked by a unit test.
                        Err(e) => panic!("embedded default for {} is invalid: {e}", $key),
                    }, )+
                }
            }

            /// Sets one key; `Ok(false)` if no such key exists.
            fn set(&mut self, key: &str, raw: Raw<'_>) -> Result<bool, String> {
                match key {
                    $( $key => { self.$field = <$ty as ConfigValue>::parse(raw)?; Ok(true) } )+
                    _ => Ok(false),
                }
            }
        }
    };
}

config_keys! {
    /// Directory holding all broker state. Created if missing; one broker at a time may use it
    /// (a second one fails at start with the PID of the holder).
    data_dir: PathBuf = "./weir-data", key = "data_dir";

    /// Address of the MQTT listener (MQTT 3.1, 3.1.1 and 5.0 on one port), on every shard
    /// (`SO_REUSEPORT`). Port 0 picks a free port; the address bound is logged. What is
    /// supported and what is not yet: docs/mqtt-kafka.md.
    mqtt_listen: SocketAddr = "0.0.0.0:1883", key = "mqtt.listen";

    /// Address of the MQTT over WebSocket listener (HTTP upgrade on any path, subprotocol
    /// `mqtt`; MQTT 3.1.1 and 5.0), on every shard. Port 0 picks a free port.
    mqtt_websocket_listen: SocketAddr = "0.0.0.0:9001", key = "mqtt.websocket_listen";

    /// Address of the MQTT over TLS listener (customary port 8883), on every shard, with the
    /// certificate of `tls.cert_file`. Empty: off.
    mqtt_tls_listen: Option<SocketAddr> = "", key = "mqtt.tls_listen";

    /// Address of the MQTT over secure WebSocket (`wss://`) listener, with the certificate of
    /// `tls.cert_file`. Empty: off.
    mqtt_websocket_tls_listen: Option<SocketAddr> = "", key = "mqtt.websocket_tls_listen";

    /// MQTT connections open at once, on each of the TCP and WebSocket listeners. A connection
    /// over the limit is closed as soon as it is accepted.
    mqtt_connections_max: NonZeroU32 = "10000", key = "mqtt.connections_max";

    /// Largest MQTT packet accepted from a client, fixed header included. A larger one closes
    /// the connection (MQTT 5: DISCONNECT or CONNACK 0x95); MQTT 5 clients are told it in
    /// CONNACK. Checked from the remaining length, before the packet is buffered.
    mqtt_packet_size_bytes_max: NonZeroU32 = "1048576", key = "mqtt.packet_size_bytes_max";

    /// QoS 1 and 2 publishes a client may have unacknowledged (MQTT 5: the server's Receive
    /// Maximum, told in CONNACK; exceeding it disconnects with 0x93; 3.1.x: the connection is
    /// not read until one completes). At most 65535. One durable commit answers at most this
    /// many publishes of a client that pipelines (measured, one publisher at QoS 1 with
    /// fsync: twice the messages per second at 64 as at 32); each waits in the append queue
    /// with its message, up to `mqtt.packet_size_bytes_max` bytes.
    mqtt_inflight_max: NonZeroU32 = "64", key = "mqtt.inflight_max";

    /// Topic aliases an MQTT 5 client may set (told in CONNACK; 0 turns them off). At most
    /// 65535.
    mqtt_topic_aliases_max: u32 = "16", key = "mqtt.topic_aliases_max";

    /// Bytes of QoS 1 and 2 messages waiting, per subscriber, for the client's Receive
    /// Maximum. A message that does not fit is not delivered to that subscriber (it stays in
    /// the log) and counted in `weir_mqtt_messages_dropped_total`.
    mqtt_outbound_queue_bytes_max: NonZeroU32 = "1048576", key = "mqtt.outbound_queue_bytes_max";

    /// Longest client identifier accepted; a longer one is refused (CONNACK 0x85, 3.1.x: 2).
    /// At most 480 (client ids are keys of the log's session tables).
    mqtt_client_id_bytes_max: NonZeroU32 = "256", key = "mqtt.client_id_bytes_max";

    /// Longest keep alive a client may ask for, seconds (Mosquitto's `max_keepalive`). 65535:
    /// no cap, every keep alive stands (0, none, too). Below it, an MQTT 5 client asking for
    /// more, or for 0, is held to this value and told so in CONNACK (Server Keep Alive); an
    /// MQTT 3.1.x client, which cannot be told, is refused (return code 2), as Mosquitto does.
    /// At most 65535.
    mqtt_keep_alive_max_s: u32 = "65535", key = "mqtt.keep_alive_max_s";

    /// Most levels (`/`-separated parts) a topic name or filter may have (Mosquitto's limit
    /// is 200). An MQTT PUBLISH to a topic with more closes the connection (MQTT 5: DISCONNECT
    /// 0x90); a subscription with more is refused (SUBACK 0x8F, 3.1.x: 0x80).
    mqtt_topic_levels_max: NonZeroU32 = "200", key = "mqtt.topic_levels_max";

    /// Topics that may hold a retained message at once. A retained publish to a new topic
    /// beyond it is refused (MQTT 5: PUBACK/PUBREC 0x97; 3.1.x: the connection is closed,
    /// as 3.1.1 has no negative acknowledgement).
    mqtt_retained_messages_max: NonZeroU32 = "100000", key = "mqtt.retained_messages_max";

    /// Rules for the Kafka topic an MQTT topic's messages are stored in, as
    /// `mqtt/filter=kafka_topic`: the first rule whose filter matches the MQTT topic names the
    /// Kafka topic (`["plant/+/temp=temperatures", "plant/#=plant-other"]`). Without a
    /// matching rule the first topic level names it (docs/mqtt-kafka.md).
    mqtt_kafka_topic_rules: TopicRules = "", key = "mqtt.kafka_topic_rules";

    /// Persistent MQTT sessions stored at once (a session outlives its connection when an MQTT
    /// 5 client asks for a Session Expiry Interval, or a 3.1.x client connects with Clean
    /// Session 0). A session beyond it is not stored when its connection ends (logged): the
    /// client's next connection starts without it.
    mqtt_sessions_max: NonZeroU32 = "100000", key = "mqtt.sessions_max";

    /// Longest a persistent session outlives its connection, seconds: a longer Session
    /// Expiry Interval is cut to it, and 3.1.x persistent sessions (which never expire in
    /// the specification) get it. Counted from when the session was last stored.
    mqtt_session_expiry_max_s: NonZeroU32 = "604800", key = "mqtt.session_expiry_max_s";

    /// Subscriptions refused: a SUBSCRIBE whose filter one of these filters matches (read as
    /// a topic name, so `secret/#` refuses `secret/a` and `secret/+`) gets SUBACK 0x80 (MQTT 5:
    /// Unspecified error; the access-control list's refusals are 0x87 Not authorized), as
    /// Paho's interoperability suite expects of its `test/nosubscribe`. This checks
    /// subscription filters, not messages: `#` is not matched by `secret/#`. Empty: every
    /// valid filter is accepted.
    mqtt_subscribe_deny: TopicFilters = "", key = "mqtt.subscribe_deny";

    /// Plugin bindings: each attaches an ordered chain of WebAssembly plugins to Kafka topic
    /// names (a trailing `*` matches any suffix), run on ingest before anything is stored. One
    /// `[[plugins.bindings]]` table per binding: `name`, `topics` (array), `plugins` (array
    /// of `{ path = "x.wasm", config = { key = "value" } }`), and optionally
    /// `dead_letter_topic` (default `<topic>.dlq`), `when_open` (`reject` or `pass`),
    /// `deadline_ms`, `memory_bytes_max`. A binding that cannot start (a missing file, a
    /// module that does not match the contract, a configuration its `init` refuses) stops
    /// the broker at start. See plugins-sdk/README.md.
    plugins_bindings: PluginBindings = "[]", key = "plugins.bindings";

    /// Time one plugin call may take, milliseconds (a binding's `deadline_ms` overrides it).
    /// A call past it is stopped, the instance discarded, and the batch's messages go to the
    /// dead-letter topic.
    plugins_deadline_ms: NonZeroU32 = "10", key = "plugins.deadline_ms";

    /// Memory one plugin instance may grow to, bytes; also the most a binding's
    /// `memory_bytes_max` may set. An instance that asks for more fails its call (dead
    /// letters) and is discarded.
    plugins_memory_bytes_max: NonZeroU32 = "16777216", key = "plugins.memory_bytes_max";

    /// Plugin instances alive at once, all shards and bindings together (each shard keeps
    /// one warm instance per plugin of each binding it has used). An instantiation beyond
    /// it fails like a plugin failure. Reserves address space for that many instances'
    /// memory up front (committed only when used).
    plugins_instances_max: NonZeroU32 = "256", key = "plugins.instances_max";

    /// Consecutive failed calls of a binding's plugins that open its circuit: while open, the
    /// binding's `when_open` policy applies instead of the plugins (logged, and counted in
    /// `weir_plugin_circuit_*`).
    plugins_failures_max: NonZeroU32 = "5", key = "plugins.failures_max";

    /// How long an open circuit stays open before a call is tried again, milliseconds; a
    /// success closes it.
    plugins_breaker_open_ms: NonZeroU32 = "30000", key = "plugins.breaker_open_ms";

    /// Largest plugin module accepted, bytes (a file in a binding, or a deploy through the
    /// admin API, which is refused with 413 beyond it).
    plugins_module_bytes_max: NonZeroU32 = "33554432", key = "plugins.module_bytes_max";

    /// Address of the Kafka listener, on every shard (`SO_REUSEPORT`). Port 0 picks a free
    /// port; the address bound is logged. The Kafka front answers ApiVersions, Metadata,
    /// Produce, Fetch, ListOffsets, InitProducerId, FindCoordinator, OffsetCommit,
    /// OffsetFetch, CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords and
    /// DescribeConfigs, the group APIs and SASL (docs/kafka.md) and closes the connection on
    /// any other request.
    kafka_listen: SocketAddr = "0.0.0.0:9092", key = "kafka.listen";

    /// Address of the Kafka over TLS listener (clients' `security.protocol` `SSL`, or
    /// `SASL_SSL` with SASL), with the certificate of `tls.cert_file`. Metadata on it
    /// advertises its own port. Empty: off.
    kafka_tls_listen: Option<SocketAddr> = "", key = "kafka.tls_listen";

    /// Kafka connections open at once. A connection over the limit is closed as soon as it
    /// is accepted.
    kafka_connections_max: NonZeroU32 = "10000", key = "kafka.connections_max";

    /// A Kafka connection that sends nothing for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    kafka_idle_timeout_ms: NonZeroU32 = "600000", key = "kafka.idle_timeout_ms";

    /// Largest Kafka request. A size prefix above it closes the connection before any of the
    /// request is buffered (Kafka's `socket.request.max.bytes`).
    kafka_request_bytes_max: NonZeroU32 = "104857600", key = "kafka.request_bytes_max";

    /// Host name or address Metadata tells clients to connect to. Empty: the `kafka.listen`
    /// address, or `localhost` when that is a wildcard address (`0.0.0.0`, `::`); set it when
    /// clients reach the broker from another machine.
    kafka_advertised_host: String = "", key = "kafka.advertised_host";

    /// Create a topic a client names in Metadata or produces to when it does not exist, as
    /// Kafka's `auto.create.topics.enable` does.
    kafka_auto_create_topics: bool = "true", key = "kafka.auto_create_topics";

    /// Partitions of an auto-created topic, and of a topic CreateTopics asks for with -1
    /// partitions (Kafka's `num.partitions`).
    kafka_auto_create_partitions_count: NonZeroU32 = "1", key = "kafka.auto_create_partitions_count";

    /// No topic is created once this many exist: a client naming another missing topic gets
    /// UNKNOWN_TOPIC_OR_PARTITION, and CreateTopics gets POLICY_VIOLATION.
    kafka_topics_max: NonZeroU32 = "1000", key = "kafka.topics_max";

    /// Most record bytes in one Fetch answer, whatever the client asks (Kafka's
    /// `fetch.max.bytes`). The first batch of the first partition with data is sent whole
    /// even past it, so a consumer always makes progress.
    kafka_fetch_bytes_max: NonZeroU32 = "57671680", key = "kafka.fetch_bytes_max";

    /// Most bytes the records of one compressed batch may inflate to. Every compressed
    /// batch a producer sends is decompressed (on the connection's shard) and its records
    /// checked before it is stored; one that inflates past this is refused with
    /// CORRUPT_MESSAGE after at most this many bytes were decoded.
    kafka_batch_decompressed_bytes_max: NonZeroU32 = "67108864",
        key = "kafka.batch_decompressed_bytes_max";

    /// Shortest session timeout a consumer-group member may ask for (Kafka's
    /// `group.min.session.timeout.ms`); a JoinGroup outside the bounds gets
    /// INVALID_SESSION_TIMEOUT.
    kafka_group_min_session_timeout_ms: NonZeroU32 = "6000",
        key = "kafka.group_min_session_timeout_ms";

    /// Longest session timeout a consumer-group member may ask for (Kafka's
    /// `group.max.session.timeout.ms`); also caps how long a rebalance waits for members.
    kafka_group_max_session_timeout_ms: NonZeroU32 = "1800000",
        key = "kafka.group_max_session_timeout_ms";

    /// How long a consumer group starting from no members waits for more members before
    /// its first generation (Kafka's `group.initial.rebalance.delay.ms`), so members that
    /// start together do not rebalance once per member.
    kafka_group_initial_rebalance_delay_ms: u32 = "3000",
        key = "kafka.group_initial_rebalance_delay_ms";

    /// Members in one consumer group (Kafka's `group.max.size`); one more gets
    /// GROUP_MAX_SIZE_REACHED.
    kafka_group_members_max: NonZeroU32 = "1000", key = "kafka.group_members_max";

    /// Consumer groups with members, all together. A member starting one more group gets
    /// COORDINATOR_NOT_AVAILABLE (clients retry) until a group empties. Groups that only hold
    /// committed offsets do not count.
    kafka_groups_max: NonZeroU32 = "10000", key = "kafka.groups_max";

    /// Shard threads, each with its own event loop and its own share of the connections.
    /// 0 means one per available CPU.
    server_shards: u32 = "0", key = "server.shards";

    /// Event-loop backend: `uring` (io_uring: multishot accept and receive with provided
    /// buffers; needs Linux 6.0 and io_uring not blocked), `epoll`, or `auto`: io_uring where a
    /// start-up probe shows it works, else epoll. The choice and the reason are logged;
    /// `uring` where it cannot work fails at start.
    server_io: IoBackend = "auto", key = "server.io";

    /// Pin shard thread i to the i-th CPU this process may run on (best effort).
    server_pin_threads: bool = "true", key = "server.pin_threads";

    /// Client connections open at once, all protocols together. A connection over the limit
    /// is closed as soon as it is accepted.
    server_connections_max: NonZeroU32 = "20000", key = "server.connections_max";

    /// Unsent response bytes per connection. Past it the connection is not read (its
    /// requests wait) until its client has read enough to bring them to half: a client that
    /// never reads costs about this much memory (plus one answer, and at most one request it
    /// had already sent).
    server_write_buffer_bytes_max: NonZeroU32 = "8388608", key = "server.write_buffer_bytes_max";

    /// A connection that has not sent one complete request this long after it was accepted
    /// is closed.
    server_handshake_timeout_ms: NonZeroU32 = "10000", key = "server.handshake_timeout_ms";

    /// Address of the HTTP admin listener (`GET /health`, `GET /metrics`, plugin management).
    /// Port 0 picks a free port; the address actually bound is logged at start. Loopback by
    /// default: an address other machines can reach needs `admin.token_file`, or Weir refuses
    /// to start.
    admin_listen: SocketAddr = "127.0.0.1:8080", key = "admin.listen";

    /// File holding the admin API's bearer token on its first line (at least 16 characters,
    /// no whitespace; `openssl rand -hex 32 > file`). Set, every admin request but
    /// `GET /health` (and `GET /metrics`, unless `admin.metrics_require_token`) needs
    /// `Authorization: Bearer <token>` and gets 401 without it; `weir plugin ...` sends it.
    /// Empty: no token, and the admin API must listen on loopback. Read at start, on SIGHUP
    /// and when it changes (a token refused then keeps the one in force).
    admin_token_file: Option<PathBuf> = "", key = "admin.token_file";

    /// The admin listener speaks HTTPS with the certificate of `tls.cert_file` (reloaded with
    /// it; no client certificate is asked for; the handshake must finish within
    /// `admin.header_timeout_ms`). `weir plugin ...` then speaks HTTPS, trusting exactly the
    /// certificate of `tls.cert_file`, or the CAs of its `--cacert` file.
    admin_tls: bool = "false", key = "admin.tls";

    /// With `admin.token_file` set, `GET /metrics` needs the token too.
    admin_metrics_require_token: bool = "false", key = "admin.metrics_require_token";

    /// Weir's users file, written by `weir user add|remove` (salted password hashes and
    /// SCRAM keys, never a password). Empty: `<data_dir>/users`. Read at start, on SIGHUP and
    /// when it changes; a file that does not parse stops the start, or keeps the users loaded
    /// before a reload.
    auth_users_file: Option<PathBuf> = "", key = "auth.users_file";

    /// A password file written by `mosquitto_passwd` (`$7$`, `$6$` and `$argon2id$` lines),
    /// read as well: Mosquitto's users keep their passwords. A user in both files is the users
    /// file's. Reloaded like it.
    auth_mosquitto_password_file: Option<PathBuf> = "", key = "auth.mosquitto_password_file";

    /// Whether an MQTT client without a user name may connect. Off: it gets CONNACK 0x87
    /// (3.1.x: return code 5). With no user configured at all, user names are not checked and
    /// every client is anonymous. On by default for the zero-configuration start; Weir warns
    /// when it listens beyond loopback with it on.
    auth_allow_anonymous: bool = "true", key = "auth.allow_anonymous";

    /// An access-control list in Mosquitto's format (`user`, `topic [read|write|readwrite|deny]
    /// <filter>`, `pattern` with `%c` and `%u`; Weir adds `kafka-group <id>`): once set, what
    /// it does not grant is denied. MQTT publishes (retained ones too) need write (MQTT 5:
    /// PUBACK/PUBREC 0x87; 3.1.x: acknowledged and dropped, counted in
    /// `weir_mqtt_publishes_denied_total`), a will too (else CONNACK 0x87, 3.1.x: 5),
    /// subscriptions need read on all they can match (SUBACK 0x87, 3.1.x: 0x80), and every
    /// message is checked at delivery against the list in force. Kafka topics are checked as
    /// the MQTT filter `<topic>/#` (produce needs write, fetch read; refused with
    /// TOPIC_AUTHORIZATION_FAILED), consumer groups against `kafka-group` lines
    /// (GROUP_AUTHORIZATION_FAILED); docs/security.md has the table. Read at start (a missing or broken file stops it), on SIGHUP and when it changes (a broken
    /// file then keeps the list in force). Empty: no list, everything allowed.
    auth_acl_file: Option<PathBuf> = "", key = "auth.acl_file";

    /// How long a refused MQTT CONNECT (bad user name or password, or anonymous when that is
    /// off) waits for its CONNACK, and a failed Kafka SASL authentication for its answer and
    /// close, milliseconds: each guess costs the client this long; the broker holds only the
    /// connection meanwhile.
    auth_refused_connect_delay_ms: u32 = "1000", key = "auth.refused_connect_delay_ms";

    /// PEM certificate chain (the server's certificate first) the TLS listeners present.
    /// Needed when one is set. Read at start, on SIGHUP and when it changes (also through a
    /// symlink swapped to another file); a file that does not parse keeps the certificate in
    /// use, and the log says why. Connections open at a change keep theirs.
    tls_cert_file: Option<PathBuf> = "", key = "tls.cert_file";

    /// PEM private key of `tls.cert_file` (PKCS#8, PKCS#1 or SEC1). Reloaded with it.
    tls_key_file: Option<PathBuf> = "", key = "tls.key_file";

    /// PEM certificates of the CAs client certificates are verified against. Set, a TLS
    /// client may present a certificate (one that does not verify fails the handshake).
    /// Empty: client certificates are not asked for. Reloaded with `tls.cert_file`.
    tls_client_ca_file: Option<PathBuf> = "", key = "tls.client_ca_file";

    /// A TLS client without a valid certificate fails the handshake. Needs
    /// `tls.client_ca_file`.
    tls_require_client_cert: bool = "false", key = "tls.require_client_cert";

    /// MQTT over TLS: the common name (CN) of the client's certificate is its user name, and
    /// the CONNECT's user name and password are not looked at (Mosquitto's
    /// `use_identity_as_username`). A CN that is missing or not UTF-8 text is refused (CONNACK
    /// 0x87, 3.1.x: 5). Kafka over TLS: the CN is the client's user (no SASL then); without a
    /// usable one the client must use SASL. Needs `tls.require_client_cert`.
    tls_identity_as_username: bool = "false", key = "tls.identity_as_username";

    /// Admin HTTP connections open at once. A connection beyond the limit is closed as soon as
    /// it is accepted.
    admin_connections_max: NonZeroU32 = "64", key = "admin.connections_max";

    /// Time an admin client has to send its request headers before its connection is closed.
    admin_header_timeout_ms: NonZeroU32 = "5000", key = "admin.header_timeout_ms";

    /// LMDB map size: the most the log may hold. Virtual address space, not allocated
    /// memory; the file grows as data is written. When it is full, appends are refused (Kafka
    /// producers get KAFKA_STORAGE_ERROR; MQTT will answer 0x97) until retention or deletions
    /// free space.
    storage_map_size_bytes: u64 = "68719476736", key = "storage.map_size_bytes";

    /// `fsync`: an append is acknowledged after its commit is synced to disk. `relaxed`: after
    /// its commit reaches the page cache; a sync runs every `storage.relaxed_sync_interval_ms`,
    /// so a power loss or kernel crash can lose that much acknowledged data and, as LMDB warns
    /// for this mode, may leave the last transactions inconsistent (a process crash loses
    /// nothing).
    storage_durability: Durability = "fsync", key = "storage.durability";

    /// In `relaxed` durability, time between syncs: the loss window on power failure.
    storage_relaxed_sync_interval_ms: NonZeroU32 = "1000", key = "storage.relaxed_sync_interval_ms";

    /// Appends are refused when the file system's free space, less what the append would grow
    /// the log file by (space freed inside the file is reused first), would fall under this,
    /// so that deletions and retention can still run on a nearly full disk. 0 disables the
    /// check; a disk that then fills during a commit stops the broker.
    storage_disk_reserve_bytes: u64 = "67108864", key = "storage.disk_reserve_bytes";

    /// Group commit: after the first pending append, wait up to this long for more before
    /// committing. 0 commits whatever is pending at once (appends that arrive during a commit
    /// form the next group).
    storage_commit_window_us: u32 = "0", key = "storage.commit_window_us";

    /// Group commit: bytes of appends after which a group is closed (the append that crosses it
    /// is still in the group).
    storage_commit_bytes_max: NonZeroU32 = "4194304", key = "storage.commit_bytes_max";

    /// Bytes of appends submitted and not yet committed. Beyond it an append is refused (a
    /// Kafka producer gets the retriable REQUEST_TIMED_OUT for that partition, none of whose
    /// batches is written).
    storage_append_queue_bytes_max: u64 = "67108864", key = "storage.append_queue_bytes_max";

    /// Time between retention passes (each topic's `retention_ms` and `retention_bytes`); the
    /// first pass runs one interval after start.
    storage_retention_check_interval_ms: NonZeroU32 = "300000", key = "storage.retention_check_interval_ms";

    /// Log format: `text` (human-readable) or `json` (one object per line). The
    /// `--log-format` flag overrides it.
    log_format: LogFormat = "text", key = "log.format";

    /// Which log lines to keep, as a `tracing` filter directive.
    log_level: LogFilter = "info", key = "log.level";

    /// On SIGINT or SIGTERM the broker stops accepting and gives its connections this long to
    /// receive the answers they are owed; then the log writer commits what was already
    /// submitted and the broker exits. A second signal exits at once.
    shutdown_drain_timeout_ms: u32 = "10000", key = "shutdown.drain_timeout_ms";
}

/// Why the configuration could not be loaded. Every variant names where the bad value is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path}:{line}: invalid TOML: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A key in the file has a bad value, or is not a known key.
    #[error("{path}:{line}: key `{key}`: {message}")]
    FileValue {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    /// An environment variable has a bad value.
    #[error("environment variable {var} (key `{key}`): {message}")]
    EnvValue {
        var: String,
        key: String,
        message: String,
    },
    /// A command-line flag has a bad value.
    #[error("flag {flag} (key `{key}`): {message}")]
    FlagValue {
        flag: String,
        key: String,
        message: String,
    },
}

impl Config {
    /// Loads defaults, then `file` if given, then `WEIR_*` variables from `env`.
    /// Returns the configuration and the names of `WEIR_*` variables that match no key
    /// (the caller logs them once logging is up).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut config = Config::defaults();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            config.apply_toml(path, &text)?;
        }
        let unknown = config.apply_env(env)?;
        Ok((config, unknown))
    }

    /// Applies a command-line flag's value to `key`.
    pub fn apply_flag(&mut self, flag: &str, key: &str, value: &str) -> Result<(), ConfigError> {
        let err = |message: String| ConfigError::FlagValue {
            flag: flag.to_owned(),
            key: key.to_owned(),
            message,
        };
        match self.set(key, Raw::Text(value)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(err("no such key".into())),
            Err(message) => Err(err(message)),
        }
    }

    fn apply_toml(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let doc = toml_edit::Document::parse(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            line: line_of(text, e.span().map_or(0, |s| s.start)),
            message: e.message().to_owned(),
        })?;
        let mut leaves = Vec::new();
        let root = doc.as_item().as_table_like().into_iter();
        for table in root {
            collect_leaves(table, "", &mut leaves);
        }
        for leaf in leaves {
            let line = line_of(text, leaf.offset);
            let fail = |message: String| ConfigError::FileValue {
                path: path.to_owned(),
                line,
                key: leaf.key.clone(),
                message,
            };
            let owned;
            let value = match (leaf.value, leaf.tables) {
                (Some(value), _) => value,
                (None, Some(tables)) if leaf.key == "plugins.bindings" => {
                    owned = toml_edit::Value::Array(tables.clone().into_array());
                    &owned
                }
                _ => {
                    return Err(fail(
                        "arrays of tables are used only by plugins.bindings".to_owned(),
                    ));
                }
            };
            match self.set(&leaf.key, Raw::Toml(value)) {
                Ok(true) => {}
                Ok(false) => return Err(fail(unknown_key_message(&leaf.key))),
                Err(message) => return Err(fail(message)),
            }
        }
        Ok(())
    }

    fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut unknown = Vec::new();
        for (var, value) in env {
            if !var.starts_with("WEIR_") {
                continue;
            }
            let Some(spec) = KEYS.iter().find(|spec| spec.env_var() == var) else {
                unknown.push(var);
                continue;
            };
            self.set(spec.key, Raw::Text(&value))
                .map_err(|message| ConfigError::EnvValue {
                    var: var.clone(),
                    key: spec.key.to_owned(),
                    message,
                })?;
        }
        unknown.sort();
        Ok(unknown)
    }
}

/// A key/value pair found in the file, with the byte offset of its key.
struct Leaf<'a> {
    key: String,
    offset: usize,
    /// `None` for an array of tables.
    value: Option<&'a toml_edit::Value>,
    /// An array of tables (only `plugins.bindings` takes one).
    tables: Option<&'a toml_edit::ArrayOfTables>,
}

fn collect_leaves<'a>(table: &'a dyn toml_edit::TableLike, prefix: &str, out: &mut Vec<Leaf<'a>>) {
    for (name, item) in table.iter() {
        let key = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        };
        let key_span = table.key(name).and_then(|k| k.span());
        match item {
            toml_edit::Item::None => {}
            toml_edit::Item::Value(toml_edit::Value::InlineTable(inline)) => {
                collect_leaves(inline, &key, out)
            }
            toml_edit::Item::Value(value) => {
                let offset = key_span.or_else(|| value.span()).map_or(0, |s| s.start);
                out.push(Leaf {
                    key,
                    offset,
                    value: Some(value),
                    tables: None,
                });
            }
            toml_edit::Item::Table(sub) => collect_leaves(sub, &key, out),
            toml_edit::Item::ArrayOfTables(array) => out.push(Leaf {
                key,
                offset: array.span().or(key_span).map_or(0, |s| s.start),
                value: None,
                tables: Some(array),
            }),
        }
    }
}

fn unknown_key_message(key: &str) -> String {
    let close = KEYS.iter().map(|spec| spec.key).find(|known| {
        known.rsplit('.').next() == key.rsplit('.').next() || within_two_edits(known, key)
    });
    match close {
        Some(known) => format!("unknown key (did you mean `{known}`?)"),
        None => "unknown key (see docs/config.md for the keys)".to_owned(),
    }
}

/// True if the two keys differ by at most two single-character edits; enough to catch typos.
fn within_two_edits(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 {
        return false;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key reference as a Markdown table, the generated part of `docs/config.md` (kept equal
/// by a test).
#[cfg(test)]
fn reference_markdown() -> String {
    let mut out = String::from("| key | environment | type | default | meaning |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for spec in KEYS {
        let doc = spec.doc.split_whitespace().collect::<Vec<_>>().join(" ");
        let default = match spec.default {
            "" => "empty".to_owned(),
            text => format!("`{text}`"),
        };
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} | {default} | {} |",
            spec.key,
            spec.env_var(),
            spec.kind.replace('|', "\\|"),
            doc.replace('|', "\\|"),
        );
    }
    out
}

/// The key reference as plain text, for `weir --help`.
pub fn reference_help() -> String {
    let mut out = String::from(
        "Configuration keys (weir.toml key / environment variable, default):\n\
         Precedence: defaults < --config file < WEIR_* environment < flags.\n\n",
    );
    for spec in KEYS {
        let doc = spec.doc.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(
            out,
            "  {} / {}  [{}; default: {}]\n      {}\n",
            spec.key,
            spec.env_var(),
            spec.kind,
            if spec.default.is_empty() {
                "empty"
            } else {
                spec.default
            },
            doc
        );
    }
    out.push_str("Full reference: docs/config.md\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        let mut config = Config::defaults();
        config.apply_toml(Path::new("weir.toml"), text)?;
        Ok(config)
    }

    #[test]
    fn defaults_parse_and_match_the_brief() {
        let config = Config::defaults();
        assert_eq!(config.mqtt_listen, "0.0.0.0:1883".parse().unwrap());
        assert_eq!(config.kafka_listen, "0.0.0.0:9092".parse().unwrap());
        assert_eq!(config.admin_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.admin_token_file, None);
        assert!(!config.admin_metrics_require_token);
        assert_eq!(config.data_dir, PathBuf::from("./weir-data"));
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn keys_are_unique_and_have_units_where_numeric() {
        for (i, spec) in KEYS.iter().enumerate() {
            assert!(
                KEYS[i + 1..].iter().all(|other| other.key != spec.key),
                "duplicate key {}",
                spec.key
            );
            // A plain count named by its plural (`server.shards`) carries its unit already.
            let counts = ["server.shards"];
            if spec.kind.starts_with("integer") && !counts.contains(&spec.key) {
                let unit_suffixes = ["_ms", "_us", "_s", "_bytes", "_max", "_count"];
                assert!(
                    unit_suffixes
                        .iter()
                        .any(|suffix| spec.key.ends_with(suffix)),
                    "numeric key {} has no unit or limit suffix",
                    spec.key
                );
            }
        }
    }

    #[test]
    fn plugin_bindings_parse_from_tables_and_from_text_and_are_checked() {
        let config = load_str(
            "[[plugins.bindings]]\nname = \"f\"\ntopics = [\"sensors\"]\n\
             plugins = [{ path = \"f.wasm\", config = { max = 50 } }]\n\
             [[plugins.bindings]]\nname = \"g\"\ntopics = [\"plant-*\"]\nwhen_open = \"pass\"\n\
             plugins = [{ path = \"a.wasm\" }, { path = \"b.wasm\", name = \"second\" }]\n",
        )
        .unwrap();
        let specs = &config.plugins_bindings.0;
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].plugins[0].config["max"], "50");
        assert_eq!(specs[1].plugins[1].name.as_deref(), Some("second"));
        assert_eq!(specs[1].when_open, crate::plugins::WhenOpen::Pass);
        let text = PluginBindings::from_text(
            "[{ name = \"f\", topics = [\"t\"], plugins = [{ path = \"f.wasm\" }] }]",
        )
        .unwrap();
        assert_eq!(text.0[0].name, "f");
        let err = load_str("[[plugins.bindings]]\nname = \"f\"\ntopics = []\nplugins = []\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("plugins.bindings") && err.contains("names no topic"),
            "{err}"
        );
        let err = load_str("[[mqtt.rules]]\na = 1\n").unwrap_err().to_string();
        assert!(err.contains("only by plugins.bindings"), "{err}");
    }

    #[test]
    fn mqtt_lists_parse_from_toml_arrays_and_text_and_are_checked() {
        let config = load_str(
            "[mqtt]\nkafka_topic_rules = [\"plant/+/temp=temperatures\", \"a=b/#=x.y\"]\n\
             subscribe_deny = [\"secret/#\"]\n",
        )
        .unwrap();
        assert_eq!(
            config.mqtt_kafka_topic_rules.0,
            [
                ("plant/+/temp".to_owned(), "temperatures".to_owned()),
                ("a=b/#".to_owned(), "x.y".to_owned())
            ]
        );
        assert_eq!(config.mqtt_subscribe_deny.0, ["secret/#"]);
        assert_eq!(
            TopicRules::from_text("a/#=t1, b=t2").unwrap().0,
            [
                ("a/#".to_owned(), "t1".to_owned()),
                ("b".to_owned(), "t2".to_owned())
            ]
        );
        for bad in ["no-equals", "a/#=bad topic", "a/#b=t", "$share/g/a=t"] {
            assert!(TopicRules::from_text(bad).is_err(), "{bad}");
        }
        assert!(TopicFilters::from_text("a/#/b").is_err());
    }

    #[test]
    fn file_values_override_defaults() {
        let config = load_str(
            "data_dir = \"/var/lib/weir\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             connections_max = 3\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/weir"));
        assert_eq!(config.admin_listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.admin_connections_max.get(), 3);
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn dotted_and_inline_keys_are_the_same_key() {
        let a = load_str("admin.listen = \"127.0.0.1:1\"\n").unwrap();
        let b = load_str("admin = { listen = \"127.0.0.1:1\" }\n").unwrap();
        assert_eq!(a.admin_listen, b.admin_listen);
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let err = load_str("# comment\n\n[mqtt]\nlisten = \"localhost\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ConfigError::FileValue { line: 4, .. }),
            "{text}"
        );
        assert!(text.starts_with("weir.toml:4: key `mqtt.listen`"), "{text}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = load_str("[admin]\nconnections_max = \"many\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("weir.toml:2: key `admin.connections_max`: expected an integer"),
            "{err}"
        );
        let err = load_str("[admin]\nconnections_max = -1\n").unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
        let err = load_str("[admin]\nconnections_max = 0\n").unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error_with_a_suggestion() {
        let err = load_str("[log]\nformt = \"json\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("weir.toml:2: key `log.formt`: unknown key"),
            "{text}"
        );
        assert!(text.contains("did you mean `log.format`"), "{text}");
    }

    #[test]
    fn syntax_error_names_line() {
        let err = load_str("[admin]\nlisten = \n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
    }

    #[test]
    fn environment_overrides_and_reports_unknown_names() {
        let env = vec![
            ("WEIR_ADMIN_LISTEN".to_owned(), "127.0.0.1:9".to_owned()),
            ("WEIR_NOT_A_KEY".to_owned(), "1".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let (config, unknown) = Config::load(None, env).unwrap();
        assert_eq!(config.admin_listen, "127.0.0.1:9".parse().unwrap());
        assert_eq!(unknown, vec!["WEIR_NOT_A_KEY".to_owned()]);

        let env = vec![("WEIR_LOG_FORMAT".to_owned(), "xml".to_owned())];
        let err = Config::load(None, env).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("environment variable WEIR_LOG_FORMAT (key `log.format`)"),
            "{err}"
        );
    }

    #[test]
    fn env_var_names() {
        let names: Vec<String> = KEYS.iter().map(KeySpec::env_var).collect();
        assert!(names.contains(&"WEIR_DATA_DIR".to_owned()));
        assert!(names.contains(&"WEIR_SHUTDOWN_DRAIN_TIMEOUT_MS".to_owned()));
    }

    /// docs/config.md carries the generated table; this keeps it equal to the code.
    /// `UPDATE_DOCS=1 cargo test -p weir` rewrites it.
    #[test]
    fn docs_config_md_matches_the_keys() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
        let doc = std::fs::read_to_string(&path).expect("docs/config.md exists");
        let (begin, end) = ("<!-- keys:begin -->\n", "<!-- keys:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let generated = reference_markdown();
        if doc[start..stop] != generated {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                let updated = format!("{}{}{}", &doc[..start], generated, &doc[stop..]);
                std::fs::write(&path, updated).expect("write docs/config.md");
            } else {
                panic!(
                    "docs/config.md is out of date with broker/server/src/config.rs; \
                     run `UPDATE_DOCS=1 cargo test -p weir docs_config_md` and commit it"
                );
            }
        }
    }
}
