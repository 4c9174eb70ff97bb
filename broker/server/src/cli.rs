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
    admin, auth, config, control, data_dir, group_thread, logging, maintenance, shard, tls, writer,
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
    Plugin(crate::plugin_cli::PluginArgs),
    /// Manage the users file (MQTT user names and passwords, Kafka SASL users).
    #[command(subcommand)]
    User(crate::user_cli::UserCommand),
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
            crate::plugin_cli::run(config, command)
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
    admin::check_listen(config.admin_listen, &admin_access.current())?;
    let admin_listener = admin::bind(config.admin_listen)?;
    let Running {
        data_dir,
        storage,
        groups,
        plugins,
        ticker,
        shards,
        credentials,
        tls,
        acl,
    } = Running::start_in(&config, data_dir)?;
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
        acl,
    };
    let code = runtime.block_on(control.serve(&config));
    let running = (groups, plugins_registry, ticker);
    stop(running, (storage.writer, storage.maintenance, storage.log));
    drop(data_dir);
    if matches!(code, Ok(ExitCode::SUCCESS)) {
        tracing::info!("shutdown complete");
    }
    code
}

/// The broker running in this process, without its admin API (which `weir serve` adds):
/// the locked data directory, the log with its writer and upkeep, the group coordinator,
/// the plugins and the shards serving every listener. Embedding and in-process tests use it
/// directly.
pub struct Running {
    data_dir: data_dir::DataDir,
    storage: Storage,
    groups: group_thread::CoordinatorThread,
    plugins: Arc<Registry>,
    ticker: std::thread::JoinHandle<()>,
    shards: shard::Shards,
    credentials: Arc<auth::Credentials>,
    tls: Option<Arc<tls::TlsContext>>,
    acl: Option<Arc<auth::acl_file::AclFile>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("data_dir", &self.data_dir.path())
            .field("bound", &self.bound())
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Opens and locks the data directory, opens the log, and starts every thread and
    /// listener `config` asks for.
    pub fn start(config: &Config) -> anyhow::Result<Running> {
        Running::start_in(config, data_dir::DataDir::open(&config.data_dir)?)
    }

    /// [`Running::start`] in a data directory already opened and locked.
    fn start_in(config: &Config, data_dir: data_dir::DataDir) -> anyhow::Result<Running> {
        let (credentials, tls, acl) = (
            control::load_credentials(config)?,
            load_tls(config)?,
            load_acl(config)?,
        );
        let storage = Storage::open(config, data_dir.path())?;
        raise_open_files_limit();
        let groups = start_coordinator(config, &storage)?;
        let plugins = start_plugins(config, data_dir.path())?;
        let ticker = plugins.start_ticker()?;
        let clients: Clients = (credentials.clone(), acl_source(acl.as_ref()));
        let shards = start_shards(
            config,
            &storage,
            groups.handle(),
            (plugins.clone(), clients),
            tls.clone(),
        )?;
        Ok(Running {
            data_dir,
            storage,
            groups,
            plugins,
            ticker,
            shards,
            credentials,
            tls,
            acl,
        })
    }

    /// The addresses the listeners bound, per listener (port 0 resolved).
    pub fn bound(&self) -> &[(shard::ListenerConfig, std::net::SocketAddr)] {
        self.shards.bound()
    }

    /// Closes every connection (after the drain timeout), stops the threads and closes the
    /// log.
    pub fn stop(self) {
        self.shards.shutdown();
        let running = (self.groups, self.plugins, self.ticker);
        let storage = self.storage;
        stop(running, (storage.writer, storage.maintenance, storage.log));
        drop(self.data_dir);
    }
}

/// Stops, once the connections are closed, the group coordinator and the plugins (no group
/// request or plugin call can come any more); then finishes in-flight writes, stops the
/// upkeep and closes the log. The writer first: the maintenance thread's last sync then
/// covers what it committed (relaxed durability).
fn stop(
    (groups, plugins, ticker): (
        group_thread::CoordinatorThread,
        Arc<Registry>,
        std::thread::JoinHandle<()>,
    ),
    (writer, maintenance, log): (
        writer::Writer,
        maintenance::Maintenance,
        Arc<weir_log::LmdbLog>,
    ),
) {
    groups.shutdown();
    plugins.stop();
    let _ = ticker.join();
    writer.shutdown();
    maintenance.shutdown();
    drop(log);
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
    storage: &Storage,
    coordinator: group_thread::CoordinatorHandle,
    (plugins, clients): (Arc<Registry>, Clients),
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
        mqtt: Arc::new(mqtt_settings(config, storage.log.clone(), clients)?),
        plugins: Some(plugins),
        tls,
        tls_identity_as_username: config.tls_identity_as_username,
        writer: storage.writer.handle(),
        coordinator,
        store: storage.log.clone(),
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

/// Who a client is and what it may do: the credentials, and the access-control list.
type Clients = (
    Arc<dyn weir_core::auth::Authenticator>,
    Arc<dyn weir_core::acl::AclSource>,
);

/// The access-control list of `auth.acl_file`, when set.
fn load_acl(config: &Config) -> anyhow::Result<Option<Arc<auth::acl_file::AclFile>>> {
    let Some(path) = &config.auth_acl_file else {
        return Ok(None);
    };
    let acl = auth::acl_file::AclFile::load(path.clone())?;
    tracing::info!(
        "access-control list {} loaded: what it does not grant is denied",
        path.display()
    );
    Ok(Some(Arc::new(acl)))
}

/// What the fronts ask about access: the list, or none (everything allowed).
fn acl_source(acl: Option<&Arc<auth::acl_file::AclFile>>) -> Arc<dyn weir_core::acl::AclSource> {
    match acl {
        Some(acl) => acl.clone(),
        None => Arc::new(weir_core::acl::NoAcl),
    }
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
    (auth, acl): Clients,
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
        keep_alive_max_s: u16_key(config.mqtt_keep_alive_max_s, "mqtt.keep_alive_max_s")?,
        topic_levels_max: config.mqtt_topic_levels_max.get() as usize,
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
        acl,
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
