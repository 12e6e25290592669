//! Serving: accept with TCP_NODELAY, hold every connection to the ingress timeouts, and shut
//! down with a deadline on SIGINT/SIGTERM.
//!
//! IMPORTANT: TCP_NODELAY on accepted sockets. Nagle with delayed ACKs stalls small responses
//! by ~40 ms at low concurrency (seen in a peer gateway).
//!
//! Each connection runs hyper's HTTP/1 server beside a watchdog that drops the socket when the
//! client is too slow: a request head not complete within `header_read` (counted from accept,
//! or from the first byte of a later request), a body not complete within `body_read` (408
//! while the answer has not started, else the socket is closed), or no new request within
//! `idle` of the last answer. hyper's own `header_read_timeout` cannot express this: its timer
//! starts as soon as a keep-alive connection goes idle, so idle time would be capped at the
//! header time.
//!
//! Shutdown: stop accepting; hyper's graceful shutdown closes idle connections and lets busy
//! ones finish their request, for `drain`. Then the gateway's `abort` token is cancelled
//! (streams end with an error event, complete answers with 503) and, `ABORT_GRACE` later,
//! whatever is still open is dropped. Only then may the caller flush the log and the spend.

mod conn;
mod stall;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::ApiError;
use crate::config::ServerConfig;

/// After `abort`, how long requests get to send their last bytes before sockets are dropped.
const ABORT_GRACE: Duration = Duration::from_secs(2);
/// Pause after an accept error that is not about one connection (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The ingress timeouts (`[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub body_read: Duration,
    pub idle: Duration,
    pub drain: Duration,
    /// A client that takes no byte of its answer for this long has its connection closed.
    pub write_stall: Duration,
}

impl From<&ServerConfig> for Timeouts {
    fn from(s: &ServerConfig) -> Self {
        Timeouts {
            header_read: s.header_read,
            body_read: s.body_read,
            idle: s.idle,
            drain: s.drain,
            write_stall: s.write_stall,
        }
    }
}

/// A request extension: set once shutdown has begun (readiness then reports not ready).
#[derive(Debug, Clone)]
pub struct Draining(CancellationToken);

impl Draining {
    pub fn is_draining(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// The error a request body yields when it did not arrive within `server.body_read_ms`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body was not received within {} ms", .after.as_millis())]
pub struct BodyTimeout {
    pub after: Duration,
}

impl BodyTimeout {
    /// The timeout somewhere in a body error's chain of sources.
    pub fn find(e: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
        let mut cause = Some(e);
        while let Some(c) = cause {
            if let Some(t) = c.downcast_ref::<BodyTimeout>() {
                return Some(*t);
            }
            cause = c.source();
        }
        None
    }

    /// 408 in OpenAI's shape.
    pub fn answer(&self) -> ApiError {
        ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "The request body was not received within {} ms; the connection is closed.",
                self.after.as_millis()
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_timeout"),
            retry_after: None,
        }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then drain (see the module header).
/// `abort` is the gateway's token, cancelled when the drain time is over.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    abort: CancellationToken,
    shutdown: impl Future<Output = ()>,
) {
    let draining = CancellationToken::new();
    let kill = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !per_connection(&e) {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        connections.spawn(conn::connection(
            tcp,
            peer,
            app.clone(),
            timeouts,
            draining.clone(),
            kill.clone(),
        ));
    }
    // Stop accepting: new connections are refused from here on.
    drop(listener);
    draining.cancel();
    connections.close();
    tracing::info!(
        connections = connections.len(),
        drain_ms = timeouts.drain.as_millis() as u64,
        "draining"
    );
    if tokio::time::timeout(timeouts.drain, connections.wait())
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(
        connections = connections.len(),
        "drain time over: ending the requests still in flight"
    );
    abort.cancel();
    if tokio::time::timeout(ABORT_GRACE, connections.wait())
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(
        connections = connections.len(),
        "closing connections that did not end"
    );
    kill.cancel();
    // Dropping a connection is immediate; the bound only guards against a stuck task.
    let _ = tokio::time::timeout(ABORT_GRACE, connections.wait()).await;
}

/// An accept error about the one connection that failed (the next accept may succeed).
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The listen backlog asked of the kernel, which caps it at `net.core.somaxconn` (4096 on
/// Linux ≥ 5.4). `TcpListener::bind` asks for 128: 256 clients connecting at once overflowed it,
/// and each dropped SYN came back a second later (the gate's c256 run: p99 1,022 ms, with
/// `TcpExtListenOverflows` counting the drops).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Bind `addr` as the gateway listens: `SO_REUSEADDR` (a restart does not wait out TIME_WAIT)
/// and a [`LISTEN_BACKLOG`]-deep accept queue.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
