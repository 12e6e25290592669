//! Prometheus metrics: a small registry rendered in the text exposition format 0.0.4.
//!
//! # Why hand-rolled
//!
//! - **No dependency.** std only (`std::sync::atomic`, `RwLock`, `HashMap`); nothing to audit,
//!   nothing that pulls a second HTTP or protobuf stack into the gateway.
//! - **Lock-free hot path.** Updating a metric is one relaxed atomic operation (a CAS loop for
//!   the `f64` sums). Looking up a labelled child takes a read lock and hashes the borrowed
//!   `&[&str]` label values without allocating; only the first use of a label combination takes
//!   the write lock and allocates. Callers on the hottest paths keep the returned handle
//!   (`Counter`, `Histogram`, … are an `Arc` around atomics: cheap to clone, `Send + Sync`).
//! - **Exactly the text format we need.** `# HELP`, `# TYPE`, samples; label values escaped
//!   (`\\`, `\"`, `\n`), HELP escaped (`\\`, `\n`); histograms as cumulative `_bucket{le=".."}`
//!   lines ending in `le="+Inf"`, then `_sum` and `_count`. Floats use Rust's shortest
//!   round-trip form (`1`, `0.005`; exponent only below 1e-9 or from 1e21), infinities as
//!   `+Inf`/`-Inf`, `NaN`; both Prometheus and the Python `prometheus_client` parser accept
//!   these.
//!
//! # Model
//!
//! A [`Registry`] holds metric families in registration order; [`Registry::render`] writes them
//! all, each family's children sorted by label values so the output is stable. Families are
//! [`CounterVec`] (`u64`), [`FloatCounterVec`] (`f64`, e.g. cost in USD), [`GaugeVec`] (`i64`),
//! [`HistogramVec`], and collectors ([`Registry::register_collector`]) whose samples are computed
//! by a closure at scrape time (breaker state per model, cache size: state that lives elsewhere).
//! A family with no label names has exactly one child, created (and rendered as 0) up front;
//! reach it with `.with(&[])`.
//!
//! Names are validated when a family is created: metric names against
//! `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names against `[a-zA-Z_][a-zA-Z0-9_]*` (Prometheus does
//! not allow `:` in label names), label names starting with `__` are reserved, and `le` is
//! reserved in histograms. Errors are returned as [`MetricError`], never panics.
//!
//! Passing the wrong number of label values to `.with(..)` does not panic either: it returns a
//! *detached* handle whose updates go nowhere (it is not rendered). Nothing here panics in
//! release or debug builds, and a poisoned lock is recovered rather than propagated.
//!
//! `FloatCounter` stores the `f64` value as its bit pattern in an `AtomicU64` and adds with a
//! compare-and-swap loop (rather than integer picodollars): it keeps full `f64` range and
//! precision, and summing even 10⁹ small costs drifts by well under a millionth of a cent.
//! Increments that are negative, zero, infinite or NaN are ignored, so it stays monotonic.
//!
//! ```ignore
//! // (Same code as the `doc_example` unit test; `ignore`d so the file compiles in any crate.)
//! let registry = Registry::new();
//! let requests = registry
//!     .counter_vec("requests_total", "Requests.", &["route", "status"])
//!     .unwrap();
//! requests.with(&["auto", "200"]).inc();
//! let text = registry.render();
//! assert!(text.contains("requests_total{route=\"auto\",status=\"200\"} 1\n"));
//! ```

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets for request/upstream latency in seconds: 5 ms to 60 s.
pub const LATENCY_SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// Buckets for the gateway's own overhead in seconds: 50 µs to 100 ms.
pub const OVERHEAD_SECONDS_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a family could not be created or registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricError {
    /// The metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    InvalidMetricName(String),
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`, starts with `__`, or is `le` in a
    /// histogram.
    InvalidLabelName { metric: String, label: String },
    /// The same label name appears twice.
    DuplicateLabelName { metric: String, label: String },
    /// Histogram bucket bounds are not finite and strictly increasing.
    InvalidBuckets {
        metric: String,
        reason: &'static str,
    },
    /// A family with this name (or a colliding sample name such as `x_count`) is registered.
    AlreadyRegistered(String),
}

impl fmt::Display for MetricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidMetricName(name) => write!(f, "invalid metric name {name:?}"),
            Self::InvalidLabelName { metric, label } => {
                write!(f, "invalid label name {label:?} in metric {metric:?}")
            }
            Self::DuplicateLabelName { metric, label } => {
                write!(f, "duplicate label name {label:?} in metric {metric:?}")
            }
            Self::InvalidBuckets { metric, reason } => {
                write!(f, "invalid buckets for metric {metric:?}: {reason}")
            }
            Self::AlreadyRegistered(name) => write!(f, "metric {name:?} is already registered"),
        }
    }
}

impl std::error::Error for MetricError {}

// ---------------------------------------------------------------------------------------------
// Handles (children)
// ---------------------------------------------------------------------------------------------

/// A monotonic `u64` counter. Clones share the value.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds 1.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A monotonic `f64` counter (e.g. cost in USD): `f64` bits in an `AtomicU64`, CAS to add.
#[derive(Debug, Clone, Default)]
pub struct FloatCounter(Arc<AtomicU64>);

impl FloatCounter {
    /// Adds `v`. Negative, zero, infinite and NaN increments are ignored.
    #[inline]
    pub fn inc_by(&self, v: f64) {
        if v.is_finite() && v > 0.0 {
            atomic_f64_add(&self.0, v);
        }
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// An `i64` gauge. Clones share the value.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    #[inline]
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Adds `v` (which may be negative).
    #[inline]
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed bucket bounds. Clones share the data.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramCore>);

#[derive(Debug)]
struct HistogramCore {
    /// Upper bounds, finite and strictly increasing (`+Inf` is implicit).
    bounds: Arc<[f64]>,
    /// Non-cumulative counts: `counts[i]` for `bounds[i-1] < v <= bounds[i]`; the last one is
    /// the `+Inf` bucket. Cumulated at render time.
    counts: Box<[AtomicU64]>,
    /// `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    fn with_bounds(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(HistogramCore {
            bounds,
            counts,
            sum: AtomicU64::new(0.0_f64.to_bits()),
        }))
    }

    /// Records `v`. NaN is ignored (it would turn `_sum` into NaN for good).
    #[inline]
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let core = &*self.0;
        // Buckets are `le` (inclusive): the first bound >= v.
        let idx = core.bounds.partition_point(|b| *b < v);
        if let Some(slot) = core.counts.get(idx) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        atomic_f64_add(&core.sum, v);
    }

    /// Records a duration in seconds.
    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum.load(Ordering::Relaxed))
    }

    /// Cumulative counts, one per bound plus the final `+Inf` bucket (which equals the count).
    pub fn cumulative_counts(&self) -> Vec<u64> {
        let mut acc = 0u64;
        self.0
            .counts
            .iter()
            .map(|c| {
                acc = acc.wrapping_add(c.load(Ordering::Relaxed));
                acc
            })
            .collect()
    }
}

