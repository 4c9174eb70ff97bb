//! The control thread: the admin API, signals (SIGINT and SIGTERM stop, SIGHUP reloads the
//! credentials and the TLS certificate), their files watched for changes, and the drain at shutdown. It runs on
//! a tokio current-thread runtime, never on a shard.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::{admin, auth, shard, tls};

/// The control thread's runtime: tokio, one thread, I/O and timers.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .thread_name("weir-control")
        .build()
}

/// What the control thread serves until a signal (or a storage failure) stops the process:
/// the admin API; then it drains the shards.
pub(crate) struct Control {
    pub(crate) admin_listener: std::net::TcpListener,
    pub(crate) state: Arc<admin::AdminState>,
    /// Receives the first fatal storage error.
    pub(crate) fatal: tokio::sync::mpsc::UnboundedReceiver<weir_core::log_store::StoreError>,
    pub(crate) shards: shard::Shards,
    /// Reloaded on SIGHUP and when its files change.
    pub(crate) credentials: Arc<auth::Credentials>,
    /// The TLS listeners' certificate, reloaded like the credentials.
    pub(crate) tls: Option<Arc<tls::TlsContext>>,
    /// The access-control list, reloaded like the credentials.
    pub(crate) acl: Option<Arc<auth::acl_file::AclFile>>,
}

impl Control {
    /// Serves the admin API until SIGINT or SIGTERM, then stops accepting and drains the
    /// shards and the admin listener (a second signal exits at once). Fails when storage
    /// fails, so nothing more is acknowledged.
    pub(crate) async fn serve(self, config: &Config) -> anyhow::Result<ExitCode> {
        let Control {
            admin_listener,
            state,
            mut fatal,
            shards,
            credentials,
            tls,
            acl,
        } = self;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let drain = Duration::from_millis(u64::from(config.shutdown_drain_timeout_ms));
        let limits = admin::AdminLimits {
            connections_max: config.admin_connections_max.get(),
            header_timeout: Duration::from_millis(u64::from(config.admin_header_timeout_ms.get())),
            tls: tls.clone().filter(|_| config.admin_tls),
        };
        let admin_addr = admin_listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(admin_listener)?;
        let mut admin_task = tokio::spawn(admin::serve(
            listener,
            limits,
            state.clone(),
            stop_rx,
            drain,
        ));

        let scheme = if config.admin_tls { "HTTPS" } else { "HTTP" };
        tracing::info!("admin {scheme} listening on {admin_addr}");
        state.set_ready(true);
        tracing::info!("weir ready");

        let mut sighup = signal(SignalKind::hangup())?;
        let mut check = tokio::time::interval(CREDENTIALS_CHECK);
        let name = loop {
            tokio::select! {
                _ = sigint.recv() => break "SIGINT",
                _ = sigterm.recv() => break "SIGTERM",
                _ = sighup.recv() => reload(&credentials, (tls.as_deref(), acl.as_deref()), &state, false),
                _ = check.tick() => reload(&credentials, (tls.as_deref(), acl.as_deref()), &state, true),
                joined = &mut admin_task => {
                    anyhow::bail!("admin listener stopped unexpectedly: {joined:?}");
                }
                error = fatal.recv() => {
                    state.set_ready(false);
                    anyhow::bail!("storage failed, stopping so that nothing more is acknowledged: {error:?}");
                }
            }
        };
        tracing::info!("{name} received: shutting down (a second signal exits at once)");
        state.set_ready(false);
        // The receiver lives in the admin task until it finishes, so this cannot fail while
        // there is anything to stop.
        let _ = stop_tx.send(true);
        // The shards and the admin listener stop accepting and flush their answers at the same
        // time, each within the drain timeout; the writer then commits what was submitted. A
        // second signal cuts this short.
        let shards_done = tokio::task::spawn_blocking(move || shards.shutdown());
        let draining = async move {
            let _ = admin_task.await;
            shards_done.await
        };
        tokio::select! {
            _ = draining => Ok(ExitCode::SUCCESS),
            _ = sigint.recv() => second_signal(),
            _ = sigterm.recv() => second_signal(),
        }
    }
}

/// How often the credential files are looked at for changes.
const CREDENTIALS_CHECK: Duration = Duration::from_secs(2);

