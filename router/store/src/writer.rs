//! The batched request-log writer and the retention task.
//!
//! [`Writer::record`] is called on the request path and must never wait:
//! it `try_send`s into a bounded channel and counts a full channel as a
//! dropped row (warned at most once a second, with the running total). A single
//! task drains the channel into batches, one [`RequestLog::insert_batch`]
//! transaction each: a batch is flushed once `batch_rows` rows are in it, or
//! `interval` after its first row.
//!
//! The batch size adapts to the load: rows that queued up while a batch was being
//! written all go into the next one, up to `MAX_BATCH_FACTOR` (16) × `batch_rows`
//! (4,096 rows by default). A light load is written in small batches soon after it
//! arrives; a heavy one pays a transaction's fixed cost (`BEGIN`, the rollup
//! upserts, the commit and, on Postgres, its WAL flush) once per thousands of rows,
//! so the writer catches up instead of falling further behind.
//!
//! Rows carry no spend: dropping one loses a log line, never money. Spend goes
//! through the [`Ledger`](crate::Ledger), which cannot drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{RequestLog, RequestRecord, Store};
use switchyard_types::clock::now_ms;

/// Tuning of the [`Writer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    /// Rows that may wait in the channel; beyond that `record` drops. Default 10 000.
    pub capacity: usize,
    /// Rows that make a batch: it is written as soon as this many are waiting. Rows that
    /// queued meanwhile go into the next batch, up to `MAX_BATCH_FACTOR` times this
    /// (the adaptive batch size). Default 256.
    pub batch_rows: usize,
    /// Longest a row waits in a partial batch. Default 200 ms.
    pub interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            batch_rows: 256,
            interval: Duration::from_millis(200),
        }
    }
}

/// A batch takes at most this many times `batch_rows` rows (what queued up while the last one
/// was being written).
pub(crate) const MAX_BATCH_FACTOR: usize = 16;

/// The most rows one transaction takes for a given `batch_rows`.
pub(crate) fn max_batch_rows(batch_rows: usize) -> usize {
    batch_rows.max(1).saturating_mul(MAX_BATCH_FACTOR)
}

/// Counters of a [`Writer`] since it was spawned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterStats {
    /// Rows accepted but not yet written or failed (approximate).
    pub queued: u64,
    /// Rows in committed batches (rows whose id was already stored included).
    pub written: u64,
    /// Rows refused by `record`: queue full, or after `shutdown`.
    pub dropped: u64,
    /// Rows of batches that still failed after the retries.
    pub failed: u64,
    /// Committed batches.
    pub batches: u64,
    /// Rows in the largest committed batch.
    #[serde(default)]
    pub largest_batch: u64,
}

/// Delays before the retries of a failed batch.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
];

/// At most one "dropping rows" warning per this many milliseconds (issue 17: each with the
/// running total, so a sustained overload shows how many rows it cost as it happens).
const DROP_WARN_EVERY_MS: u64 = 1_000;

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
    largest_batch: AtomicU64,
}

struct Inner {
    tx: mpsc::Sender<RequestRecord>,
    counters: Arc<Counters>,
    shutdown: watch::Sender<bool>,
    /// Its sender lives in the task: `changed()` errs once the task is gone.
    done: watch::Receiver<()>,
    task: Mutex<Option<JoinHandle<()>>>,
    started: Instant,
    /// Milliseconds since `started` of the last drop warning; `u64::MAX` = never.
    last_drop_warn_ms: AtomicU64,
}

/// Handle to the background request-log writer. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Spawns the writer task on the current tokio runtime.
    pub fn spawn(store: Store, cfg: WriterConfig) -> Writer {
        let cfg = WriterConfig {
            capacity: cfg.capacity.max(1),
            batch_rows: cfg.batch_rows.max(1),
            interval: cfg.interval,
        };
        let (tx, rx) = mpsc::channel(cfg.capacity);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(());
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(
            Task {
                store,
                cfg,
                counters: Arc::clone(&counters),
                degraded: false,
            },
            rx,
            shutdown_rx,
            done_tx,
        ));
        Writer {
            inner: Arc::new(Inner {
                tx,
                counters,
                shutdown,
                done,
                task: Mutex::new(Some(task)),
                started: Instant::now(),
                last_drop_warn_ms: AtomicU64::new(u64::MAX),
            }),
        }
    }

    /// Queues a row for writing. Never blocks or awaits: when the queue is full
    /// (or the writer is shut down) the row is dropped and counted.
    pub fn record(&self, row: RequestRecord) {
        let c = &self.inner.counters;
        c.accepted.fetch_add(1, Ordering::Relaxed);
        let reason = match self.inner.tx.try_send(row) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => "queue full",
            Err(mpsc::error::TrySendError::Closed(_)) => "writer shut down",
        };
        c.accepted.fetch_sub(1, Ordering::Relaxed);
        let dropped = c.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        self.warn_dropped(reason, dropped);
    }

    fn warn_dropped(&self, reason: &'static str, dropped: u64) {
        let now = u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.inner.last_drop_warn_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= DROP_WARN_EVERY_MS;
        if due
            && self
                .inner
                .last_drop_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                reason,
                dropped_total = dropped,
                "request log: dropping rows"
            );
        }
    }

    /// Current counters.
    pub fn stats(&self) -> WriterStats {
        let c = &self.inner.counters;
        let accepted = c.accepted.load(Ordering::Relaxed);
        let written = c.written.load(Ordering::Relaxed);
        let failed = c.failed.load(Ordering::Relaxed);
        WriterStats {
            queued: accepted.saturating_sub(written).saturating_sub(failed),
            written,
            dropped: c.dropped.load(Ordering::Relaxed),
            failed,
            batches: c.batches.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting rows, writes everything already queued, waits for the
    /// task to exit and returns the final counters. Idempotent; concurrent
    /// callers all wait for the same final flush.
    pub async fn shutdown(&self) -> WriterStats {
        self.inner.shutdown.send_replace(true);
        let mut done = self.inner.done.clone();
        while done.changed().await.is_ok() {}
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "request log writer task failed");
        }
        self.stats()
    }
}

