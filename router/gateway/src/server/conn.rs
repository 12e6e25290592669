//! One connection: hyper's HTTP/1 server beside the watchdog of its ingress timeouts (see the
//! parent module's header), the request body's deadline, and the 408 that answers a body that
//! did not arrive in time.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::stall::WriteStall;
use super::{BodyTimeout, Draining, Timeouts};

/// How much longer than `body_read` a body may take when the handler is not reading it (so
/// the 408 path cannot fire) before the socket is dropped.
const BODY_GRACE: Duration = Duration::from_secs(1);

/// One connection: hyper's HTTP/1 server, its watchdog, and the shutdown signals.
pub(super) async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    draining: CancellationToken,
    kill: CancellationToken,
) {
    let watch = Arc::new(Watch::new(timeouts));
    let io = TokioIo::new(Watched {
        io: WriteStall::new(tcp, timeouts.write_stall),
        watch: watch.clone(),
    });
    let service = Service {
        app,
        peer,
        watch: watch.clone(),
        draining: Draining(draining.clone()),
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // The watchdog does header timing (see the module header); hyper's timer stays off.
    http.keep_alive(true).header_read_timeout(None);
    // Upgrades: `GET /ai/stream` (WebSocket). The upgraded socket leaves this task (and its
    // watchdog) and is served by the feed's own task with its own write timeout.
    let mut conn = pin!(http.serve_connection(io, service).with_upgrades());
    let mut watchdog = pin!(watchdog(&watch));
    let mut graceful = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut watchdog => {
                tracing::debug!("closing a connection whose client is too slow");
                return;
            }
            () = draining.cancelled(), if !graceful => {
                graceful = true;
                conn.as_mut().graceful_shutdown();
            }
            () = kill.cancelled() => return,
        }
    }
}

