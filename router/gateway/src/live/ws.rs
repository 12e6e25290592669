//! One client of `GET /ai/stream`: the snapshots and the events of its topics, until it leaves,
//! its key is revoked, the gateway shuts down, or it is too slow.
//!
//! IMPORTANT: nothing is buffered per client beyond its broadcast receiver (`EVENT_BUFFER`
//! events, shared with every other client) and the latest snapshot (a `watch`). A client that
//! falls `EVENT_BUFFER` events behind is closed with 1008 ("too slow"); one whose socket takes
//! no frame for `WRITE_TIMEOUT`, or falls that far behind while a write waits, is dropped (its
//! socket would not take a close frame either). The kernel's socket buffers (up to a few MB on
//! loopback) come before that: a client that reads nothing is dropped once they are full.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::Live;
use super::sessions::Viewer;
use crate::server::Draining;

/// How long one frame may take to be written before the client counts as too slow.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a write that waits checks whether its client has fallen too far behind.
const LAG_CHECK: Duration = Duration::from_millis(100);
/// Feeds open at once, at most (each costs a task and a receiver).
pub const MAX_FEEDS: usize = 256;
/// The largest message a client may send (a subscription is a few dozen bytes).
pub const MAX_CLIENT_MESSAGE: usize = 4096;
/// The most a frame may wait in the socket's write buffer.
pub const MAX_WRITE_BUFFER: usize = 1024 * 1024;

/// Close codes (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;
const POLICY_VIOLATION: u16 = 1008;

/// Every topic a client may subscribe to.
pub const TOPICS: [&str; 5] = ["snapshot", "decisions", "breakers", "policies", "alerts"];

/// A slot among the gateway's `MAX_FEEDS` (`Live::feeds`), given back when dropped.
pub struct Slot(Arc<Live>);

impl Slot {
    pub fn take(live: &Arc<Live>) -> Option<Slot> {
        let taken = live
            .feeds
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_FEEDS).then_some(n + 1)
            });
        taken.ok().map(|_| Slot(live.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.feeds.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one feed needs.
pub struct Feed {
    pub live: Arc<Live>,
    pub viewer: Viewer,
    /// The gateway's abort (the drain time is over).
    pub abort: CancellationToken,
    pub draining: Option<Draining>,
    pub slot: Slot,
}

/// The topics a client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics(Vec<&'static str>);

impl Topics {
    pub fn all() -> Topics {
        Topics(TOPICS.to_vec())
    }

    pub fn has(&self, topic: &str) -> bool {
        self.0.contains(&topic)
    }

    /// A client's `{"subscribe": [...]}`, or the error frame's message.
    pub fn parse(text: &str) -> Result<Topics, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Subscribe {
            subscribe: Vec<String>,
        }
        let asked: Subscribe = serde_json::from_str(text).map_err(|e| {
            format!(
                "expected {{\"subscribe\": [topics]}} with topics among {}: {e}",
                TOPICS.join(", ")
            )
        })?;
        let unknown: Vec<&str> = asked
            .subscribe
            .iter()
            .map(String::as_str)
            .filter(|t| !TOPICS.contains(t))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "unknown topics: {} (known: {}); the subscription is unchanged",
                unknown.join(", "),
                TOPICS.join(", ")
            ));
        }
        Ok(Topics(
            TOPICS
                .into_iter()
                .filter(|t| asked.subscribe.iter().any(|a| a == t))
                .collect(),
        ))
    }
}

/// Why a feed ends.
enum End {
    /// The client left, or its socket failed: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

/// Serve one client until its feed ends.
pub async fn serve(mut socket: WebSocket, feed: Feed) {
    let end = pump(&mut socket, &feed).await;
    if let End::Close(code, reason) = end {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(frame)).await;
    }
    drop(feed.slot);
}

async fn pump(socket: &mut WebSocket, feed: &Feed) -> End {
    let mut events = feed.live.subscribe();
    let mut snapshots = feed.live.snapshots();
    // The latest snapshot at once, if there is one, rather than up to a second later.
    snapshots.mark_changed();
    let mut topics = Topics::all();
    loop {
        if !feed.viewer.is_valid() {
            return End::Close(POLICY_VIOLATION, "key revoked");
        }
        if feed.draining.as_ref().is_some_and(Draining::is_draining) {
            return End::Close(GOING_AWAY, "shutting down");
        }
        let outgoing = tokio::select! {
            () = feed.abort.cancelled() => return End::Close(GOING_AWAY, "shutting down"),
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return End::Gone,
                Some(Ok(Message::Text(text))) => match Topics::parse(text.as_str()) {
                    Ok(t) => {
                        topics = t;
                        None
                    }
                    Err(message) => Some(error_frame(&message)),
                },
                Some(Ok(Message::Binary(_))) => {
                    Some(error_frame("binary frames are not understood: send JSON text"))
                }
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(_)) => None,
            },
            event = events.recv() => match event {
                Ok(e) if topics.has(e.topic()) => serde_json::to_string(&*e)
                    .ok()
                    .map(|json| Message::Text(json.into())),
                Ok(_) => None,
                Err(RecvError::Lagged(_)) => return End::Close(POLICY_VIOLATION, "too slow"),
                Err(RecvError::Closed) => return End::Close(GOING_AWAY, "shutting down"),
            },
            changed = snapshots.changed() => match changed {
                Err(_) => return End::Close(GOING_AWAY, "shutting down"),
                Ok(()) => {
                    let json = snapshots.borrow_and_update().clone();
                    (topics.has("snapshot") && !json.is_empty())
                        .then(|| Message::Text(json.as_str().into()))
                }
            },
        };
        if let Some(frame) = outgoing
            && !sent(socket, frame, &events).await
        {
            return End::Gone;
        }
    }
}

/// Write one frame; `false` when the socket failed, took `WRITE_TIMEOUT`, or the client fell
/// `EVENT_BUFFER` events behind while the write waited (its sockets are full: no close frame
/// can go through either, so the socket is just dropped).
async fn sent(
    socket: &mut WebSocket,
    frame: Message,
    events: &tokio::sync::broadcast::Receiver<Arc<super::Event>>,
) -> bool {
    let send = socket.send(frame);
    tokio::pin!(send);
    let deadline = tokio::time::sleep(WRITE_TIMEOUT);
    tokio::pin!(deadline);
    let mut check = tokio::time::interval(LAG_CHECK);
    loop {
        tokio::select! {
            done = &mut send => return done.is_ok(),
            () = &mut deadline => return false,
            _ = check.tick() => {
                if events.len() >= super::EVENT_BUFFER {
                    return false;
                }
            }
        }
    }
}

fn error_frame(message: &str) -> Message {
    let v = serde_json::json!({"type": "error", "message": message});
    Message::Text(v.to_string().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_names_known_topics_only() {
        let t = Topics::parse(r#"{"subscribe": ["alerts", "snapshot"]}"#).unwrap();
        assert!(t.has("alerts") && t.has("snapshot") && !t.has("decisions"));
        assert_eq!(
            Topics::parse(r#"{"subscribe": []}"#).unwrap(),
            Topics(vec![])
        );
        let e = Topics::parse(r#"{"subscribe": ["alerts", "gossip", "x"]}"#).unwrap_err();
        assert!(e.contains("gossip, x") && !e.contains("alerts,"), "{e}");
        assert!(Topics::parse(r#"{"subscribe": "alerts"}"#).is_err());
        assert!(Topics::parse("not json").is_err());
        assert!(Topics::parse(r#"{"subscribe": [], "extra": 1}"#).is_err());
    }
}
