//! The spend ledger: per-key spend that is never dropped.
//!
//! [`Ledger::add`] is called on the request path. It takes a short lock and adds the
//! request's totals into an in-memory map keyed by `(key_id, period_start_ms)`; it never
//! awaits and never refuses. The map holds one entry per key and period with spend not yet
//! written, whatever the request rate, so there is no queue that could fill up and no reason
//! to drop. One task takes the whole map every `interval` and writes it with one
//! [`SpendStore::add_spend`] (one statement, one transaction).
//!
//! IMPORTANT: a flush that fails puts its deltas back into the map (summed with what arrived
//! meanwhile) and is retried at the next tick, with a backoff capped at `MAX_BACKOFF` (5 s). The
//! spend waits in memory, counted in [`LedgerStats::pending_picousd`], until the store
//! takes it. Only [`Ledger::shutdown`] gives up: after a few more tries what is still
//! unwritten is counted in [`LedgerStats::lost_picousd`] and logged.
//!
//! A flush whose commit reached the database but whose answer was lost is retried too and so
//! counted twice: the ledger errs towards charging a key, never towards letting spend go
//! unrecorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{SpendDelta, SpendStore, SpendTotals, Store};

/// Tuning of the [`Ledger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Time between flushes. Default 200 ms. It bounds how much spend a crash (not a
    /// graceful shutdown) can lose, and how stale another replica's view of spend is.
    pub interval: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(200),
        }
    }
}

/// Counters of a [`Ledger`] since it was spawned, in picodollars (costs) and counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStats {
    /// Added but not yet written (including a flush in progress).
    pub pending_picousd: i64,
    /// In committed flushes.
    pub written_picousd: i64,
    /// Given up on: unwritten at shutdown, or added after it.
    pub lost_picousd: i64,
    /// Committed flushes.
    pub flushes: u64,
    /// Flushes that failed (each was put back and retried, or lost at shutdown).
    pub failed_flushes: u64,
}

/// The most a failing store makes the ledger wait between two flushes (unless `interval`
/// is longer).
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Delays before the retries of the last flush, at shutdown.
const SHUTDOWN_RETRIES: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
];

#[derive(Default)]
struct State {
    /// Per key, per period start: what is waiting to be written.
    pending: HashMap<String, HashMap<i64, SpendTotals>>,
    /// Cost in `pending`.
    pending_cost: i64,
    /// Cost taken by a flush that has not finished yet.
    in_flight_cost: i64,
    written: i64,
    lost: i64,
    flushes: u64,
    failed_flushes: u64,
    /// Set by `shutdown` (or when every handle is gone): `add` counts as lost from then on.
    closed: bool,
    lost_after_close_logged: bool,
}

impl State {
    fn put(&mut self, key_id: &str, period_start_ms: i64, totals: SpendTotals) {
        // Allocates the key only the first time it is seen since the last flush.
        let periods = match self.pending.get_mut(key_id) {
            Some(p) => p,
            None => self.pending.entry(key_id.to_owned()).or_default(),
        };
        let t = periods.entry(period_start_ms).or_default();
        *t = t.saturating_add(totals);
        self.pending_cost = self.pending_cost.saturating_add(totals.cost_picousd);
    }

    fn stats(&self) -> LedgerStats {
        LedgerStats {
            pending_picousd: self.pending_cost.saturating_add(self.in_flight_cost),
            written_picousd: self.written,
            lost_picousd: self.lost,
            flushes: self.flushes,
            failed_flushes: self.failed_flushes,
        }
    }
}

struct Shared {
    state: Mutex<State>,
    store: Store,
}

impl Shared {
    /// The lock is only ever held for map and counter updates, never across an await; a
    /// poisoned lock still holds consistent counters (no update panics halfway), so it is used.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes everything pending with one `add_spend`. On failure the deltas go back into the
    /// map. `Ok(())` when there was nothing to write.
    async fn flush(&self) -> Result<(), ()> {
        let (deltas, cost) = {
            let mut s = self.lock();
            if s.pending.is_empty() {
                return Ok(());
            }
            let cost = std::mem::take(&mut s.pending_cost);
            s.in_flight_cost = s.in_flight_cost.saturating_add(cost);
            let deltas: Vec<SpendDelta> = std::mem::take(&mut s.pending)
                .into_iter()
                .flat_map(|(key_id, periods)| {
                    periods
                        .into_iter()
                        .map(move |(period_start_ms, totals)| SpendDelta {
                            key_id: key_id.clone(),
                            period_start_ms,
                            totals,
                        })
                })
                .collect();
            (deltas, cost)
        };
        let result = self.store.add_spend(&deltas).await;
        let mut s = self.lock();
        s.in_flight_cost = s.in_flight_cost.saturating_sub(cost);
        match result {
            Ok(()) => {
                s.written = s.written.saturating_add(cost);
                s.flushes += 1;
                Ok(())
            }
            Err(error) => {
                for d in &deltas {
                    s.put(&d.key_id, d.period_start_ms, d.totals);
                }
                s.failed_flushes += 1;
                let (failed_flushes, pending) = (s.failed_flushes, s.pending_cost);
                drop(s);
                // The error never holds the URL or password (see `StoreError`).
                tracing::error!(
                    %error,
                    picousd = cost,
                    pending_picousd = pending,
                    entries = deltas.len(),
                    failed_flushes,
                    backend = self.store.backend(),
                    "spend ledger: flush failed; the spend is kept in memory and retried"
                );
                Err(())
            }
        }
    }

