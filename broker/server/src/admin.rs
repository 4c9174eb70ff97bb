//! HTTP admin listener: `GET /health`, `GET /metrics` (Prometheus text format), and plugin
//! management:
//!
//! - `GET /plugins`: deployed modules, every binding and its counters (JSON);
//! - `PUT /plugins/modules/<name>` with the component's bytes: validated (compiled, its world
//!   checked) and stored; 400 with the validation error if it is no plugin, 413 beyond
//!   `plugins.module_bytes_max`;
//! - `PUT /plugins/bindings/<name>` with a binding as JSON (`{"topics": [...], "plugins":
//!   [{"module": "<name>", "config": {...}}], ...}`): started (each plugin's `init` run) and
//!   swapped in, or refused with 400 and nothing changed;
//! - `DELETE /plugins/bindings/<name>`.
//!
//! It runs on the control-plane runtime (tokio), never on a shard thread. Every connection is
//! bounded: a count limit (a connection over it is closed as soon as it is accepted), a header
//! timeout, and a header size cap (hyper answers 431 beyond it). Who may call what is
//! [`AdminAccess`] (`access.rs`): with `admin.token_file`, everything but `GET /health` (and
//! `GET /metrics`, unless `admin.metrics_require_token`) needs the bearer token, and a request
//! without it gets 401 before it is routed. With `admin.tls` it speaks HTTPS with the TLS
//! listeners' certificate (reloaded with it), the handshake bounded by the header timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

mod access;

pub use access::{AccessPolicy, AdminAccess, TOKEN_CHARS_MIN, TokenFile, check_listen, read_token};

/// Bytes of request head hyper buffers before it answers 431.
const HEADER_BYTES_MAX: usize = 16 * 1024;

/// Pause after a failed accept (out of file descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Limits of the admin listener, from the configuration, and its TLS.
#[derive(Debug, Clone)]
pub struct AdminLimits {
    /// Connections open at once.
    pub connections_max: u32,
    /// Time to receive request headers (and, with TLS, to finish the handshake before).
    pub header_timeout: Duration,
    /// HTTPS with this certificate (`admin.tls`); `None`: plain HTTP.
    pub tls: Option<Arc<crate::tls::TlsContext>>,
}

/// What the admin endpoints report; shared with the startup and shutdown sequence.
#[derive(Debug)]
pub struct AdminState {
    ready: AtomicBool,
    metrics: crate::metrics::Metrics,
    plugins: Option<Arc<crate::plugins::Registry>>,
    access: AccessPolicy,
}

impl AdminState {
    /// Not ready yet; `/metrics` reads `metrics`, `/plugins` manages `plugins`; `access`
    /// says who may call what.
    pub fn new(
        metrics: crate::metrics::Metrics,
        plugins: Option<Arc<crate::plugins::Registry>>,
        access: AccessPolicy,
    ) -> AdminState {
        AdminState {
            ready: AtomicBool::new(false),
            metrics,
            plugins,
            access,
        }
    }

    /// Reads the admin token file again (`changed_only`: if it changed); `None` when there is
    /// none or it did not change.
    pub fn reload_token(&self, changed_only: bool) -> Option<Result<(), String>> {
        self.access.reload(changed_only)
    }

    /// Marks the broker ready (true) or not (false) for `/health`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// Serves connections from `listener` until `shutdown` turns true, then stops accepting and
/// waits up to `drain` for open requests to finish.
pub async fn serve(
    listener: TcpListener,
    limits: AdminLimits,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let permits = Arc::new(Semaphore::new(limits.connections_max as usize));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(HEADER_BYTES_MAX)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off briefly and keep serving open connections.
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "admin connection refused: admin.connections_max reached");
            drop(stream);
            continue;
        };
        let service = service(state.clone(), peer);
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let (tls, handshake_timeout) = (limits.tls.clone(), limits.header_timeout);
        tokio::spawn(async move {
            let ended = match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                Some(tls) => {
                    let Some(stream) = handshake(&tls, stream, handshake_timeout, peer).await
                    else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, "admin connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("admin connections still open after the drain timeout; closing them");
    }
}

/// What answers the requests of one admin connection from `peer`: the token first, then the
/// route.
fn service(
    state: Arc<AdminState>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Send
+ 'static {
    hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move {
            let response = if !state.access.current().allows(&req) {
                tracing::debug!(%peer, path = req.uri().path(), "admin request refused: no valid token");
                unauthorized()
            } else if req.uri().path().starts_with("/plugins") {
                plugins_route(state, req).await
            } else {
                route(&state, &req)
            };
            Ok::<_, Infallible>(response)
        }
    })
}