/// Resolves when the connection's current deadline has passed.
async fn watchdog(watch: &Watch) {
    loop {
        match watch.deadline() {
            None => watch.changed.notified().await,
            Some(at) if at <= Instant::now() => return,
            Some(at) => {
                tokio::select! {
                    () = watch.changed.notified() => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
        }
    }
}

/// Where a connection is, and so which deadline applies.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for the first byte of a request since `since`; `first`: none came yet.
    Idle { since: Instant, first: bool },
    /// A request head is arriving and must be complete by `by`.
    Head { by: Instant },
    /// Request `seq` is being served. Its body must end by `body_by` (`None` once it has
    /// ended, timed out or been dropped by the handler).
    Busy {
        seq: u64,
        body_by: Option<Instant>,
        answered: bool,
        timed_out: bool,
    },
    /// The body timed out after the answer had started: drop the socket now.
    Close,
}

/// A connection's phase, shared by its socket, its service and their bodies (all polled on
/// the connection's task, so the lock is never contended).
struct Watch {
    timeouts: Timeouts,
    state: Mutex<(Phase, u64)>,
    /// Wakes the watchdog when a deadline may have moved earlier.
    changed: Notify,
}

impl Watch {
    fn new(timeouts: Timeouts) -> Watch {
        let phase = Phase::Idle {
            since: Instant::now(),
            first: true,
        };
        Watch {
            timeouts,
            state: Mutex::new((phase, 0)),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (Phase, u64)> {
        // A panic while holding it cannot leave the phase half-written: it is a Copy value.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deadline(&self) -> Option<Instant> {
        let t = &self.timeouts;
        match self.lock().0 {
            Phase::Idle { since, first: true } => Some(since + t.header_read),
            Phase::Idle {
                since,
                first: false,
            } => Some(since + t.idle),
            Phase::Head { by } => Some(by),
            Phase::Busy { body_by, .. } => body_by.map(|b| b + BODY_GRACE),
            Phase::Close => Some(Instant::now()),
        }
    }

    /// Bytes arrived: when idle, a request head has begun.
    fn read(&self) {
        let mut state = self.lock();
        if let Phase::Idle { since, first } = state.0 {
            // The first request's head is timed from accept, so a client that connects and
            // waits cannot double its allowance.
            let start = if first { since } else { Instant::now() };
            state.0 = Phase::Head {
                by: start + self.timeouts.header_read,
            };
            drop(state);
            self.changed.notify_one();
        }
    }

    /// The head is in and the service is called: request `seq` begins.
    fn begin(&self, body_ended: bool) -> u64 {
        let mut state = self.lock();
        state.1 += 1;
        let seq = state.1;
        state.0 = Phase::Busy {
            seq,
            body_by: (!body_ended).then(|| Instant::now() + self.timeouts.body_read),
            answered: false,
            timed_out: false,
        };
        drop(state);
        self.changed.notify_one();
        seq
    }

    fn body_ended(&self, seq: u64) {
        if let Phase::Busy {
            seq: s, body_by, ..
        } = &mut self.lock().0
            && *s == seq
        {
            *body_by = None;
        }
    }

    fn body_timed_out(&self, seq: u64) {
        let mut state = self.lock();
        if let Phase::Busy {
            seq: s,
            body_by,
            answered,
            timed_out,
        } = &mut state.0
            && *s == seq
        {
            if *answered {
                state.0 = Phase::Close;
                drop(state);
                self.changed.notify_one();
            } else {
                *timed_out = true;
                *body_by = None;
            }
        }
    }

    /// The handler answered request `seq`. True if its body timed out first: the answer is
    /// then replaced by 408.
    fn answered(&self, seq: u64) -> bool {
        match &mut self.lock().0 {
            Phase::Busy {
                seq: s,
                answered,
                timed_out,
                ..
            } if *s == seq => {
                *answered = true;
                *timed_out
            }
            _ => false,
        }
    }

    /// The answer to request `seq` has been sent (or dropped): the connection is idle.
    fn done(&self, seq: u64) {
        let mut state = self.lock();
        if matches!(state.0, Phase::Busy { seq: s, .. } if s == seq) {
            state.0 = Phase::Idle {
                since: Instant::now(),
                first: false,
            };
            drop(state);
            self.changed.notify_one();
        }
    }
}

/// The socket, reporting arriving bytes to the connection's watch.
struct Watched {
    io: WriteStall<TcpStream>,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The per-connection service: the router, with timed request bodies and watched answers.
#[derive(Clone)]
struct Service {
    app: Router,
    /// The client's address, for handlers (`ConnectInfo`: the admin key's attempt limit).
    peer: SocketAddr,
    watch: Arc<Watch>,
    draining: Draining,
}

type Answer = Response<Sending>;

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let seq = self.watch.begin(req.body().is_end_stream());
        let body_read = self.watch.timeouts.body_read;
        let watch = self.watch.clone();
        let mut req = req.map(|inner| TimedBody {
            timer: (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(body_read))),
            inner,
            watch: watch.clone(),
            seq,
            ended: false,
        });
        req.extensions_mut().insert(self.draining.clone());
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let app = self.app.clone();
        Box::pin(async move {
            let response = match app.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let response = if watch.answered(seq) {
                body_timeout_answer(body_read, &response)
            } else {
                response
            };
            Ok(response.map(|inner| Sending {
                inner,
                watch,
                seq,
                ended: false,
            }))
        })
    }
}

/// 408, closing the connection (the rest of the body is unread). The handler's own answer to
/// the failed read is replaced: whatever it said, the client was too slow.
fn body_timeout_answer(after: Duration, replaced: &Response<Body>) -> Response<Body> {
    let mut response = BodyTimeout { after }.answer().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(id) = replaced.headers().get(crate::api::admit::REQUEST_ID) {
        headers.insert(crate::api::admit::REQUEST_ID, id.clone());
    }
    response
}

/// A request body that must end within `body_read` of the head.
struct TimedBody {
    inner: Incoming,
    timer: Option<Pin<Box<Sleep>>>,
    watch: Arc<Watch>,
    seq: u64,
    ended: bool,
}

impl TimedBody {
    fn end(&mut self) {
        self.ended = true;
        self.timer = None;
        self.watch.body_ended(self.seq);
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(timer) = this.timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            this.ended = true;
            this.timer = None;
            this.watch.body_timed_out(this.seq);
            let after = this.watch.timeouts.body_read;
            return Poll::Ready(Some(Err(Box::new(BodyTimeout { after }))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.end();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.end();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.end();
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        // A handler that drops the body unread leaves it to hyper, which drains what has
        // arrived or closes the connection after the answer.
        if !self.ended {
            self.watch.body_ended(self.seq);
        }
    }
}

/// An answer's body, telling the watch when it has been sent (or dropped).
struct Sending {
    inner: Body,
    watch: Arc<Watch>,
    seq: u64,
    ended: bool,
}

impl Sending {
    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.watch.done(self.seq);
        }
    }
}

impl HttpBody for Sending {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            this.end();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn watch() -> Watch {
        Watch::new(Timeouts {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            drain: Duration::from_secs(10),
            write_stall: Duration::from_secs(30),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_head_is_timed_from_accept_later_ones_from_their_first_byte() {
        let w = watch();
        let accepted = Instant::now();
        assert_eq!(w.deadline(), Some(accepted + Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(4)).await;
        w.read();
        assert_eq!(w.deadline(), Some(accepted + Duration::from_secs(10)));
        let seq = w.begin(true);
        assert_eq!(
            w.deadline(),
            None,
            "no body: no deadline while the answer runs"
        );
        tokio::time::advance(Duration::from_secs(100)).await;
        w.done(seq);
        let idle_since = Instant::now();
        assert_eq!(w.deadline(), Some(idle_since + Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(50)).await;
        w.read();
        let head_by = Some(Instant::now() + Duration::from_secs(10));
        assert_eq!(w.deadline(), head_by);
        tokio::time::advance(Duration::from_secs(3)).await;
        w.read();
        assert_eq!(
            w.deadline(),
            head_by,
            "more bytes of a head do not extend it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_is_timed_from_the_head_until_it_ends() {
        let w = watch();
        let seq = w.begin(false);
        let by = Instant::now() + Duration::from_secs(30) + BODY_GRACE;
        assert_eq!(w.deadline(), Some(by));
        w.body_ended(seq + 1);
        assert_eq!(
            w.deadline(),
            Some(by),
            "another request's body changes nothing"
        );
        w.body_ended(seq);
        assert_eq!(w.deadline(), None);
        assert!(!w.answered(seq));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_timeout_before_the_answer_means_408_after_it_closes() {
        let w = watch();
        let seq = w.begin(false);
        w.body_timed_out(seq);
        assert_eq!(w.deadline(), None, "the 408 path ends the request");
        assert!(w.answered(seq), "the answer is replaced by 408");

        let w = watch();
        let seq = w.begin(false);
        assert!(!w.answered(seq));
        w.body_timed_out(seq);
        let now = Instant::now();
        assert!(w.deadline().unwrap() <= now, "close now");
        w.done(seq);
        assert!(w.deadline().unwrap() <= Instant::now(), "and stay closed");
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_fires_at_the_deadline_and_follows_changes() {
        let w = Arc::new(watch());
        let dog = tokio::spawn({
            let w = w.clone();
            async move { watchdog(&w).await }
        });
        tokio::time::advance(Duration::from_secs(9)).await;
        let seq = w.begin(true);
        tokio::time::advance(Duration::from_secs(300)).await;
        tokio::task::yield_now().await;
        assert!(
            !dog.is_finished(),
            "a request without a body has no deadline"
        );
        w.done(seq);
        tokio::time::advance(Duration::from_secs(59)).await;
        tokio::task::yield_now().await;
        assert!(!dog.is_finished());
        tokio::time::advance(Duration::from_secs(2)).await;
        tokio::time::timeout(Duration::from_secs(1), dog)
            .await
            .unwrap()
            .unwrap();
    }
}