/// Loads the users file and the Mosquitto password file, and warns about what stays open.
pub(crate) fn load_credentials(config: &Config) -> anyhow::Result<Arc<auth::Credentials>> {
    let users_file = config.users_file();
    let credentials = auth::Credentials::load(
        users_file.clone(),
        config.auth_mosquitto_password_file.clone(),
        config.auth_allow_anonymous,
    )?;
    tracing::info!(
        "{} users loaded ({}{})",
        credentials.users(),
        users_file.display(),
        (config.auth_mosquitto_password_file.as_ref())
            .map_or_else(String::new, |p| format!(", {}", p.display()))
    );
    let open = |addr: std::net::SocketAddr| !addr.ip().is_loopback();
    if config.auth_allow_anonymous
        && (open(config.mqtt_listen) || open(config.mqtt_websocket_listen))
    {
        tracing::warn!(
            "anonymous MQTT clients are accepted beyond loopback (auth.allow_anonymous = true)"
        );
    }
    if config.auth_allow_anonymous && open(config.kafka_listen) {
        tracing::warn!(
            "anonymous Kafka clients (no SASL) are accepted beyond loopback (auth.allow_anonymous = true)"
        );
    }
    Ok(Arc::new(credentials))
}

/// Logs a reload of the credentials, after `why` (SIGHUP, a change of the files).
fn reloaded(credentials: &auth::Credentials, why: &str, result: Option<Result<usize, String>>) {
    match result {
        Some(Ok(users)) => tracing::info!("credentials reloaded after {why}: {users} users"),
        Some(Err(e)) => tracing::warn!(
            "credentials not reloaded after {why}, keeping the {} users loaded before: {e}",
            credentials.users()
        ),
        None => {}
    }
}

/// Reloads the credentials, the TLS certificate, the access-control list and the admin
/// token: on SIGHUP, or (`changed_only`) those whose files changed.
fn reload(
    credentials: &auth::Credentials,
    (tls, acl): (Option<&tls::TlsContext>, Option<&auth::acl_file::AclFile>),
    admin: &admin::AdminState,
    changed_only: bool,
) {
    let why = if changed_only { "a change" } else { "SIGHUP" };
    let users = match changed_only {
        true => credentials.reload_if_changed(),
        false => Some(credentials.reload()),
    };
    reloaded(credentials, why, users);
    let certificate = tls.and_then(|tls| match changed_only {
        true => tls.reload_if_changed(),
        false => Some(tls.reload()),
    });
    tls_reloaded(why, certificate);
    let rules = acl.and_then(|acl| match changed_only {
        true => acl.reload_if_changed(),
        false => Some(acl.reload()),
    });
    match rules {
        Some(Ok(())) => tracing::info!("access-control list reloaded after {why}"),
        Some(Err(e)) => tracing::warn!("keeping the access-control list in force after {why}: {e}"),
        None => {}
    }
    token_reloaded(why, admin.reload_token(changed_only));
}

/// Logs a reload of the admin token, after `why`.
fn token_reloaded(why: &str, result: Option<Result<(), String>>) {
    match result {
        Some(Ok(())) => tracing::info!("admin token reloaded after {why}"),
        Some(Err(e)) => tracing::warn!("keeping the admin token in force after {why}: {e}"),
        None => {}
    }
}

/// Logs a reload of the TLS certificate, after `why`.
fn tls_reloaded(why: &str, result: Option<Result<(), String>>) {
    match result {
        Some(Ok(())) => tracing::info!("tls certificate reloaded after {why}"),
        Some(Err(e)) => {
            tracing::warn!("keeping the previous TLS certificate after {why}: {e}")
        }
        None => {}
    }
}

/// Who may use the admin API: the token of `admin.token_file`, if set.
pub(crate) fn admin_access(config: &Config) -> anyhow::Result<admin::AccessPolicy> {
    Ok(match &config.admin_token_file {
        Some(path) => admin::AccessPolicy::Token(admin::TokenFile::load(
            path.clone(),
            config.admin_metrics_require_token,
        )?),
        None => admin::AccessPolicy::Fixed(Arc::new(admin::AdminAccess::open())),
    })
}

fn second_signal() -> ! {
    tracing::warn!("second signal: exiting without draining");
    std::process::exit(1);
}