/// The TLS handshake of an admin connection (`admin.tls`), within `timeout`; `None` (logged)
/// when it fails.
async fn handshake(
    tls: &crate::tls::TlsContext,
    stream: tokio::net::TcpStream,
    timeout: Duration,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.admin_config());
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, "admin TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "admin TLS handshake timed out");
            None
        }
    }
}

fn route(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => {
            if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (&Method::GET, "/metrics") => {
            let mut response = text(StatusCode::OK, "");
            *response.body_mut() = Full::new(Bytes::from(state.metrics.render()));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        (_, "/health" | "/metrics") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "no such endpoint; try GET /health, GET /metrics or GET /plugins\n",
        ),
    }
}

/// `/plugins...`: module and binding management. Compiling and starting plugins runs on a
/// blocking thread, off the control-plane runtime.
async fn plugins_route(state: Arc<AdminState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let Some(registry) = state.plugins.clone() else {
        return text(StatusCode::NOT_FOUND, "plugins are off\n");
    };
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, []) => json(StatusCode::OK, &registry.describe()),
        (&Method::PUT, ["modules", name] | ["bindings", name]) => {
            let limit = registry.module_bytes_max();
            let body = match http_body_util::Limited::new(req.into_body(), limit)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    return owned_text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("body not read (plugins.module_bytes_max is {limit}): {e}\n"),
                    );
                }
            };
            let name = (*name).to_owned();
            let modules = segments[0] == "modules";
            let done = tokio::task::spawn_blocking(move || {
                if modules {
                    registry
                        .put_module(&name, &body)
                        .map(|info| serde_json::json!(info))
                } else {
                    let mut value: serde_json::Value = serde_json::from_slice(&body)
                        .map_err(|e| format!("the body is not JSON: {e}"))?;
                    if let Some(object) = value.as_object_mut() {
                        object.insert("name".into(), serde_json::Value::String(name.clone()));
                    }
                    let spec =
                        crate::plugins::parse_bindings(serde_json::Value::Array(vec![value]))?
                            .pop()
                            .ok_or("no binding")?;
                    registry.put_binding(spec)?;
                    Ok(serde_json::json!({ "binding": name, "deployed": true }))
                }
            })
            .await;
            match done {
                Ok(Ok(answer)) => json(StatusCode::OK, &answer),
                Ok(Err(refused)) => owned_text(StatusCode::BAD_REQUEST, format!("{refused}\n")),
                Err(e) => owned_text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        (&Method::DELETE, ["bindings", name]) => {
            let name = (*name).to_owned();
            let done = tokio::task::spawn_blocking(move || registry.remove_binding(&name)).await;
            match done {
                Ok(Ok(true)) => text(StatusCode::OK, "removed\n"),
                Ok(Ok(false)) => text(StatusCode::NOT_FOUND, "no such binding\n"),
                Ok(Err(refused)) => owned_text(StatusCode::BAD_REQUEST, format!("{refused}\n")),
                Err(e) => owned_text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "try GET /plugins, PUT /plugins/modules/<name>, PUT or DELETE /plugins/bindings/<name>\n",
        ),
    }
}

/// 401: the request needs the admin token.
fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "this request needs the admin token: Authorization: Bearer <the token in admin.token_file>\n",
    );
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer realm=\"weir admin\""),
    );
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = owned_text(status, format!("{value:#}\n"));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn owned_text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Binds the admin listener; a clear error if the address is taken.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr} for admin HTTP (admin.listen): {e}")
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
