//! live/: what operators watch as it happens — the event bus behind `GET /ai/stream` (WebSocket)
//! and the dashboard. Producers (the pipeline's routing decisions, the health watcher's breaker
//! changes, policy reloads, alerts) `publish`; every connected client has its own bounded
//! receiver, and one that falls behind is dropped rather than buffered (`broadcast` lags it).
//!
//! Nothing here blocks a request: `publish` is a non-blocking send that is a no-op without
//! subscribers.

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{broadcast, watch};

pub mod alerts;
pub mod decisions;
pub mod sessions;
pub mod snapshot;
pub mod ws;

/// Alerts counted as firing at most (ids are per condition and subject; a bound all the same).
const MAX_FIRING: usize = 10_000;

/// Events buffered per subscriber before it counts as lagging (and is disconnected).
pub const EVENT_BUFFER: usize = 256;

/// One event on the feed. Serialised with its `type`, e.g. `{"type": "alert", ...}`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A routing decision (sampled: `[live] decision_sample`).
    Decision(DecisionEvent),
    /// A model's breaker changed state (`closed`, `open`, `half_open`) or was forced.
    Breaker(BreakerEvent),
    /// The policy registry reloaded (or failed to).
    PolicyReload(PolicyEvent),
    /// An alert fired or resolved.
    Alert(Alert),
}

impl Event {
    /// The topic a client subscribes to: `decisions`, `breakers`, `policies`, `alerts`.
    pub fn topic(&self) -> &'static str {
        match self {
            Event::Decision(_) => "decisions",
            Event::Breaker(_) => "breakers",
            Event::PolicyReload(_) => "policies",
            Event::Alert(_) => "alerts",
        }
    }
}

/// What the feed shows of one routed request.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionEvent {
    pub ts_ms: i64,
    pub request_id: String,
    pub route: String,
    /// The model that answered (or was to answer, for a failure).
    pub model: Option<String>,
    pub runner_up: Option<String>,
    /// The decision's one-line reason.
    pub reason: String,
    /// Upstream calls made.
    pub attempts: u32,
    /// Attempts after the first (fallbacks and hedges).
    pub fallbacks: u32,
    /// `hit`, `miss`, `bypass`, …
    pub cache: String,
    pub policies: Vec<String>,
    pub status: u16,
    pub latency_ms: f64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BreakerEvent {
    pub ts_ms: i64,
    pub model: String,
    pub from: String,
    pub to: String,
    /// `observed` (the health watcher saw it change) or `forced` (an operator).
    pub cause: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyEvent {
    pub ts_ms: i64,
    pub ok: bool,
    pub detail: String,
}

/// An alert: from a detector on a live signal, or from a rule event.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// Stable for one condition on one subject while it lasts (`latency:gpt-4o-mini`).
    pub id: String,
    /// `latency`, `error_rate`, `ttft`, `spend_rate`, `cache_hit_rate` (detectors), or
    /// `breaker_open`, `budget_80`, `budget_100`, `policy_failed`, `policy_stale`,
    /// `redis_degraded` (rules).
    pub kind: String,
    /// The model, key or component it is about.
    pub subject: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub message: String,
    /// The observed value and the band it left (detectors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    pub started_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_ms: Option<i64>,
}

/// The bus. Shared as `Arc<Live>` in `Gateway::live`.
pub struct Live {
    events: broadcast::Sender<Arc<Event>>,
    /// The latest snapshot as JSON text, built once a second by one task for every client
    /// (`snapshot::spawn`); clients share the `Arc`.
    snapshot: watch::Sender<Arc<String>>,
    /// Ids of the alerts firing now, from the `Alert` events published (the snapshot's
    /// `alerts_active`).
    firing: Mutex<HashSet<String>>,
    /// The dashboard's browser sessions (`POST /dashboard/session`).
    pub sessions: sessions::Sessions,
    /// Feeds (`GET /ai/stream`) open now (`ws::Slot`).
    feeds: AtomicUsize,
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

impl Live {
    pub fn new() -> Live {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (snapshot, _) = watch::channel(Arc::new(String::new()));
        Live {
            events,
            snapshot,
            firing: Mutex::default(),
            sessions: sessions::Sessions::default(),
            feeds: AtomicUsize::new(0),
        }
    }

    /// Send to every subscriber; never blocks, nothing happens without subscribers (except
    /// that an alert is counted as firing or resolved).
    pub fn publish(&self, event: Event) {
        if let Event::Alert(a) = &event
            && let Ok(mut firing) = self.firing.lock()
        {
            if a.state == "firing" {
                if firing.len() < MAX_FIRING {
                    firing.insert(a.id.clone());
                }
            } else {
                firing.remove(&a.id);
            }
        }
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(Arc::new(event));
        }
    }

    /// Whether anyone listens (producers may skip building an event otherwise).
    pub fn has_subscribers(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// A new subscriber's receiver: it gets events from now on; if it falls `EVENT_BUFFER`
    /// events behind, its next `recv` is `Lagged` and the connection is to be closed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// The latest snapshot, and each new one as it is built (empty before the first).
    pub fn snapshots(&self) -> watch::Receiver<Arc<String>> {
        self.snapshot.subscribe()
    }

    /// Whether a client watches the snapshots (otherwise none is built).
    pub fn watched(&self) -> bool {
        self.snapshot.receiver_count() > 0
    }

    pub(crate) fn set_snapshot(&self, json: String) {
        self.snapshot.send_replace(Arc::new(json));
    }

    /// Feeds open now.
    pub fn feeds(&self) -> usize {
        self.feeds.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Alerts firing now.
    pub fn alerts_active(&self) -> usize {
        self.firing.lock().map_or(0, |f| f.len())
    }
}
