//! The families read at scrape time from state that lives elsewhere: the response cache, the
//! models' breakers, the policies' statistics, the request log writer and the keys. The
//! collector holds the `Arc`s of exactly what it reads (never the whole gateway), and reads
//! each source once per scrape.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::cache::ResponseCache;
use crate::keys::Keys;
use switchyard_routing::health::{BreakerState, Health};
use switchyard_store::{Ledger, Writer};

/// What the scrape-time families read.
#[derive(Clone)]
pub struct Sources {
    pub cache: Arc<ResponseCache>,
    pub health: Arc<Health>,
    pub policies: Option<Arc<switchyard_plugins::Registry>>,
    pub writer: Option<Writer>,
    pub ledger: Option<Ledger>,
    pub keys: Arc<Keys>,
    pub shared: Option<Arc<crate::shared::Shared>>,
}

pub(super) struct Collected(Sources);

impl Collected {
    pub(super) fn new(sources: Sources) -> Collected {
        Collected(sources)
    }
}

impl fmt::Debug for Collected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collected").finish_non_exhaustive()
    }
}

/// One unlabelled sample.
fn single(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One family of samples, each with its labels.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let src = &self.0;
        let e = &mut encoder;
        let cache = src.cache.stats();
        for (name, help, value) in [
            (
                "switchyard_cache_hits",
                "Requests answered from the cache (including coalesced ones)",
                cache.hits,
            ),
            (
                "switchyard_cache_misses",
                "Cacheable requests not found in the cache",
                cache.misses,
            ),
            (
                "switchyard_cache_bypass",
                "Requests the cache took no part in (not deterministic, or turned off)",
                cache.bypasses,
            ),
            (
                "switchyard_cache_evictions",
                "Entries evicted to stay within cache.max_bytes",
                cache.evictions,
            ),
            (
                "switchyard_cache_coalesced",
                "Requests that waited for an identical request in flight and got its answer",
                cache.coalesced,
            ),
        ] {
            single(e, name, help, &ConstCounter::new(value))?;
        }
        let entries = i64::try_from(cache.entries).unwrap_or(i64::MAX);
        single(
            e,
            "switchyard_cache_entries",
            "Answers in the cache",
            &ConstGauge::new(entries),
        )?;
        let bytes = i64::try_from(cache.bytes).unwrap_or(i64::MAX);
        single(
            e,
            "switchyard_cache_bytes",
            "Memory held by cached answers (their weight), bytes",
            &ConstGauge::new(bytes),
        )?;

        let now = tokio::time::Instant::now();
        let breakers = src.health.iter().map(|(id, h)| {
            let v: i64 = match h.snapshot(now).breaker {
                BreakerState::Closed => 0,
                BreakerState::Open { .. } => 2,
                _ => 1,
            };
            (vec![("model", id.to_string())], ConstGauge::new(v))
        });
        family(
            e,
            "switchyard_breaker_state",
            "Per-model circuit breaker: 0 closed, 1 half-open, 2 open",
            MetricType::Gauge,
            breakers,
        )?;

        let statuses = src
            .policies
            .as_ref()
            .map(|r| r.statuses())
            .unwrap_or_default();
        let evaluations = statuses.into_iter().flat_map(|p| {
            let name = p.name;
            p.stats.into_iter().flat_map(move |s| {
                let ok = s.evaluations.saturating_sub(s.errors);
                [("ok", ok), ("error", s.errors), ("skipped", s.skipped)].map(|(result, n)| {
                    let labels = vec![("policy", name.clone()), ("result", result.to_owned())];
                    (labels, ConstCounter::new(n))
                })
            })
        });
        family(
            e,
            "switchyard_policy_evaluations",
            "WASM policy evaluations by policy and result (ok, error, skipped by its breaker)",
            MetricType::Counter,
            evaluations,
        )?;

        let rows = src.writer.as_ref().map(Writer::stats);
        let fates = rows.iter().flat_map(|s| {
            [
                ("written", s.written),
                ("dropped", s.dropped),
                ("failed", s.failed),
            ]
            .map(|(fate, n)| (vec![("result", fate.to_owned())], ConstCounter::new(n)))
        });
        family(
            e,
            "switchyard_log_rows",
            "Request log rows by fate: written to the store, dropped (queue full), failed (store error)",
            MetricType::Counter,
            fates,
        )?;
        single(
            e,
            "switchyard_log_rows_dropped",
            "Request log rows dropped because the writer's queue was full",
            &ConstCounter::new(rows.map_or(0, |s| s.dropped)),
        )?;

        let spend = src.ledger.as_ref().map(Ledger::stats);
        single(
            e,
            "switchyard_spend_pending_picousd",
            "Spend recorded and not yet written to the store's ledger, picodollars",
            &ConstGauge::new(spend.as_ref().map_or(0, |s| s.pending_picousd)),
        )?;
        single(
            e,
            "switchyard_spend_lost_picousd",
            "Spend the ledger could not write to the store (after its retries), picodollars",
            &ConstCounter::new(spend.as_ref().map_or(0, |s| s.lost_picousd.max(0) as u64)),
        )?;

        let active = src.keys.list().iter().filter(|k| !k.is_revoked()).count();
        single(
            e,
            "switchyard_keys_active",
            "Virtual keys that are not revoked",
            &ConstGauge::new(i64::try_from(active).unwrap_or(i64::MAX)),
        )?;
        single(
            e,
            "switchyard_key_store_lookups",
            "Store lookups of presented keys not held in memory (at most one per unknown key)",
            &ConstCounter::new(src.keys.store_lookups()),
        )?;
        if let Some(shared) = &src.shared {
            shared_families(e, shared)?;
        }
        Ok(())
    }
}

