//! The command line and the process's life: load the configuration, start, serve, stop.
//!
//! Exit codes: 0 after a clean shutdown, 2 for a bad command line or configuration (the
//! message names the key and where the value came from), 1 for any other failure to start
//! or to run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::plugins::{self, Registry};
use crate::{
    admin, config, control, data_dir, group_thread, logging, maintenance, shard, tls, writer,
};

/// Weir: an edge message broker speaking MQTT and the Kafka protocol over one durable log.
#[derive(Debug, Parser)]
#[command(name = "weir", version, after_long_help = config::reference_help())]
struct Cli {
    /// Configuration file (TOML). Without it the embedded defaults apply.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log format; overrides `log.format`.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,

    /// Data directory; overrides `data_dir`.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default when no command is given).
    #[command(after_long_help = config::reference_help())]
    Serve,
    /// Say whether the io_uring backend can run on this machine (exit 0) or why not (exit 1).
    IoProbe,
    /// Manage the plugins of a running broker through its admin API.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage the users file (MQTT user names and passwords, Kafka SASL users).
    #[command(subcommand)]
    User(crate::user_cli::UserCommand),
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Upload a plugin component and bind it to topics (replacing a binding of that name,
    /// without dropping connections). The broker validates the module and runs its `init`
    /// first; a refusal changes nothing and prints why.
    Deploy {
        /// The component (.wasm).
        file: PathBuf,
        /// The binding's name (also the module's name unless --module is given).
        #[arg(long)]
        binding: String,
        /// A Kafka topic the plugin applies to; a trailing `*` matches any suffix. Repeat
        /// for several.
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        /// The module's name (default: the binding's).
        #[arg(long)]
        module: Option<String>,
        /// A `key=value` pair of the plugin's configuration (its `init` gets them). Repeat
        /// for several.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Where messages go when the plugin fails (default `<topic>.dlq`).
        #[arg(long)]
        dead_letter_topic: Option<String>,
        /// While the circuit is open: `reject` (clients get an error) or `pass` (stored
        /// without the plugin).
        #[arg(long, default_value = "reject")]
        when_open: String,
        /// The broker's admin address (default: `admin.listen` of the configuration, with a
        /// wildcard address read as 127.0.0.1).
        #[arg(long)]
        admin: Option<String>,
    },
    /// List modules and bindings with their counters (JSON).
    List {
        /// The broker's admin address.
        #[arg(long)]
        admin: Option<String>,
    },
    /// Remove a deployed binding.
    Remove {
        /// The binding's name.
        binding: String,
        /// The broker's admin address.
        #[arg(long)]
        admin: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

/// Runs the `weir` command line.
pub fn main() -> ExitCode {
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Command::IoProbe) => io_probe(),
        Some(Command::User(command)) => tool(&cli, "weir user", |config| {
            crate::user_cli::run(config, command)
        }),
        Some(Command::Plugin(command)) => tool(&cli, "weir plugin", |config| {
            plugin_command(config, command)
        }),
        Some(Command::Serve) | None => {
            let config = match load_config(&cli) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("weir: configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            match serve(config) {
                Ok(code) => code,
                Err(e) => {
                    // The logger may not be up; say it on stderr in any case.
                    tracing::error!("{e:#}");
                    eprintln!("weir: error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs a command that needs the configuration (`weir user`, `weir plugin`): prints what it
/// returns; exit code 2 for a bad configuration, 1 when the command fails (`name` says which).
fn tool(cli: &Cli, name: &str, run: impl FnOnce(&Config) -> anyhow::Result<String>) -> ExitCode {
    let config = match load_config(cli) {
        Ok(loaded) => loaded.config,
        Err(e) => {
            eprintln!("weir: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a `weir plugin` command against the admin API.
fn plugin_command(config: &Config, command: PluginCommand) -> anyhow::Result<String> {
    if config.admin_tls {
        anyhow::bail!(
            "admin.tls is on, and weir plugin does not speak HTTPS yet: call the admin API with \
             curl --cacert (docs/security.md)"
        );
    }
    // The token of `admin.token_file`, if set, read once for the command's requests.
    let token = config.admin_token_file.as_deref().map(admin::read_token);
    let token = token.transpose()?;
    let token = token.as_deref();
    let admin = |given: Option<String>| -> anyhow::Result<std::net::SocketAddr> {
        let text = match given {
            Some(text) => text,
            None => {
                let mut addr = config.admin_listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                return Ok(addr);
            }
        };
        use std::net::ToSocketAddrs;
        text.to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{text} names no address"))
    };
    match command {
        PluginCommand::Deploy {
            file,
            binding,
            topics,
            module,
            set: pairs,
            dead_letter_topic,
            when_open,
            admin: given,
        } => {
            let addr = admin(given)?;
            let module = module.unwrap_or_else(|| binding.clone());
            let bytes =
                std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let mut plugin_config = serde_json::Map::new();
            for pair in pairs {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--set {pair:?}: use KEY=VALUE"))?;
                plugin_config.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
            }
            let uploaded = admin_request(
                token,
                addr,
                "PUT",
                &format!("/plugins/modules/{module}"),
                &bytes,
            )?;
            let mut spec = serde_json::json!({
                "topics": topics,
                "plugins": [{ "module": module, "config": plugin_config }],
                "when_open": when_open,
            });
            if let Some(topic) = dead_letter_topic {
                spec["dead_letter_topic"] = serde_json::Value::String(topic);
            }
            let bound = admin_request(
                token,
                addr,
                "PUT",
                &format!("/plugins/bindings/{binding}"),
                spec.to_string().as_bytes(),
            )?;
            Ok(format!("{uploaded}{bound}"))
        }
        PluginCommand::List { admin: given } => {
            admin_request(token, admin(given)?, "GET", "/plugins", b"")
        }
        PluginCommand::Remove {
            binding,
            admin: given,
        } => admin_request(
            token,
            admin(given)?,
            "DELETE",
            &format!("/plugins/bindings/{binding}"),
            b"",
        ),
    }
}

/// How long `weir plugin ...` waits for the admin API: to connect, and for each read (a
/// deploy compiles the module before it answers, which takes seconds on a Raspberry Pi).
const ADMIN_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// One request to the admin API, with the admin `token` if there is one; the body of a 2xx
/// answer, else an error with it.
fn admin_request(
    token: Option<&str>,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<String> {
    let request = crate::admin_client::AdminRequest {
        method,
        path,
        body,
        token,
    };
    let (status, text) = crate::admin_client::request(addr, &request, ADMIN_REQUEST_TIMEOUT)?;
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        anyhow::bail!("{method} {path}: {status}: {}", text.trim())
    }
}

fn io_probe() -> ExitCode {
    match shard::uring_available() {
        Ok(()) => {
            println!("io_uring: available");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            println!("io_uring: unavailable: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration with its unknown `WEIR_*` variable names, for a warning once logging runs.
struct Loaded {
    config: Config,
    unknown_env: Vec<String>,
}

fn load_config(cli: &Cli) -> Result<Loaded, config::ConfigError> {
    let (mut config, unknown_env) = Config::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(format) = cli.log_format {
        let value = match format {
            LogFormatArg::Text => "text",
            LogFormatArg::Json => "json",
        };
        config.apply_flag("--log-format", "log.format", value)?;
    }
    if let Some(dir) = &cli.data_dir {
        config.apply_flag("--data-dir", "data_dir", &dir.to_string_lossy())?;
    }
    Ok(Loaded {
        config,
        unknown_env,
    })
}

fn serve(loaded: Loaded) -> anyhow::Result<ExitCode> {
    let Loaded {
        config,
        unknown_env,
    } = loaded;
    logging::init(config.log_format, &config.log_level)?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "weir starting");
    for var in unknown_env {
        tracing::warn!("ignoring environment variable {var}: it names no configuration key");
    }

    let data_dir = data_dir::DataDir::open(&config.data_dir)?;
    tracing::info!(
        "data directory {} opened and locked",
        data_dir.path().display()
    );

    let admin_access = control::admin_access(&config)?;
    admin::check_listen(config.admin_listen, &admin_access)?;
    let admin_listener = admin::bind(config.admin_listen)?;

    let credentials = control::load_credentials(&config)?;
    let tls = load_tls(&config)?;
    let storage = Storage::open(&config, data_dir.path())?;
    raise_open_files_limit();
    let groups = start_coordinator(&config, &storage)?;
    let plugins = start_plugins(&config, data_dir.path())?;
    let ticker = plugins.start_ticker()?;
    let shards = start_shards(
        &config,
        storage.writer.handle(),
        groups.handle(),
        storage.log.clone(),
        (plugins.clone(), credentials.clone()),
        tls.clone(),
    )?;
    let metrics = crate::metrics::Metrics {
        shards: shards.metrics(),
        writer: storage.writer.handle(),
        plugins: Some(plugins.clone()),
    };
    let plugins_registry = plugins.clone();

    let runtime = control::runtime()?;
    let state = Arc::new(admin::AdminState::new(metrics, Some(plugins), admin_access));
    let control = control::Control {
        admin_listener,
        state,
        fatal: storage.fatal_rx,
        shards,
        credentials,
        tls,
    };
    let code = runtime.block_on(control.serve(&config));
    // Connections are closed: no group request can come any more, no plugin call.
    groups.shutdown();
    plugins_registry.stop();
    let _ = ticker.join();
    // Finish in-flight writes, stop the upkeep, close the log.
    // The writer first: the maintenance thread's last sync then covers what it committed
    // (relaxed durability).
    storage.writer.shutdown();
    storage.maintenance.shutdown();
    drop(storage.log);
    drop(data_dir);
    if matches!(code, Ok(ExitCode::SUCCESS)) {
        tracing::info!("shutdown complete");
    }
    code
}

/// Starts the consumer-group coordinator's thread.
fn start_coordinator(
    config: &Config,
    storage: &Storage,
) -> anyhow::Result<group_thread::CoordinatorThread> {
    let limits = weir_core::kafka::coordinator::GroupLimits {
        session_timeout_ms_min: u64::from(config.kafka_group_min_session_timeout_ms.get()),
        session_timeout_ms_max: u64::from(config.kafka_group_max_session_timeout_ms.get()),
        initial_rebalance_delay_ms: u64::from(config.kafka_group_initial_rebalance_delay_ms),
        members_max: config.kafka_group_members_max.get() as usize,
        groups_max: config.kafka_groups_max.get() as usize,
    };
    if limits.session_timeout_ms_min > limits.session_timeout_ms_max {
        anyhow::bail!(
            "kafka.group_min_session_timeout_ms ({}) is above kafka.group_max_session_timeout_ms ({}): no session timeout could be accepted",
            limits.session_timeout_ms_min,
            limits.session_timeout_ms_max
        );
    }
    let thread = group_thread::CoordinatorThread::start(
        limits,
        storage.log.clone(),
        storage.writer.handle(),
    )?;
    Ok(thread)
}

/// Starts the plugin engine and every binding (config file, then deployed).
fn start_plugins(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<Arc<Registry>> {
    let settings = plugins::PluginSettings {
        deadline_ms: config.plugins_deadline_ms.get(),
        memory_bytes_max: config.plugins_memory_bytes_max.get() as usize,
        instances_max: config.plugins_instances_max.get(),
        failures_max: config.plugins_failures_max.get(),
        breaker_open_ms: config.plugins_breaker_open_ms.get(),
        module_bytes_max: config.plugins_module_bytes_max.get() as usize,
    };
    Registry::open(settings, data_dir, config.plugins_bindings.0.clone())
}

/// Binds the protocol listeners on every shard and starts the shard threads.
fn start_shards(
    config: &Config,
    writer: writer::WriterHandle,
    coordinator: group_thread::CoordinatorHandle,
    store: Arc<dyn weir_core::log_store::LogStore>,
    (plugins, auth): (Arc<Registry>, Arc<dyn weir_core::auth::Authenticator>),
    tls: Option<Arc<tls::TlsContext>>,
) -> anyhow::Result<shard::Shards> {
    let shards = match config.server_shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    let ms = |n: std::num::NonZeroU32| Duration::from_millis(u64::from(n.get()));
    let (backend, why) = io_backend(config)?;
    let server = shard::ServerConfig {
        shards,
        backend,
        pin_threads: config.server_pin_threads,
        listeners: listeners(config),
        connections_max: config.server_connections_max.get(),
        write_buffer_bytes_max: config.server_write_buffer_bytes_max.get() as usize,
        handshake_timeout: ms(config.server_handshake_timeout_ms),
        kafka_request_bytes_max: config.kafka_request_bytes_max.get() as usize,
        kafka_advertised_host: config.kafka_advertised_host.clone(),
        kafka_auto_create_topics: config.kafka_auto_create_topics,
        kafka_auto_create_partitions: config.kafka_auto_create_partitions_count.get(),
        kafka_topics_max: config.kafka_topics_max.get(),
        kafka_fetch_bytes_max: config.kafka_fetch_bytes_max.get() as usize,
        kafka_batch_decompressed_bytes_max: config.kafka_batch_decompressed_bytes_max.get()
            as usize,
        drain_timeout: Duration::from_millis(u64::from(config.shutdown_drain_timeout_ms)),
        mqtt: Arc::new(mqtt_settings(config, store.clone(), auth)?),
        plugins: Some(plugins),
        tls,
        tls_identity_as_username: config.tls_identity_as_username,
        writer,
        coordinator,
        store,
    };
    let started = shard::Shards::start(server)?;
    tracing::info!("{shards} shards, I/O backend {why}");
    for (listener, addr) in started.bound() {
        tracing::info!("{} listening on {addr}", listener.name());
    }
    Ok(started)
}

/// The protocol listeners every shard binds: Kafka, MQTT and MQTT over WebSocket, and those
/// of them over TLS that are configured.
fn listeners(config: &Config) -> Vec<shard::ListenerConfig> {
    use shard::Protocol::{Kafka, Mqtt, MqttWebSocket};
    let kafka_idle = Duration::from_millis(u64::from(config.kafka_idle_timeout_ms.get()));
    let plain = [
        (Kafka, Some(config.kafka_listen), false),
        (Mqtt, Some(config.mqtt_listen), false),
        (MqttWebSocket, Some(config.mqtt_websocket_listen), false),
    ];
    let tls = [
        (Kafka, config.kafka_tls_listen, true),
        (Mqtt, config.mqtt_tls_listen, true),
        (MqttWebSocket, config.mqtt_websocket_tls_listen, true),
    ];
    (plain.into_iter().chain(tls))
        .filter_map(|(protocol, addr, tls)| {
            Some(shard::ListenerConfig {
                protocol,
                tls,
                addr: addr?,
                connections_max: match protocol {
                    Kafka => config.kafka_connections_max.get(),
                    Mqtt | MqttWebSocket => config.mqtt_connections_max.get(),
                },
                idle_timeout: match protocol {
                    Kafka => kafka_idle,
                    // MQTT's own keep alive decides (a keep alive of 0 means none).
                    Mqtt | MqttWebSocket => Duration::MAX,
                },
            })
        })
        .collect()
}

/// The certificate of the TLS listeners (`tls.*`), when one is configured.
pub(crate) fn load_tls(config: &Config) -> anyhow::Result<Option<Arc<tls::TlsContext>>> {
    let listening = [
        config.mqtt_tls_listen,
        config.mqtt_websocket_tls_listen,
        config.kafka_tls_listen,
    ];
    if listening.iter().all(Option::is_none) && !config.admin_tls {
        if config.tls_cert_file.is_some() {
            tracing::warn!(
                "tls.cert_file is set, but no TLS listener is (mqtt.tls_listen, mqtt.websocket_tls_listen, kafka.tls_listen)"
            );
        }
        return Ok(None);
    }
    let (Some(cert_file), Some(key_file)) = (&config.tls_cert_file, &config.tls_key_file) else {
        anyhow::bail!(
            "a TLS listener (or admin.tls) is set: it needs tls.cert_file and tls.key_file"
        );
    };
    if config.tls_identity_as_username && !config.tls_require_client_cert {
        anyhow::bail!("tls.identity_as_username needs tls.require_client_cert = true");
    }
    let context = tls::TlsContext::load(tls::TlsFiles {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        client_ca_file: config.tls_client_ca_file.clone(),
        require_client_cert: config.tls_require_client_cert,
    })?;
    tracing::info!(
        "TLS certificate {} loaded{}",
        cert_file.display(),
        match (&config.tls_client_ca_file, config.tls_require_client_cert) {
            (None, _) => String::new(),
            (Some(ca), required) => format!(
                ", client certificates verified against {} ({})",
                ca.display(),
                if required { "required" } else { "optional" }
            ),
        }
    );
    Ok(Some(Arc::new(context)))
}

/// The I/O backend `server.io` asks for, and why, as the log says it.
fn io_backend(config: &Config) -> anyhow::Result<(shard::Backend, String)> {
    let (backend, why) = match (config.server_io, shard::uring_available()) {
        (config::IoBackend::Epoll, _) => (shard::Backend::Epoll, "server.io = epoll".to_owned()),
        (config::IoBackend::Uring, Ok(())) => {
            (shard::Backend::Uring, "server.io = uring".to_owned())
        }
        (config::IoBackend::Uring, Err(reason)) => {
            anyhow::bail!("server.io = uring, but io_uring cannot run here: {reason}")
        }
        (config::IoBackend::Auto, Ok(())) => (
            shard::Backend::Uring,
            "auto: io_uring works here".to_owned(),
        ),
        (config::IoBackend::Auto, Err(reason)) => (
            shard::Backend::Epoll,
            format!("auto: io_uring unavailable ({reason})"),
        ),
    };
    let name = match backend {
        shard::Backend::Epoll => "epoll",
        shard::Backend::Uring => "io_uring",
    };
    Ok((backend, format!("{name} ({why})")))
}

/// What MQTT connections share, from the `mqtt.*` keys (and the `kafka.*` keys for topics
/// publishes create).
fn mqtt_settings(
    config: &Config,
    store: Arc<dyn weir_core::log_store::LogStore>,
    auth: Arc<dyn weir_core::auth::Authenticator>,
) -> anyhow::Result<shard::MqttSettings> {
    let u16_key = |value: u32, key: &str| {
        u16::try_from(value).map_err(|_| anyhow::anyhow!("{key} is at most 65535, not {value}"))
    };
    let limits = weir_mqtt::SessionLimits {
        packet_size_bytes_max: config.mqtt_packet_size_bytes_max.get() as usize,
        receive_maximum: u16_key(config.mqtt_inflight_max.get(), "mqtt.inflight_max")?,
        topic_alias_max: u16_key(config.mqtt_topic_aliases_max, "mqtt.topic_aliases_max")?,
        outbound_queue_bytes_max: config.mqtt_outbound_queue_bytes_max.get() as usize,
        client_id_bytes_max: config.mqtt_client_id_bytes_max.get() as usize,
        connect_timeout_ms: u64::from(config.server_handshake_timeout_ms.get()),
    };
    let id_max = weir_core::log_store::RETAINED_TOPIC_BYTES_MAX;
    if limits.client_id_bytes_max > id_max {
        anyhow::bail!(
            "mqtt.client_id_bytes_max is at most {id_max} (client ids are keys of the log's session tables), not {}",
            limits.client_id_bytes_max
        );
    }
    if limits.packet_size_bytes_max > weir_mqtt::PACKET_SIZE_BYTES_LIMIT {
        anyhow::bail!(
            "mqtt.packet_size_bytes_max is at most {} (MQTT's largest packet), not {}",
            weir_mqtt::PACKET_SIZE_BYTES_LIMIT,
            limits.packet_size_bytes_max
        );
    }
    Ok(shard::MqttSettings {
        limits,
        store,
        auto_create_partitions: config.kafka_auto_create_partitions_count.get(),
        topics_max: config.kafka_topics_max.get(),
        retained_messages_max: u64::from(config.mqtt_retained_messages_max.get()),
        sessions_max: u64::from(config.mqtt_sessions_max.get()),
        session_expiry_max_s: config.mqtt_session_expiry_max_s.get(),
        subscribe_deny: config.mqtt_subscribe_deny.0.clone(),
        kafka_topic_rules: config.mqtt_kafka_topic_rules.0.clone(),
        batch_decompressed_bytes_max: config.kafka_batch_decompressed_bytes_max.get() as usize,
        auth,
        refused_connect_delay_ms: u64::from(config.auth_refused_connect_delay_ms),
    })
}

/// Raises the soft limit of open files to the hard limit: every connection is a descriptor.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit get a valid pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    tracing::info!("open files limit: {}", limit.rlim_cur);
}

/// The log and the threads in front of it.
struct Storage {
    log: Arc<weir_log::LmdbLog>,
    writer: writer::Writer,
    maintenance: maintenance::Maintenance,
    /// Receives the first fatal storage error (a failed commit or sync).
    fatal_rx: tokio::sync::mpsc::UnboundedReceiver<weir_core::log_store::StoreError>,
}

impl Storage {
    fn open(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<Storage> {
        let options = weir_log::LogOptions {
            map_size_bytes: usize::try_from(config.storage_map_size_bytes)
                .map_err(|_| anyhow::anyhow!("storage.map_size_bytes does not fit this machine"))?,
            durability: match config.storage_durability {
                config::Durability::Fsync => weir_log::Durability::Fsync,
                config::Durability::Relaxed => weir_log::Durability::Relaxed,
            },
            disk_reserve_bytes: config.storage_disk_reserve_bytes,
            ..weir_log::LogOptions::default()
        };
        let path = data_dir.join("log");
        let (log, repairs) = weir_log::LmdbLog::open(&path, options)?;
        for repair in &repairs {
            tracing::warn!("log repaired at open: {repair:?}");
        }
        let log = Arc::new(log);
        tracing::info!(
            durability = ?config.storage_durability,
            "log opened at {} ({} topics)",
            path.display(),
            weir_core::log_store::LogStore::topics(&*log)?.len()
        );
        let (fatal_tx, fatal_rx) = tokio::sync::mpsc::unbounded_channel();
        let on_fatal = |tx: tokio::sync::mpsc::UnboundedSender<_>| {
            Box::new(move |error| {
                let _ = tx.send(error);
            }) as Box<dyn FnOnce(weir_core::log_store::StoreError) + Send>
        };
        let writer = writer::Writer::start(
            log.clone(),
            writer::WriterConfig {
                commit_window: Duration::from_micros(u64::from(config.storage_commit_window_us)),
                commit_bytes_max: u64::from(config.storage_commit_bytes_max.get()),
                queue_bytes_max: config.storage_append_queue_bytes_max,
                sync_before_ack: config.storage_durability == config::Durability::Fsync,
            },
            on_fatal(fatal_tx.clone()),
        )?;
        let sync_interval = (config.storage_durability == config::Durability::Relaxed).then(|| {
            Duration::from_millis(u64::from(config.storage_relaxed_sync_interval_ms.get()))
        });
        let maintenance = maintenance::Maintenance::start(
            log.clone(),
            maintenance::MaintenanceConfig {
                retention_interval: Duration::from_millis(u64::from(
                    config.storage_retention_check_interval_ms.get(),
                )),
                sync_interval,
            },
            on_fatal(fatal_tx),
        )?;
        Ok(Storage {
            log,
            writer,
            maintenance,
            fatal_rx,
        })
    }
}