    /// The last flush, with retries; what it cannot write is counted lost.
    async fn final_flush(&self) {
        let mut result = self.flush().await;
        for delay in SHUTDOWN_RETRIES {
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(delay).await;
            result = self.flush().await;
        }
        let mut s = self.lock();
        if s.pending.is_empty() {
            return;
        }
        let lost = std::mem::take(&mut s.pending_cost);
        let entries: usize = s.pending.values().map(HashMap::len).sum();
        s.pending.clear();
        s.lost = s.lost.saturating_add(lost);
        drop(s);
        tracing::error!(
            lost_picousd = lost,
            entries,
            backend = self.store.backend(),
            "spend ledger: the store did not take the last flush; this spend is lost"
        );
    }
}

struct Handle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// Its sender lives in the task: `changed()` errs once the task is gone.
    done: watch::Receiver<()>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Handle to the spend ledger. Cheap to clone. When the last handle is dropped without
/// [`Ledger::shutdown`], the task still writes what is pending before it exits.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Spawns the flush task on the current tokio runtime.
    pub fn spawn(store: Store, cfg: LedgerConfig) -> Ledger {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            store,
        });
        let (stop, stop_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(());
        let interval = cfg.interval.max(Duration::from_millis(1));
        let task = tokio::spawn(run(Arc::clone(&shared), interval, stop_rx, done_tx));
        Ledger {
            inner: Arc::new(Handle {
                shared,
                stop,
                done,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    /// Adds `totals` to `key_id`'s spend in the period starting at `period_start_ms`.
    /// Never awaits and never drops: after [`Ledger::shutdown`] the cost is counted in
    /// `lost_picousd` (and logged once).
    pub fn add(&self, key_id: &str, period_start_ms: i64, totals: SpendTotals) {
        let mut s = self.inner.shared.lock();
        if !s.closed {
            s.put(key_id, period_start_ms, totals);
            return;
        }
        s.lost = s.lost.saturating_add(totals.cost_picousd);
        let first = !std::mem::replace(&mut s.lost_after_close_logged, true);
        drop(s);
        if first {
            tracing::error!(
                picousd = totals.cost_picousd,
                "spend ledger: spend added after shutdown is lost (counted in lost_picousd; \
                 logged once)"
            );
        }
    }

    /// Current counters.
    pub fn stats(&self) -> LedgerStats {
        self.inner.shared.lock().stats()
    }

    /// Stops the task after a last flush (retried a few times; about a second in all when
    /// the store fails fast) and returns the final counters; what could not be written is in
    /// `lost_picousd`. Idempotent; concurrent callers all wait for the same last flush.
    pub async fn shutdown(&self) -> LedgerStats {
        self.inner.shared.lock().closed = true;
        self.inner.stop.send_replace(true);
        let mut done = self.inner.done.clone();
        while done.changed().await.is_ok() {}
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "spend ledger task failed");
        }
        self.stats()
    }
}

/// Delay before the next flush after `failures` failed ones in a row.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let grown = interval.saturating_mul(1u32 << failures.min(16));
    grown.min(MAX_BACKOFF.max(interval))
}

async fn run(
    shared: Arc<Shared>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    _done: watch::Sender<()>,
) {
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            biased;
            // Shutdown, or every handle dropped.
            _ = stop.changed() => break,
            () = tokio::time::sleep(backoff(interval, failures)) => {}
        }
        // IMPORTANT: never cancelled halfway (it is not inside the select): an abandoned
        // `add_spend` might have committed, and its deltas would be put back and counted twice.
        match shared.flush().await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(
                        failed_flushes_in_a_row = failures,
                        "spend ledger: the store takes flushes again"
                    );
                }
                failures = 0;
            }
            Err(()) => failures = failures.saturating_add(1),
        }
    }
    shared.lock().closed = true;
    shared.final_flush().await;
}
