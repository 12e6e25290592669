//! Key events over pub/sub: a key revoked or made on one replica reaches every other at once.
//! The store's 2-second re-read stays as the fallback, and runs after every reconnection (to
//! catch what was published while this replica was not listening).

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::*;

/// One event, as published (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Event {
    /// Refuse this key from now on.
    Revoke { id: String, hash: String },
    /// A key was made: forget that its hash was unknown.
    Create { hash: String },
    /// `DELETE /ai/cache` on some replica: drop this replica's own entries too.
    CacheClear,
}

/// Events larger than this are not ours: ignored.
const MAX_EVENT_BYTES: usize = 4096;

impl Shared {
    /// Publish an event to every replica (this one included). Best effort: when Redis is down
    /// the others learn it from the store's re-read.
    pub async fn publish(self: &Arc<Self>, event: &Event) {
        let Ok(text) = serde_json::to_string(event) else {
            return;
        };
        let mut conn = self.conn();
        let channel = self.events_channel();
        let _ = self
            .call::<i64>(
                "publish",
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&text)
                    .query_async(&mut conn),
            )
            .await;
    }
}

pub(super) fn follow(
    shared: &Arc<Shared>,
    on_event: impl Fn(Event) + Send + Sync + 'static,
    on_reconnect: impl Fn() + Send + Sync + 'static,
) {
    let weak = Arc::downgrade(shared);
    let client = shared.client.clone();
    let channel = shared.events_channel();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            if weak.strong_count() == 0 {
                return;
            }
            let connected = tokio::time::timeout(Duration::from_secs(2), async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(ps)
            })
            .await;
            let mut pubsub = match connected {
                Ok(Ok(ps)) => ps,
                _ => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            if !first {
                tracing::info!("redis: key events followed again; re-reading the keys");
                on_reconnect();
            }
            first = false;
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Some(me) = weak.upgrade() else { return };
                let payload: &[u8] = msg.get_payload_bytes();
                if payload.len() > MAX_EVENT_BYTES {
                    continue;
                }
                match serde_json::from_slice::<Event>(payload) {
                    Ok(event) => {
                        me.stats.events_received.fetch_add(1, Ordering::Relaxed);
                        on_event(event);
                    }
                    Err(e) => tracing::warn!(error = %e, "redis: ignored a malformed key event"),
                }
            }
            tracing::warn!("redis: the key events connection closed; reconnecting");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