#[inline]
fn atomic_f64_add(cell: &AtomicU64, v: f64) {
    // The closure always returns Some, so this never fails.
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + v).to_bits())
    });
}

// ---------------------------------------------------------------------------------------------
// Label-keyed children, looked up by `&[&str]` without allocating
// ---------------------------------------------------------------------------------------------

/// A list of label values, owned or borrowed; hashed and compared element-wise so that the
/// owned map key can be found from a borrowed `&[&str]` (via `Borrow<dyn LabelKey>`).
trait LabelKey {
    fn len(&self) -> usize;
    fn part(&self, i: usize) -> &str;
}

impl Hash for dyn LabelKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for i in 0..self.len() {
            self.part(i).hash(state);
        }
    }
}

impl PartialEq for dyn LabelKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.part(i) == other.part(i))
    }
}

impl Eq for dyn LabelKey + '_ {}

/// Owned label values; an `Arc` so a render can snapshot the children without copying strings.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct OwnedKey(Arc<[Box<str>]>);

impl LabelKey for OwnedKey {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn part(&self, i: usize) -> &str {
        self.0.get(i).map_or("", |s| s)
    }
}

impl Hash for OwnedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn LabelKey).hash(state);
    }
}

impl<'a> Borrow<dyn LabelKey + 'a> for OwnedKey {
    fn borrow(&self) -> &(dyn LabelKey + 'a) {
        self
    }
}

struct BorrowedKey<'a, 'b>(&'a [&'b str]);

impl LabelKey for BorrowedKey<'_, '_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn part(&self, i: usize) -> &str {
        self.0.get(i).copied().unwrap_or("")
    }
}

/// Name, help and label names of a family.
#[derive(Debug)]
struct Desc {
    name: Box<str>,
    help: Box<str>,
    label_names: Box<[Box<str>]>,
}

impl Desc {
    fn new(
        name: &str,
        help: &str,
        label_names: &[&str],
        reserved: &[&str],
    ) -> Result<Self, MetricError> {
        if !is_valid_metric_name(name) {
            return Err(MetricError::InvalidMetricName(name.to_owned()));
        }
        for (i, label) in label_names.iter().enumerate() {
            if !is_valid_label_name(label) || label.starts_with("__") || reserved.contains(label) {
                return Err(MetricError::InvalidLabelName {
                    metric: name.to_owned(),
                    label: (*label).to_owned(),
                });
            }
            if label_names
                .get(..i)
                .is_some_and(|prev| prev.contains(label))
            {
                return Err(MetricError::DuplicateLabelName {
                    metric: name.to_owned(),
                    label: (*label).to_owned(),
                });
            }
        }
        Ok(Self {
            name: name.into(),
            help: help.into(),
            label_names: label_names.iter().map(|l| Box::from(*l)).collect(),
        })
    }
}

/// What each kind of child needs to be created and rendered.
trait Child: Clone + Send + Sync + 'static {
    /// Per-family configuration (histogram bounds).
    type Config: Send + Sync;
    const TYPE: &'static str;
    fn create(config: &Self::Config) -> Self;
    fn encode(&self, config: &Self::Config, desc: &Desc, values: &[Box<str>], out: &mut String);
}

impl Child for Counter {
    type Config = ();
    const TYPE: &'static str = "counter";
    fn create((): &()) -> Self {
        Self::default()
    }
    fn encode(&self, (): &(), desc: &Desc, values: &[Box<str>], out: &mut String) {
        write_sample_start(out, &desc.name, "", &desc.label_names, values, None);
        let _ = writeln!(out, "{}", self.get());
    }
}

impl Child for FloatCounter {
    type Config = ();
    const TYPE: &'static str = "counter";
    fn create((): &()) -> Self {
        Self::default()
    }
    fn encode(&self, (): &(), desc: &Desc, values: &[Box<str>], out: &mut String) {
        write_sample_start(out, &desc.name, "", &desc.label_names, values, None);
        write_f64(out, self.get());
        out.push('\n');
    }
}

impl Child for Gauge {
    type Config = ();
    const TYPE: &'static str = "gauge";
    fn create((): &()) -> Self {
        Self::default()
    }
    fn encode(&self, (): &(), desc: &Desc, values: &[Box<str>], out: &mut String) {
        write_sample_start(out, &desc.name, "", &desc.label_names, values, None);
        let _ = writeln!(out, "{}", self.get());
    }
}

#[derive(Debug)]
struct HistogramConfig {
    bounds: Arc<[f64]>,
    /// The `le` label value of each bound, formatted once.
    le: Box<[Box<str>]>,
}

impl Child for Histogram {
    type Config = HistogramConfig;
    const TYPE: &'static str = "histogram";
    fn create(config: &HistogramConfig) -> Self {
        Self::with_bounds(Arc::clone(&config.bounds))
    }
    fn encode(&self, config: &HistogramConfig, desc: &Desc, values: &[Box<str>], out: &mut String) {
        let cumulative = self.cumulative_counts();
        let les = config
            .le
            .iter()
            .map(|s| &**s)
            .chain(std::iter::once("+Inf"));
        for (le, n) in les.zip(&cumulative) {
            write_sample_start(
                out,
                &desc.name,
                "_bucket",
                &desc.label_names,
                values,
                Some(le),
            );
            let _ = writeln!(out, "{n}");
        }
        write_sample_start(out, &desc.name, "_sum", &desc.label_names, values, None);
        write_f64(out, self.sum());
        out.push('\n');
        // `_count` is the `+Inf` bucket, so the two always agree even under concurrent observes.
        let count = cumulative.last().copied().unwrap_or(0);
        write_sample_start(out, &desc.name, "_count", &desc.label_names, values, None);
        let _ = writeln!(out, "{count}");
    }
}

