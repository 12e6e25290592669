//! The stream pump: one task per streamed answer reads the upstream (through `stream::watch`)
//! into a small bounded channel, so the upstream's timers and the answer's bookkeeping run
//! whatever the client does; the response body only reads the channel.
//!
//! The pump ends the stream when the upstream finishes or fails (the failure is then the
//! client's last event); when the client has made no room in the channel for `write_stall`
//! (it stopped reading); when the client went away (the body was dropped); or when the
//! gateway's `abort` token fires (shutdown's drain time is over). In the last three the
//! upstream is dropped at once — its connection closed — and the model is not blamed.
//!
//! IMPORTANT: the observer (the pipeline's tap) hears the end exactly once. When the body is
//! dropped first, the body's drop tells it, synchronously: the request's log row is written
//! right after that drop and must already hold the usage and the reason.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Primed;
use switchyard_providers::{ErrorKind, EventStream, ProviderError};
use switchyard_types::StreamEvent;

/// Events queued between the pump and the client: enough to smooth bursts, small enough that
/// a client that stops reading is noticed after a handful of events.
pub const CHANNEL_EVENTS: usize = 16;

/// How a pumped stream ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ended<'a> {
    /// The upstream sent its last event.
    Finished,
    /// The upstream failed or was cut (stall, deadline, a bound).
    Failed(&'a ProviderError),
    /// The client did not read for `write_stall` (or its connection was closed while the
    /// pump waited for it to read).
    ClientStalled,
    /// The client went away.
    ClientGone,
    /// The gateway is shutting down.
    Shutdown,
}

impl Ended<'_> {
    /// The log row's error code for an end that is not a clean finish.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Ended::Finished => None,
            Ended::Failed(_) => Some("stream_cut"),
            Ended::ClientStalled => Some("client_stalled"),
            Ended::ClientGone => Some("client_closed"),
            Ended::Shutdown => Some("server_shutdown"),
        }
    }
}

/// Sees every upstream event as the pump reads it, then the end.
pub trait Observer: Send + 'static {
    fn event(&mut self, event: &StreamEvent);
    fn end(&mut self, how: Ended<'_>);
}

/// The client-side limits of a pumped stream (`server.write_stall_ms`, `Gateway::abort`).
#[derive(Debug, Clone)]
pub struct PumpLimits {
    pub write_stall: Duration,
    pub abort: CancellationToken,
}

type Item = Result<StreamEvent, ProviderError>;

struct Shared<O> {
    /// Taken by whoever reports the end first.
    observer: Mutex<Option<O>>,
    /// The pump is waiting for the client to make room in the channel.
    waiting_for_client: AtomicBool,
}

impl<O: Observer> Shared<O> {
    fn lock(&self) -> MutexGuard<'_, Option<O>> {
        self.observer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn event(&self, event: &StreamEvent) {
        if let Some(o) = self.lock().as_mut() {
            o.event(event);
        }
    }

    fn end(&self, how: Ended<'_>) {
        let observer = self.lock().take();
        if let Some(mut o) = observer {
            o.end(how);
        }
    }
}

/// Start the pump for `primed` (whose head the observer has already seen): the returned
/// stream yields the head, then what the pump forwards, then — after an abnormal end — one
/// error, so a cut answer never ends like a complete one.
pub fn pump<O: Observer>(primed: Primed, observer: O, limits: PumpLimits) -> Primed {
    let (tx, rx) = mpsc::channel(CHANNEL_EVENTS);
    let (last_tx, last_rx) = oneshot::channel();
    let shared = Arc::new(Shared {
        observer: Mutex::new(Some(observer)),
        waiting_for_client: AtomicBool::new(false),
    });
    // Untracked on purpose: it ends with its stream, and at the latest on `abort`.
    tokio::spawn(run(primed.tail, shared.clone(), tx, last_tx, limits));
    Primed {
        head: primed.head,
        tail: Box::pin(Received {
            rx,
            last: Some(last_rx),
            shared,
        }),
    }
}

enum Stop {
    Shutdown,
    ClientStalled,
    ClientGone,
}

async fn run<O: Observer>(
    mut tail: EventStream,
    shared: Arc<Shared<O>>,
    tx: mpsc::Sender<Item>,
    last: oneshot::Sender<ProviderError>,
    limits: PumpLimits,
) {
    let stop = loop {
        let next = tokio::select! {
            biased;
            () = limits.abort.cancelled() => break Stop::Shutdown,
            () = tx.closed() => break Stop::ClientGone,
            next = tail.next() => next,
        };
        let (item, final_item) = match next {
            None => {
                shared.end(Ended::Finished);
                return;
            }
            Some(Ok(event)) => {
                shared.event(&event);
                (Ok(event), false)
            }
            Some(Err(e)) => {
                shared.end(Ended::Failed(&e));
                (Err(e), true)
            }
        };
        let permit = match tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => break Stop::ClientGone,
            Err(mpsc::error::TrySendError::Full(())) => {
                shared.waiting_for_client.store(true, Ordering::Release);
                let waited = tokio::select! {
                    biased;
                    () = limits.abort.cancelled() => None,
                    r = tokio::time::timeout(limits.write_stall, tx.reserve()) => Some(r),
                };
                match waited {
                    None => break Stop::Shutdown,
                    Some(Ok(Ok(permit))) => {
                        shared.waiting_for_client.store(false, Ordering::Release);
                        permit
                    }
                    // Closed while it had unread events: it had stopped reading (the server
                    // closes such connections after `write_stall`, usually first).
                    Some(Ok(Err(_)) | Err(_)) => break Stop::ClientStalled,
                }
            }
        };
        permit.send(item);
        if final_item {
            return;
        }
    };
    // IMPORTANT: drop the upstream first: its connection closes now, not when the client
    // finally reads or leaves; the watcher records the end as neutral for the model.
    drop(tail);
    match stop {
        Stop::Shutdown => {
            shared.end(Ended::Shutdown);
            let _ = last.send(ProviderError::new(
                ErrorKind::StreamCut,
                "the gateway is shutting down",
            ));
        }
        Stop::ClientStalled => {
            tracing::info!(
                write_stall_ms = limits.write_stall.as_millis() as u64,
                "the client stopped reading its stream: closed, upstream call dropped"
            );
            shared.end(Ended::ClientStalled);
            let _ = last.send(ProviderError::new(
                ErrorKind::StreamCut,
                format!(
                    "the client did not read for {} ms",
                    limits.write_stall.as_millis()
                ),
            ));
        }
        Stop::ClientGone => shared.end(Ended::ClientGone),
    }
}

/// The response side: what the pump forwarded, then its last word.
struct Received<O: Observer> {
    rx: mpsc::Receiver<Item>,
    last: Option<oneshot::Receiver<ProviderError>>,
    shared: Arc<Shared<O>>,
}

impl<O: Observer> Stream for Received<O> {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) => {
                // The pump sends its last word before it lets go of the channel.
                let last = self.last.take().and_then(|mut l| l.try_recv().ok());
                Poll::Ready(last.map(Err))
            }
            other => other,
        }
    }
}

impl<O: Observer> Drop for Received<O> {
    fn drop(&mut self) {
        let how = if self.shared.waiting_for_client.load(Ordering::Acquire) {
            Ended::ClientStalled
        } else {
            Ended::ClientGone
        };
        self.shared.end(how);
    }
}

#[cfg(test)]
#[path = "pump_tests.rs"]
mod tests;
