//! HTTP admin listener: `GET /health` and `GET /metrics` (Prometheus text format); plugin
//! management joins them later.
//!
//! It runs on the control-plane runtime (tokio), never on a shard thread. Every connection is
//! bounded: a count limit (a connection over it is closed as soon as it is accepted), a header
//! timeout, and a header size cap (hyper answers 431 beyond it).

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

/// Bytes of request head hyper buffers before it answers 431.
const HEADER_BYTES_MAX: usize = 16 * 1024;

/// Pause after a failed accept (out of file descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Limits of the admin listener, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    /// Connections open at once.
    pub connections_max: u32,
    /// Time to receive request headers.
    pub header_timeout: Duration,
}

/// What the admin endpoints report; shared with the startup and shutdown sequence.
#[derive(Debug)]
pub struct AdminState {
    ready: AtomicBool,
    metrics: crate::metrics::Metrics,
}

impl AdminState {
    /// Not ready yet; `/metrics` reads `metrics`.
    pub fn new(metrics: crate::metrics::Metrics) -> AdminState {
        AdminState {
            ready: AtomicBool::new(false),
            metrics,
        }
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
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(route(&state, &req)) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
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
            "no such endpoint; try GET /health or GET /metrics\n",
        ),
    }
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