/// A family of children of one kind, keyed by label values.
struct Family<T: Child> {
    desc: Desc,
    config: T::Config,
    children: RwLock<HashMap<OwnedKey, T>>,
}

impl<T: Child> Family<T> {
    fn new(desc: Desc, config: T::Config) -> Self {
        let mut children = HashMap::new();
        if desc.label_names.is_empty() {
            // An unlabelled family always has its one child, so it renders 0 from the start.
            children.insert(OwnedKey(Arc::from(Vec::new())), T::create(&config));
        }
        Self {
            desc,
            config,
            children: RwLock::new(children),
        }
    }

    fn with(&self, values: &[&str]) -> T {
        if values.len() != self.desc.label_names.len() {
            // Wrong label count: a detached child, updated by the caller and never rendered.
            return T::create(&self.config);
        }
        {
            let map = self.children.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(child) = map.get(&BorrowedKey(values) as &dyn LabelKey) {
                return child.clone();
            }
        }
        let mut map = self
            .children
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let key = OwnedKey(values.iter().map(|v| Box::<str>::from(*v)).collect());
        map.entry(key)
            .or_insert_with(|| T::create(&self.config))
            .clone()
    }

    fn len(&self) -> usize {
        self.children
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<T: Child> private::Collect for Family<T> {
    fn name(&self) -> &str {
        &self.desc.name
    }

    fn suffixes(&self) -> &'static [&'static str] {
        if T::TYPE == "histogram" {
            &["_bucket", "_sum", "_count"]
        } else {
            &[""]
        }
    }

    fn encode(&self, out: &mut String) {
        write_header(out, &self.desc, T::TYPE);
        // Snapshot (refcount bumps only) so the lock is not held while formatting.
        let mut children: Vec<(OwnedKey, T)> = {
            let map = self.children.read().unwrap_or_else(PoisonError::into_inner);
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, child) in &children {
            child.encode(&self.config, &self.desc, &key.0, out);
        }
    }
}

mod private {
    /// A family as the registry sees it.
    pub trait Collect: Send + Sync {
        fn name(&self) -> &str;
        /// Sample-name suffixes (`""` for counters and gauges), for collision checks.
        fn suffixes(&self) -> &'static [&'static str];
        fn encode(&self, out: &mut String);
    }

    pub trait Sealed {
        fn family(&self) -> std::sync::Arc<dyn Collect>;
    }
}

use private::Collect;

/// A metric family that [`Registry::register`] accepts: [`CounterVec`], [`FloatCounterVec`],
/// [`GaugeVec`], [`HistogramVec`].
pub trait Metric: private::Sealed + Clone {}

macro_rules! metric_vec {
    ($(#[$doc:meta])* $vec:ident, $child:ty) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $vec(Arc<Family<$child>>);

        impl $vec {
            /// The child for these label values (in label-name order), created on first use.
            /// A wrong number of values yields a detached child that is never rendered.
            #[inline]
            pub fn with(&self, label_values: &[&str]) -> $child {
                self.0.with(label_values)
            }

            /// The family name.
            pub fn name(&self) -> &str {
                &self.0.desc.name
            }

            /// Number of label combinations seen so far.
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// True if no label combination has been used yet (never true without labels).
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }

        impl fmt::Debug for $vec {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($vec))
                    .field("name", &self.0.desc.name)
                    .field("label_names", &self.0.desc.label_names)
                    .field("children", &self.len())
                    .finish()
            }
        }

        impl private::Sealed for $vec {
            fn family(&self) -> Arc<dyn Collect> {
                self.0.clone()
            }
        }

        impl Metric for $vec {}
    };
}

metric_vec!(
    /// A family of [`Counter`]s.
    CounterVec,
    Counter
);
metric_vec!(
    /// A family of [`FloatCounter`]s.
    FloatCounterVec,
    FloatCounter
);
metric_vec!(
    /// A family of [`Gauge`]s.
    GaugeVec,
    Gauge
);
metric_vec!(
    /// A family of [`Histogram`]s sharing one set of bucket bounds.
    HistogramVec,
    Histogram
);

impl CounterVec {
    /// A counter family; not rendered until passed to [`Registry::register`].
    pub fn new(name: &str, help: &str, label_names: &[&str]) -> Result<Self, MetricError> {
        Ok(Self(Arc::new(Family::new(
            Desc::new(name, help, label_names, &[])?,
            (),
        ))))
    }
}

impl FloatCounterVec {
    /// An `f64` counter family; not rendered until passed to [`Registry::register`].
    pub fn new(name: &str, help: &str, label_names: &[&str]) -> Result<Self, MetricError> {
        Ok(Self(Arc::new(Family::new(
            Desc::new(name, help, label_names, &[])?,
            (),
        ))))
    }
}

impl GaugeVec {
    /// A gauge family; not rendered until passed to [`Registry::register`].
    pub fn new(name: &str, help: &str, label_names: &[&str]) -> Result<Self, MetricError> {
        Ok(Self(Arc::new(Family::new(
            Desc::new(name, help, label_names, &[])?,
            (),
        ))))
    }
}