struct Task {
    store: Store,
    cfg: WriterConfig,
    counters: Arc<Counters>,
    /// The last batch failed for good: try the next ones once, without backoff,
    /// until one succeeds (so a dead database cannot stall shutdown for long).
    degraded: bool,
}

async fn run(
    mut task: Task,
    mut rx: mpsc::Receiver<RequestRecord>,
    mut shutdown: watch::Receiver<bool>,
    _done: watch::Sender<()>,
) {
    let batch_rows = task.cfg.batch_rows;
    let max_rows = max_batch_rows(batch_rows);
    let mut batch: Vec<RequestRecord> = Vec::with_capacity(batch_rows);
    let mut deadline: Option<Instant> = None;
    let mut closing = false;
    loop {
        tokio::select! {
            // In this order, so neither shutdown nor the timer can be starved by
            // a steady stream of rows.
            biased;
            // Shutdown requested (or every `Writer` dropped): refuse new rows;
            // `recv_many` then yields what is still queued, then 0.
            _ = shutdown.changed(), if !closing => {
                closing = true;
                rx.close();
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                task.flush(&mut batch).await;
                deadline = None;
            }
            // `batch` is flushed whenever it holds `batch_rows` (<= `max_rows`), so the
            // limit is always >= 1 and 0 means: closed and drained. `recv_many` takes all
            // that is queued up to the limit: after a slow flush, a batch of up to
            // `max_rows`. `recv_many` appends, so `first` is read before it.
            n = recv_into(&mut rx, &mut batch, max_rows) => {
                let (n, first) = n;
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                if first {
                    deadline = Some(now + task.cfg.interval);
                }
                if batch.len() >= batch_rows || deadline.is_some_and(|d| now >= d) {
                    task.flush(&mut batch).await;
                    deadline = None;
                }
            }
        }
    }
    task.flush(&mut batch).await;
}

/// Receives up to the room left in `batch` (of `max_rows`); also says whether `batch` was
/// empty before.
async fn recv_into(
    rx: &mut mpsc::Receiver<RequestRecord>,
    batch: &mut Vec<RequestRecord>,
    max_rows: usize,
) -> (usize, bool) {
    let first = batch.is_empty();
    let n = rx
        .recv_many(batch, max_rows.saturating_sub(batch.len()).max(1))
        .await;
    (n, first)
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

impl Task {
    async fn flush(&mut self, batch: &mut Vec<RequestRecord>) {
        if batch.is_empty() {
            return;
        }
        let rows = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let delays: &[Duration] = if self.degraded { &[] } else { &RETRY_DELAYS };
        let mut retry = 0;
        loop {
            match self.store.insert_batch(batch).await {
                Ok(inserted) => {
                    self.counters.written.fetch_add(rows, Ordering::Relaxed);
                    self.counters.batches.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .largest_batch
                        .fetch_max(rows, Ordering::Relaxed);
                    if inserted < rows {
                        // Ids are the server's: only a batch whose commit was lost and then
                        // retried (or a bug making ids) can repeat one.
                        tracing::warn!(
                            skipped = rows - inserted,
                            "request log: skipped rows whose id was already stored"
                        );
                    }
                    self.degraded = false;
                    break;
                }
                Err(error) => {
                    if let Some(delay) = delays.get(retry) {
                        tracing::debug!(%error, rows, retry = retry + 1, "request log: batch failed, retrying");
                        tokio::time::sleep(*delay).await;
                        retry += 1;
                    } else {
                        self.counters.failed.fetch_add(rows, Ordering::Relaxed);
                        tracing::error!(
                            %error,
                            rows,
                            backend = self.store.backend(),
                            "request log: batch failed after retries; rows lost"
                        );
                        self.degraded = true;
                        break;
                    }
                }
            }
        }
        batch.clear();
    }
}

/// Spawns a task that deletes requests older than `keep`, right away and then
/// every `every`. Abort the handle to stop it.
pub fn spawn_retention(store: Store, keep: Duration, every: Duration) -> JoinHandle<()> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let every = every.max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let cutoff_ms = now_ms().saturating_sub(keep_ms);
            match store.purge_before(cutoff_ms).await {
                Ok(0) => tracing::debug!(cutoff_ms, "request log retention: nothing to purge"),
                Ok(purged) => {
                    tracing::info!(
                        purged,
                        cutoff_ms,
                        "request log retention: purged old requests"
                    );
                }
                Err(error) => tracing::warn!(%error, "request log retention: purge failed"),
            }
        }
    })
}