/// `[redis]`: whether the shared counters answer, and what happened while they did not.
fn shared_families(e: &mut DescriptorEncoder<'_>, shared: &crate::shared::Shared) -> fmt::Result {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &shared.stats;
    single(
        e,
        "switchyard_redis_up",
        "1 while the shared counters (Redis) answer; 0 while limits are degraded (on_failure)",
        &ConstGauge::new(i64::from(shared.is_up())),
    )?;
    let fallbacks = [
        ("budgets", s.fallbacks_budgets.load(Relaxed)),
        ("rates", s.fallbacks_rates.load(Relaxed)),
    ]
    .map(|(use_, n)| (vec![("use", use_.to_owned())], ConstCounter::new(n)));
    family(
        e,
        "switchyard_redis_fallbacks",
        "Limited requests counted on this replica alone because Redis was down (on_failure = local)",
        MetricType::Counter,
        fallbacks,
    )?;
    for (name, help, value) in [
        (
            "switchyard_redis_refused",
            "Limited requests refused with 503 because Redis was down (on_failure = closed)",
            s.refused.load(Relaxed),
        ),
        (
            "switchyard_redis_errors",
            "Redis calls that failed or timed out",
            s.errors.load(Relaxed),
        ),
        (
            "switchyard_redis_outages",
            "Times Redis was marked down",
            s.outages.load(Relaxed),
        ),
        (
            "switchyard_redis_seeds",
            "Budget counters this replica seeded from the ledger",
            s.seeds.load(Relaxed),
        ),
        (
            "switchyard_redis_raised",
            "Budget counters raised to the ledger's spend after a lost settle or an outage",
            s.raised.load(Relaxed),
        ),
        (
            "switchyard_redis_expired_reservations",
            "Reservations released by their TTL (their replica died or lost Redis)",
            s.expired.load(Relaxed),
        ),
        (
            "switchyard_redis_events",
            "Key events received from the replicas",
            s.events_received.load(Relaxed),
        ),
    ] {
        single(e, name, help, &ConstCounter::new(value))?;
    }
    if let Some(l2) = &shared.l2 {
        let l = &l2.stats;
        for (name, help, value) in [
            (
                "switchyard_cache_l2_hits",
                "Answers found in the shared cache (L2)",
                l.hits.load(Relaxed),
            ),
            (
                "switchyard_cache_l2_misses",
                "Lookups the shared cache (L2) did not answer",
                l.misses.load(Relaxed),
            ),
            (
                "switchyard_cache_l2_writes",
                "Entries written to the shared cache (L2)",
                l.writes.load(Relaxed),
            ),
            (
                "switchyard_cache_l2_skipped",
                "L2 writes skipped because too many were under way",
                l.skipped.load(Relaxed),
            ),
            (
                "switchyard_cache_l2_errors",
                "Shared cache (L2) calls that failed",
                l.errors.load(Relaxed),
            ),
        ] {
            single(e, name, help, &ConstCounter::new(value))?;
        }
    }
    Ok(())
}