impl HistogramVec {
    /// A histogram family with upper bounds `buckets` (finite, strictly increasing; a trailing
    /// `+Inf` is accepted and dropped, as `+Inf` is always present). `le` is reserved.
    pub fn new(
        name: &str,
        help: &str,
        label_names: &[&str],
        buckets: &[f64],
    ) -> Result<Self, MetricError> {
        let desc = Desc::new(name, help, label_names, &["le"])?;
        let buckets = match buckets.split_last() {
            Some((last, rest)) if *last == f64::INFINITY => rest,
            _ => buckets,
        };
        let invalid = |reason| MetricError::InvalidBuckets {
            metric: name.to_owned(),
            reason,
        };
        if buckets.iter().any(|b| !b.is_finite()) {
            return Err(invalid("bounds must be finite (+Inf is implicit)"));
        }
        if buckets.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
            return Err(invalid("bounds must be strictly increasing"));
        }
        let le = buckets
            .iter()
            .map(|b| {
                let mut s = String::new();
                write_f64(&mut s, *b);
                s.into_boxed_str()
            })
            .collect();
        let config = HistogramConfig {
            bounds: Arc::from(buckets),
            le,
        };
        Ok(Self(Arc::new(Family::new(desc, config))))
    }
}

// ---------------------------------------------------------------------------------------------
// Collectors: samples computed at scrape time
// ---------------------------------------------------------------------------------------------

/// The `# TYPE` of a collector family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectorType {
    Counter,
    Gauge,
}

/// Receives a collector's samples during [`Registry::render`].
///
/// Samples are sorted by label values before they are written; if the same label values are
/// given twice, the last value wins.
pub struct Encoder<'a> {
    label_names: &'a [Box<str>],
    samples: Vec<(Box<[Box<str>]>, f64)>,
}

impl Encoder<'_> {
    /// Adds a sample with `label_values` in the collector's label-name order. Returns false
    /// (and drops the sample) if the number of values is wrong.
    pub fn sample(&mut self, label_values: &[&str], value: f64) -> bool {
        if label_values.len() != self.label_names.len() {
            return false;
        }
        let key = label_values.iter().map(|v| Box::<str>::from(*v)).collect();
        self.samples.push((key, value));
        true
    }

    /// The collector's label names.
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.label_names.iter().map(|s| &**s)
    }
}

type CollectFn = Box<dyn Fn(&mut Encoder<'_>) + Send + Sync>;

struct CollectorFamily {
    desc: Desc,
    kind: CollectorType,
    collect: CollectFn,
}

impl Collect for CollectorFamily {
    fn name(&self) -> &str {
        &self.desc.name
    }

    fn suffixes(&self) -> &'static [&'static str] {
        &[""]
    }

    fn encode(&self, out: &mut String) {
        let kind = match self.kind {
            CollectorType::Counter => "counter",
            CollectorType::Gauge => "gauge",
        };
        write_header(out, &self.desc, kind);
        let mut enc = Encoder {
            label_names: &self.desc.label_names,
            samples: Vec::new(),
        };
        (self.collect)(&mut enc);
        let mut samples = enc.samples;
        samples.sort_by(|a, b| a.0.cmp(&b.0)); // stable: equal keys keep emission order
        let mut iter = samples.iter().peekable();
        while let Some((key, value)) = iter.next() {
            if iter.peek().is_some_and(|(next, _)| next == key) {
                continue; // a later sample has the same labels: it wins
            }
            write_sample_start(out, &self.desc.name, "", &self.desc.label_names, key, None);
            write_f64(out, *value);
            out.push('\n');
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------

/// Metric families, rendered in registration order.
#[derive(Default)]
pub struct Registry {
    families: RwLock<Vec<Arc<dyn Collect>>>,
    /// Size of the last render, to size the next buffer.
    last_len: AtomicUsize,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let families = self.families.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_list()
            .entries(families.iter().map(|fam| fam.name().to_owned()))
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a family (created with e.g. [`CounterVec::new`]) and returns it. Fails if its name,
    /// or one of its sample names (`x_bucket`, `x_sum`, `x_count` for a histogram `x`),
    /// collides with a registered family.
    pub fn register<M: Metric>(&self, metric: M) -> Result<M, MetricError> {
        self.add(metric.family())?;
        Ok(metric)
    }

    /// Creates and registers a [`CounterVec`].
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<CounterVec, MetricError> {
        self.register(CounterVec::new(name, help, label_names)?)
    }

    /// Creates and registers a [`FloatCounterVec`].
    pub fn float_counter_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<FloatCounterVec, MetricError> {
        self.register(FloatCounterVec::new(name, help, label_names)?)
    }

    /// Creates and registers a [`GaugeVec`].
    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<GaugeVec, MetricError> {
        self.register(GaugeVec::new(name, help, label_names)?)
    }

    /// Creates and registers a [`HistogramVec`].
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        buckets: &[f64],
    ) -> Result<HistogramVec, MetricError> {
        self.register(HistogramVec::new(name, help, label_names, buckets)?)
    }

    /// Registers a family whose samples `collect` produces at each render, e.g. breaker state
    /// per model or cache size, read from wherever that state lives. `collect` runs on the
    /// scraping thread without any registry lock held; keep it quick and panic-free.
    pub fn register_collector<F>(
        &self,
        name: &str,
        help: &str,
        kind: CollectorType,
        label_names: &[&str],
        collect: F,
    ) -> Result<(), MetricError>
    where
        F: Fn(&mut Encoder<'_>) + Send + Sync + 'static,
    {
        let desc = Desc::new(name, help, label_names, &[])?;
        self.add(Arc::new(CollectorFamily {
            desc,
            kind,
            collect: Box::new(collect),
        }))
    }

    fn add(&self, family: Arc<dyn Collect>) -> Result<(), MetricError> {
        let mut families = self
            .families
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let new_names = sample_names(&*family);
        for existing in families.iter() {
            let clash = existing.name() == family.name()
                || sample_names(&**existing)
                    .iter()
                    .any(|n| new_names.contains(n));
            if clash {
                return Err(MetricError::AlreadyRegistered(family.name().to_owned()));
            }
        }
        families.push(family);
        Ok(())
    }

    /// The whole exposition in text format 0.0.4 (serve it with [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        // Clone the list so collectors run without the registry lock.
        let families: Vec<Arc<dyn Collect>> = self
            .families
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::with_capacity(self.last_len.load(Ordering::Relaxed) + 256);
        for family in &families {
            family.encode(&mut out);
        }
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }
}

fn sample_names(family: &dyn Collect) -> Vec<String> {
    family
        .suffixes()
        .iter()
        .map(|s| format!("{}{s}", family.name()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Text format
// ---------------------------------------------------------------------------------------------

fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn write_header(out: &mut String, desc: &Desc, kind: &str) {
    if !desc.help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(&desc.name);
        out.push(' ');
        write_escaped(out, &desc.help, false);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(&desc.name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// Writes `name{l1="v1",...,le="x"} ` (braces only if there are labels), up to the value.
fn write_sample_start(
    out: &mut String,
    name: &str,
    suffix: &str,
    label_names: &[Box<str>],
    values: &[Box<str>],
    le: Option<&str>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !label_names.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let pairs = label_names
            .iter()
            .map(|n| &**n)
            .zip(values.iter().map(|v| &**v));
        for (n, v) in pairs.chain(le.map(|le| ("le", le))) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(n);
            out.push_str("=\"");
            write_escaped(out, v, true);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
}

/// Escapes `\` and newline, plus `"` when `quote` (label values; HELP leaves `"` alone).
fn write_escaped(out: &mut String, s: &str, quote: bool) {
    let special = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    if !s.contains(special) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Integers plainly (`1`), otherwise the shortest round-trip decimal (`0.005`); `+Inf`, `-Inf`,
/// `NaN`. Magnitudes from 1e21 up (as Go's `strconv` does) or below 1e-9 use the shortest
/// exponent form (`1e21`, `1.5e-10`) rather than dozens of digits. Prometheus and the Python
/// parser accept all of these.
fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v != 0.0 && !(1e-9..1e21).contains(&v.abs()) {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The small registry whose exact exposition `exact_text` pins down.
    fn small_registry() -> Registry {
        let r = Registry::new();
        let reqs = r
            .counter_vec(
                "sy_requests_total",
                "Requests handled.",
                &["route", "status"],
            )
            .unwrap();
        reqs.with(&["b", "200"]).inc_by(2);
        reqs.with(&["a", "500"]).inc();
        reqs.with(&["a", "200"]).inc();
        let cost = r
            .float_counter_vec("sy_cost_usd_total", "Spend in USD.", &["model"])
            .unwrap();
        cost.with(&["m1"]).inc_by(0.25);
        cost.with(&["m1"]).inc_by(0.5);
        let in_flight = r
            .gauge_vec("sy_in_flight", "In-flight requests.", &[])
            .unwrap();
        let g = in_flight.with(&[]);
        g.inc();
        g.inc();
        g.dec();
        r.register_collector(
            "sy_breaker_state",
            "Breaker state (0 closed, 1 open).",
            CollectorType::Gauge,
            &["model"],
            |enc| {
                enc.sample(&["zeta"], 1.0);
                enc.sample(&["alpha"], 0.0);
            },
        )
        .unwrap();
        let latency = r
            .histogram_vec(
                "sy_latency_seconds",
                "Latency.",
                &["route"],
                &[0.1, 0.5, 1.0],
            )
            .unwrap();
        let h = latency.with(&["auto"]);
        for v in [0.0625, 0.25, 0.5, 2.0] {
            h.observe(v);
        }
        r
    }

    const SMALL_EXPECTED: &str = "\
# HELP sy_requests_total Requests handled.
# TYPE sy_requests_total counter
sy_requests_total{route=\"a\",status=\"200\"} 1
sy_requests_total{route=\"a\",status=\"500\"} 1
sy_requests_total{route=\"b\",status=\"200\"} 2
# HELP sy_cost_usd_total Spend in USD.
# TYPE sy_cost_usd_total counter
sy_cost_usd_total{model=\"m1\"} 0.75
# HELP sy_in_flight In-flight requests.
# TYPE sy_in_flight gauge
sy_in_flight 1
# HELP sy_breaker_state Breaker state (0 closed, 1 open).
# TYPE sy_breaker_state gauge
sy_breaker_state{model=\"alpha\"} 0
sy_breaker_state{model=\"zeta\"} 1
# HELP sy_latency_seconds Latency.
# TYPE sy_latency_seconds histogram
sy_latency_seconds_bucket{route=\"auto\",le=\"0.1\"} 1
sy_latency_seconds_bucket{route=\"auto\",le=\"0.5\"} 3
sy_latency_seconds_bucket{route=\"auto\",le=\"1\"} 3
sy_latency_seconds_bucket{route=\"auto\",le=\"+Inf\"} 4
sy_latency_seconds_sum{route=\"auto\"} 2.8125
sy_latency_seconds_count{route=\"auto\"} 4
";

    #[test]
    fn exact_text() {
        let r = small_registry();
        assert_eq!(r.render(), SMALL_EXPECTED);
        // Rendering is repeatable.
        assert_eq!(r.render(), SMALL_EXPECTED);
        check_exposition(SMALL_EXPECTED).unwrap();
    }

    #[test]
    fn doc_example() {
        let registry = Registry::new();
        let requests = registry
            .counter_vec("requests_total", "Requests.", &["route", "status"])
            .unwrap();
        requests.with(&["auto", "200"]).inc();
        let text = registry.render();
        assert!(text.contains("requests_total{route=\"auto\",status=\"200\"} 1\n"));
    }

    #[test]
    fn unlabelled_families_render_zero_up_front() {
        let r = Registry::new();
        r.counter_vec("c_total", "C.", &[]).unwrap();
        r.histogram_vec("h", "H.", &[], &[1.0]).unwrap();
        let labelled = r.counter_vec("l_total", "L.", &["x"]).unwrap();
        assert!(labelled.is_empty());
        assert_eq!(
            r.render(),
            "# HELP c_total C.\n# TYPE c_total counter\nc_total 0\n\
             # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 0\n\
             h_sum 0\nh_count 0\n\
             # HELP l_total L.\n# TYPE l_total counter\n"
        );
    }

    #[test]
    fn empty_help_omits_help_line() {
        let r = Registry::new();
        r.gauge_vec("g", "", &[]).unwrap().with(&[]).set(-3);
        assert_eq!(r.render(), "# TYPE g gauge\ng -3\n");
    }

    #[test]
    fn escaping() {
        let r = Registry::new();
        let c = r
            .counter_vec(
                "esc_total",
                "Help with \\ backslash,\nnewline and \"quotes\".",
                &["v"],
            )
            .unwrap();
        c.with(&["a\\b\"c\nd"]).inc();
        c.with(&["ünïcødé ✓"]).inc();
        c.with(&[""]).inc();
        let text = r.render();
        assert_eq!(
            text,
            "# HELP esc_total Help with \\\\ backslash,\\nnewline and \"quotes\".\n\
             # TYPE esc_total counter\n\
             esc_total{v=\"\"} 1\n\
             esc_total{v=\"a\\\\b\\\"c\\nd\"} 1\n\
             esc_total{v=\"ünïcødé ✓\"} 1\n"
        );
        check_exposition(&text).unwrap();
    }

    #[test]
    fn float_formatting() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.005, "0.005"),
            (0.00005, "0.00005"),
            (1e-7, "0.0000001"),
            (123_456_789.0, "123456789"),
            (1e20, "100000000000000000000"),
            (1e21, "1e21"),
            (-1e300, "-1e300"),
            (1e-9, "0.000000001"),
            (1.5e-10, "1.5e-10"),
            (5e-324, "5e-324"),
            (-0.0, "-0"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            write_f64(&mut s, *v);
            assert_eq!(&s, want, "{v}");
        }
        // `le` values round-trip exactly.
        for b in LATENCY_SECONDS_BUCKETS
            .iter()
            .chain(OVERHEAD_SECONDS_BUCKETS)
        {
            let mut s = String::new();
            write_f64(&mut s, *b);
            assert_eq!(s.parse::<f64>().unwrap(), *b);
        }
    }

    #[test]
    fn concurrent_increments_sum_exactly() {
        const THREADS: usize = 8;
        const ITERS: usize = 20_000;
        let r = Registry::new();
        let counters = r.counter_vec("cc_total", "C.", &["k"]).unwrap();
        let floats = r.float_counter_vec("fc_total", "F.", &["k"]).unwrap();
        let gauges = r.gauge_vec("gg", "G.", &["k"]).unwrap();
        let hists = r.histogram_vec("hh", "H.", &["k"], &[0.1, 1.0]).unwrap();
        let keys = ["a", "b", "c", "d"];
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (counters, floats, gauges, hists) = (&counters, &floats, &gauges, &hists);
                s.spawn(move || {
                    let kept = counters.with(&["kept"]);
                    for i in 0..ITERS {
                        // Look up every time, racing on first use of each key.
                        let k = keys[(i + t) % keys.len()];
                        counters.with(&[k]).inc();
                        kept.inc_by(2);
                        floats.with(&[k]).inc_by(0.5);
                        gauges.with(&[k]).inc();
                        gauges.with(&[k]).dec();
                        hists.with(&[k]).observe(0.25);
                    }
                });
            }
        });
        let total = (THREADS * ITERS) as u64;
        let per_key = total / keys.len() as u64;
        assert_eq!(counters.len(), keys.len() + 1);
        assert_eq!(counters.with(&["kept"]).get(), 2 * total);
        let mut sum = 0;
        for k in keys {
            assert_eq!(counters.with(&[k]).get(), per_key);
            assert_eq!(floats.with(&[k]).get(), 0.5 * per_key as f64);
            assert_eq!(gauges.with(&[k]).get(), 0);
            let h = hists.with(&[k]);
            assert_eq!(h.count(), per_key);
            assert_eq!(h.sum(), 0.25 * per_key as f64);
            assert_eq!(h.cumulative_counts(), vec![0, per_key, per_key]);
            sum += counters.with(&[k]).get();
        }
        assert_eq!(sum, total);
        check_exposition(&r.render()).unwrap();
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = HistogramVec::new("h", "H.", &[], &[1.0, 2.0, 5.0])
            .unwrap()
            .with(&[]);
        for v in [-1.0, 0.5, 1.0, 1.5, 2.0, 4.9, 5.0, 5.1, 1e9, f64::INFINITY] {
            h.observe(v);
        }
        h.observe(f64::NAN); // ignored
        // <=1: -1, 0.5, 1 | <=2: +1.5, 2 | <=5: +4.9, 5 | +Inf: +5.1, 1e9, inf
        assert_eq!(h.cumulative_counts(), vec![3, 5, 7, 10]);
        assert_eq!(h.count(), 10);
        assert_eq!(h.sum(), f64::INFINITY);
        h.observe_duration(Duration::from_millis(1500));
        assert_eq!(h.cumulative_counts(), vec![3, 6, 8, 11]);
    }

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let r = Registry::new();
        let v = r
            .histogram_vec("rt_seconds", "RT.", &["route", "model"], &[0.5, 1.0])
            .unwrap();
        let h = v.with(&["r", "m"]);
        for x in [0.25, 0.75, 0.75, 3.0] {
            h.observe(x);
        }
        let text = r.render();
        assert!(text.contains(
            "rt_seconds_bucket{route=\"r\",model=\"m\",le=\"0.5\"} 1\n\
             rt_seconds_bucket{route=\"r\",model=\"m\",le=\"1\"} 3\n\
             rt_seconds_bucket{route=\"r\",model=\"m\",le=\"+Inf\"} 4\n\
             rt_seconds_sum{route=\"r\",model=\"m\"} 4.75\n\
             rt_seconds_count{route=\"r\",model=\"m\"} 4\n"
        ));
        check_exposition(&text).unwrap();
    }

    #[test]
    fn float_counter_ignores_bad_increments() {
        let c = FloatCounterVec::new("f_total", "F.", &[])
            .unwrap()
            .with(&[]);
        c.inc_by(1.5);
        for bad in [-1.0, 0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            c.inc_by(bad);
        }
        assert_eq!(c.get(), 1.5);
    }

    #[test]
    fn wrong_label_count_is_a_detached_no_op() {
        let r = Registry::new();
        let c = r.counter_vec("x_total", "X.", &["a", "b"]).unwrap();
        c.with(&["only-one"]).inc();
        c.with(&["1", "2", "3"]).inc_by(5);
        let h = r.histogram_vec("y", "Y.", &["a"], &[1.0]).unwrap();
        h.with(&[]).observe(1.0);
        assert!(c.is_empty());
        assert!(h.is_empty());
        assert_eq!(
            r.render(),
            "# HELP x_total X.\n# TYPE x_total counter\n# HELP y Y.\n# TYPE y histogram\n"
        );
    }

    #[test]
    fn lookups_after_first_use_share_the_child() {
        let c = CounterVec::new("s_total", "S.", &["a"]).unwrap();
        let first = c.with(&["k"]);
        let label = String::from("k"); // a different allocation holding the same value
        let again = c.with(&[label.as_str()]);
        assert!(Arc::ptr_eq(&first.0, &again.0));
        again.inc();
        assert_eq!(first.get(), 1);
        assert_eq!(c.len(), 1);
        // Keys are compared element-wise, not by concatenation.
        let two = CounterVec::new("t_total", "T.", &["a", "b"]).unwrap();
        two.with(&["ab", ""]).inc();
        two.with(&["a", "b"]).inc();
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn collectors() {
        let r = Registry::new();
        let size = Arc::new(AtomicI64::new(7));
        let seen = Arc::clone(&size);
        r.register_collector(
            "cache_entries",
            "Entries.",
            CollectorType::Gauge,
            &[],
            move |enc| {
                enc.sample(&[], seen.load(Ordering::Relaxed) as f64);
            },
        )
        .unwrap();
        r.register_collector("dup_total", "Dup.", CollectorType::Counter, &["k"], |enc| {
            assert_eq!(enc.label_names().collect::<Vec<_>>(), ["k"]);
            assert!(!enc.sample(&[], 9.0)); // wrong arity: dropped
            assert!(enc.sample(&["b"], 1.0));
            assert!(enc.sample(&["a"], 2.0));
            assert!(enc.sample(&["b"], 3.0)); // same labels again: last wins
            assert!(enc.sample(&["c"], f64::NAN));
        })
        .unwrap();
        let expected = |n: i64| {
            format!(
                "# HELP cache_entries Entries.\n# TYPE cache_entries gauge\ncache_entries {n}\n\
                 # HELP dup_total Dup.\n# TYPE dup_total counter\n\
                 dup_total{{k=\"a\"}} 2\ndup_total{{k=\"b\"}} 3\ndup_total{{k=\"c\"}} NaN\n"
            )
        };
        assert_eq!(r.render(), expected(7));
        size.store(42, Ordering::Relaxed);
        let text = r.render();
        assert_eq!(text, expected(42));
        check_exposition(&text).unwrap();
    }

    #[test]
    fn validation() {
        for bad in ["", "1abc", "a-b", "a b", "é", "a.b"] {
            assert_eq!(
                CounterVec::new(bad, "h", &[]).unwrap_err(),
                MetricError::InvalidMetricName(bad.to_owned())
            );
        }
        for good in ["a", "_a", ":a", "a:b_c9", "ABC"] {
            assert!(CounterVec::new(good, "h", &[]).is_ok(), "{good}");
        }
        for bad in ["", "1a", "a:b", "a-b", "__reserved"] {
            assert!(
                matches!(
                    GaugeVec::new("m", "h", &[bad]),
                    Err(MetricError::InvalidLabelName { .. })
                ),
                "{bad}"
            );
        }
        assert!(GaugeVec::new("m", "h", &["le"]).is_ok());
        assert!(matches!(
            HistogramVec::new("m", "h", &["le"], &[1.0]),
            Err(MetricError::InvalidLabelName { .. })
        ));
        assert_eq!(
            CounterVec::new("m", "h", &["a", "b", "a"]).unwrap_err(),
            MetricError::DuplicateLabelName {
                metric: "m".into(),
                label: "a".into()
            }
        );
        for bad in [
            &[2.0, 1.0][..],
            &[1.0, 1.0],
            &[f64::NAN],
            &[f64::NEG_INFINITY, 1.0],
            &[f64::INFINITY, f64::INFINITY],
        ] {
            assert!(
                matches!(
                    HistogramVec::new("m", "h", &[], bad),
                    Err(MetricError::InvalidBuckets { .. })
                ),
                "{bad:?}"
            );
        }
        // A trailing +Inf is accepted and not doubled.
        let h = HistogramVec::new("m", "h", &[], &[1.0, f64::INFINITY]).unwrap();
        assert_eq!(h.with(&[]).cumulative_counts().len(), 2);
        assert!(HistogramVec::new("m", "h", &[], &[]).is_ok());
        assert!(HistogramVec::new("m", "h", &[], LATENCY_SECONDS_BUCKETS).is_ok());
        assert!(HistogramVec::new("m", "h", &[], OVERHEAD_SECONDS_BUCKETS).is_ok());
        assert!(
            MetricError::InvalidMetricName("x y".into())
                .to_string()
                .contains("x y")
        );
    }

    #[test]
    fn duplicate_and_colliding_names_are_rejected() {
        let r = Registry::new();
        r.counter_vec("a_total", "A.", &[]).unwrap();
        r.histogram_vec("lat", "L.", &[], &[1.0]).unwrap();
        assert_eq!(
            r.gauge_vec("a_total", "A.", &[]).unwrap_err(),
            MetricError::AlreadyRegistered("a_total".into())
        );
        assert!(r.counter_vec("lat_count", "C.", &[]).is_err());
        assert!(
            r.register_collector("lat_sum", "S.", CollectorType::Gauge, &[], |_| {})
                .is_err()
        );
        assert!(r.histogram_vec("a", "A.", &[], &[1.0]).is_ok());
        assert!(r.histogram_vec("a_total", "X.", &[], &[1.0]).is_err());
        // The same family object cannot be registered twice either.
        let c = CounterVec::new("once_total", "O.", &[]).unwrap();
        assert!(r.register(c.clone()).is_ok());
        assert!(r.register(c).is_err());
        assert_eq!(format!("{r:?}"), r#"["a_total", "lat", "a", "once_total"]"#);
        check_exposition(&r.render()).unwrap();
    }

    #[test]
    fn grammar_of_a_messy_registry() {
        let r = small_registry();
        let odd = r
            .gauge_vec("odd:name_", "Odd \\ help\nwith lines.", &["_l", "L2"])
            .unwrap();
        odd.with(&["\"", "\\"]).set(i64::MIN);
        odd.with(&["\n\n", "}{,= "]).set(i64::MAX);
        r.register_collector("specials", "S.", CollectorType::Gauge, &["v"], |e| {
            e.sample(&["inf"], f64::INFINITY);
            e.sample(&["-inf"], f64::NEG_INFINITY);
            e.sample(&["nan"], f64::NAN);
            e.sample(&["tiny"], 1e-300);
            e.sample(&["huge"], 1e300);
            e.sample(&["neg0"], -0.0);
        })
        .unwrap();
        r.histogram_vec("o", "O.", &["a"], OVERHEAD_SECONDS_BUCKETS)
            .unwrap()
            .with(&["x"])
            .observe(0.0003);
        let text = r.render();
        check_exposition(&text).unwrap();
        assert!(check_exposition("bad line\n").is_err());
        assert!(check_exposition("# TYPE m counter\nm{a=\"x} 1\n").is_err());
        assert!(check_exposition("# TYPE m counter\nm 1e\n").is_err());
        assert!(check_exposition("# TYPE m counter\nn 1\n").is_err());
        assert!(check_exposition("# TYPE m counter\nm 1").is_err());
    }

    // -----------------------------------------------------------------------------------------
    // A strict checker for the subset of the text format 0.0.4 that we emit.
    // -----------------------------------------------------------------------------------------

    fn check_exposition(text: &str) -> Result<(), String> {
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("output must end with a newline".into());
        }
        let mut family: Option<(String, String)> = None;
        let mut series = HashSet::new();
        let mut families = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let err = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').ok_or_else(|| err("HELP"))?;
                check_metric_name(name).map_err(|e| err(&e))?;
                check_escapes(help, false).map_err(|e| err(&e))?;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or_else(|| err("TYPE"))?;
                check_metric_name(name).map_err(|e| err(&e))?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(err("unknown type"));
                }
                if !families.insert(name.to_owned()) {
                    return Err(err("family declared twice"));
                }
                family = Some((name.to_owned(), kind.to_owned()));
            } else if line.starts_with('#') {
                return Err(err("unexpected comment"));
            } else {
                let (name, labels, value) = parse_sample(line).map_err(|e| err(&e))?;
                let (fam, kind) = family.as_ref().ok_or_else(|| err("sample before TYPE"))?;
                let ok = if kind == "histogram" {
                    let has_le = labels.iter().any(|(k, _)| k == "le");
                    (name == format!("{fam}_bucket") && has_le)
                        || ((name == format!("{fam}_sum") || name == format!("{fam}_count"))
                            && !has_le)
                } else {
                    name == *fam
                };
                if !ok {
                    return Err(err("sample does not belong to its family"));
                }
                check_value(value).map_err(|e| err(&e))?;
                if !series.insert((name, labels)) {
                    return Err(err("duplicate series"));
                }
            }
        }
        Ok(())
    }

    fn check_metric_name(name: &str) -> Result<(), String> {
        if is_valid_metric_name(name) {
            Ok(())
        } else {
            Err(format!("bad metric name {name:?}"))
        }
    }

    /// Only `\\`, `\n` (and `\"` in label values) may follow a backslash; a bare `"` may not
    /// appear in a label value.
    fn check_escapes(s: &str, label: bool) -> Result<(), String> {
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('\\' | 'n') => {}
                    Some('"') if label => {}
                    other => return Err(format!("bad escape \\{other:?}")),
                },
                '"' if label => return Err("unescaped quote".into()),
                _ => {}
            }
        }
        Ok(())
    }

    type Labels = Vec<(String, String)>;

    /// `name{label="value",...} value`, no timestamp.
    fn parse_sample(line: &str) -> Result<(String, Labels, &str), String> {
        let end = line.find(['{', ' ']).ok_or("no value")?;
        let (name, mut rest) = line.split_at(end);
        check_metric_name(name)?;
        let mut labels = Vec::new();
        if let Some(mut r) = rest.strip_prefix('{') {
            loop {
                let eq = r.find('=').ok_or("label without =")?;
                let (lname, after) = r.split_at(eq);
                if !is_valid_label_name(lname) {
                    return Err(format!("bad label name {lname:?}"));
                }
                let after = after.strip_prefix("=\"").ok_or("label value not quoted")?;
                // Find the closing quote, skipping escaped characters.
                let mut close = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            close = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let close = close.ok_or("unterminated label value")?;
                let raw = &after[..close];
                check_escapes(raw, true)?;
                if labels.iter().any(|(k, _): &(String, String)| k == lname) {
                    return Err(format!("label {lname:?} twice"));
                }
                labels.push((lname.to_owned(), raw.to_owned()));
                r = &after[close + 1..];
                if let Some(next) = r.strip_prefix(',') {
                    r = next;
                } else if let Some(next) = r.strip_prefix('}') {
                    rest = next;
                    break;
                } else {
                    return Err("expected , or }".into());
                }
            }
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or("expected one space before value")?;
        Ok((name.to_owned(), labels, value))
    }

    /// `+Inf`, `-Inf`, `NaN`, or `[+-]?(digits[.digits*]|.digits)([eE][+-]?digits)?`.
    fn check_value(v: &str) -> Result<(), String> {
        if ["+Inf", "-Inf", "NaN"].contains(&v) {
            return Ok(());
        }
        let bad = || Err(format!("bad value {v:?}"));
        let s = v.strip_prefix(['+', '-']).unwrap_or(v);
        let (mantissa, exp) = match s.split_once(['e', 'E']) {
            Some((m, e)) => (m, Some(e)),
            None => (s, None),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || !digits(frac) || (int.is_empty() && frac.is_empty()) {
            return bad();
        }
        if let Some(e) = exp {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            if e.is_empty() || !digits(e) {
                return bad();
            }
        }
        v.parse::<f64>().map(|_| ()).map_err(|e| e.to_string())
    }
}
