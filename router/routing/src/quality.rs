//! Quality from feedback (`POST /ai/feedback`): per (model, route, task) a decayed Beta
//! posterior of "the answer was good", the scorer's fourth input.
//!
//! A feedback score s ∈ [0, 1] (thumbs up = 1, down = 0) adds s to the cell's decayed successes
//! and 1 − s to its failures; both decay as e^(−Δt/τ), so a model that improved is not judged
//! by last month's answers. The estimate is the posterior mean (α0 + good) / (α0 + β0 + good +
//! bad); with no feedback every model has the prior mean, so the quality term is 0 for all and
//! the ranking is unchanged.
//!
//! Each feedback updates three cells: the model on the route with the request's task tag, the
//! model on the route, and the model over every route. A lookup takes the narrowest cell with
//! at least `min_evidence` (decayed) feedback, so a rare task tag falls back to the route's and
//! then the model's estimate. At most `max_cells` cells are kept: a new cell beyond that evicts
//! the one with the least evidence.
//!
//! Pure: no I/O, and time is a `tokio::time::Instant` passed in (feedback read back from the
//! store at start is given by its age). IMPORTANT: the one lock is a short `std::sync::Mutex`
//! section, never held across an await.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use switchyard_types::ChatRequest;

/// A cell has "enough" evidence at this share of `min_evidence`: three feedbacks a few seconds
/// old have decayed to a hair under 3, and still count as three.
const EVIDENCE_SLACK: f64 = 0.999;

/// The longest task tag taken (`metadata.task`).
pub const TASK_MAX_CHARS: usize = 64;

/// `[quality]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    /// Beta prior α0: pseudo-good answers of a model with no feedback.
    pub prior_alpha: f64,
    /// Beta prior β0: pseudo-bad answers (2 : 2 = a neutral 0.5, worth four feedbacks).
    pub prior_beta: f64,
    /// Decay time constant of feedback, seconds (default a week: evidence weighs e⁻¹ after it).
    pub tau_s: f64,
    /// Decayed feedback a task (or route) cell needs before it is used instead of the coarser
    /// one.
    pub min_evidence: f64,
    /// Cells kept in memory at most.
    pub max_cells: usize,
    /// Seconds between rebuilds from the store (other replicas' feedback); 0 = only at start.
    pub refresh_s: u64,
    /// Newest feedback rows read from the store at a rebuild, at most.
    pub rebuild_rows: usize,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            prior_alpha: 2.0,
            prior_beta: 2.0,
            tau_s: 7.0 * 86_400.0,
            min_evidence: 3.0,
            max_cells: 10_000,
            refresh_s: 60,
            rebuild_rows: 100_000,
        }
    }
}

impl QualityConfig {
    /// Problems as `(field, message)`, the field relative to `[quality]`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.prior_alpha) || self.prior_alpha > 1e6 {
            out.push(("prior_alpha", "must be positive and at most 1e6".into()));
        }
        if !positive(self.prior_beta) || self.prior_beta > 1e6 {
            out.push(("prior_beta", "must be positive and at most 1e6".into()));
        }
        if !positive(self.tau_s) || self.tau_s > 3.2e8 {
            out.push((
                "tau_s",
                "must be positive and at most 3.2e8 (ten years)".into(),
            ));
        }
        if !self.min_evidence.is_finite() || self.min_evidence < 0.0 {
            out.push(("min_evidence", "must be finite and non-negative".into()));
        }
        if self.max_cells == 0 || self.max_cells > 1_000_000 {
            out.push(("max_cells", "must be between 1 and 1000000".into()));
        }
        if self.refresh_s > 86_400 {
            out.push(("refresh_s", "must be at most 86400".into()));
        }
        if self.rebuild_rows == 0 || self.rebuild_rows > 10_000_000 {
            out.push(("rebuild_rows", "must be between 1 and 10000000".into()));
        }
        out
    }

    fn tau(&self) -> f64 {
        self.tau_s.max(1e-3)
    }

    /// How far back a rebuild reads: five time constants (weight e⁻⁵ < 1 %).
    pub fn horizon(&self) -> Duration {
        Duration::from_secs_f64((self.tau() * 5.0).min(3.2e9))
    }
}

/// The task tag a request carries: `metadata.task`, 1–64 characters of letters, digits and
/// `._:/-`. `Err` names what is wrong (the caller answers 400 `metadata.task`).
pub fn task_tag(request: &ChatRequest) -> Result<Option<&str>, String> {
    let Some(task) = request
        .extra
        .get("metadata")
        .and_then(|m| m.as_object())
        .and_then(|m| m.get("task"))
    else {
        return Ok(None);
    };
    let Some(text) = task.as_str() else {
        return Err("must be a string".into());
    };
    valid_task(text).map(Some)
}

/// `text` if it is a valid task tag.
pub fn valid_task(text: &str) -> Result<&str, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "._:/-".contains(c);
    if text.is_empty() || text.chars().count() > TASK_MAX_CHARS || !text.chars().all(ok) {
        return Err(format!(
            "a task tag is 1 to {TASK_MAX_CHARS} letters, digits or ._:/- characters"
        ));
    }
    Ok(text)
}

/// What the scorer reads for one request: the estimator and the request's task tag.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    pub quality: &'a Quality,
    pub task: Option<&'a str>,
}

/// The estimator alone: no task tag.
impl<'a> From<&'a Quality> for Lookup<'a> {
    fn from(quality: &'a Quality) -> Lookup<'a> {
        Lookup {
            quality,
            task: None,
        }
    }
}

impl<'a> From<&'a std::sync::Arc<Quality>> for Lookup<'a> {
    fn from(quality: &'a std::sync::Arc<Quality>) -> Lookup<'a> {
        Lookup::from(&**quality)
    }
}

/// One feedback, as the estimator takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback<'a> {
    pub model: &'a str,
    pub route: &'a str,
    pub task: Option<&'a str>,
    /// In [0, 1]; clamped (a NaN counts as 0.5, no information either way).
    pub score: f64,
}

/// Which cell an estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The request's task tag on this route.
    Task,
    /// This route, every task.
    Route,
    /// The model on every route.
    Model,
    /// No feedback at all: the prior.
    Prior,
}

/// A quality estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Posterior mean, in (0, 1).
    pub mean: f64,
    /// Decayed feedback behind it (0 for the prior).
    pub evidence: f64,
    pub basis: Basis,
}

/// One cell, for `/ai/performance`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellView {
    pub model: String,
    /// `None`: every route.
    pub route: Option<String>,
    pub task: Option<String>,
    pub quality: f64,
    /// Decayed feedback.
    pub evidence: f64,
    /// Feedback received (not decayed), and how much of it was good (score ≥ 0.5) or bad.
    pub feedback: u64,
    pub positive: u64,
    pub negative: u64,
}

/// (model, route, task); route `None` = the model on every route.
type Key = (String, Option<String>, Option<String>);

#[derive(Debug, Clone, Copy)]
struct Cell {
    good: f64,
    bad: f64,
    at: Instant,
    feedback: u64,
    positive: u64,
}

impl Cell {
    /// (good, bad) decayed to `now`.
    fn at(&self, now: Instant, tau: f64) -> (f64, f64) {
        let f = decay(now.saturating_duration_since(self.at), tau);
        (self.good * f, self.bad * f)
    }
}

/// e^(−age/τ).
fn decay(age: Duration, tau: f64) -> f64 {
    (-age.as_secs_f64() / tau).exp()
}

/// The posterior mean of Beta(α0 + good, β0 + bad).
pub fn posterior_mean(alpha0: f64, beta0: f64, good: f64, bad: f64) -> f64 {
    (alpha0 + good) / (alpha0 + beta0 + good + bad)
}

/// See the module docs.
#[derive(Debug)]
pub struct Quality {
    cfg: QualityConfig,
    cells: Mutex<HashMap<Key, Cell>>,
}

impl Quality {
    pub fn new(cfg: QualityConfig) -> Quality {
        Quality {
            cfg,
            cells: Mutex::default(),
        }
    }

    pub fn config(&self) -> &QualityConfig {
        &self.cfg
    }

    /// The prior mean: every model's quality before any feedback.
    pub fn prior(&self) -> f64 {
        posterior_mean(self.cfg.prior_alpha, self.cfg.prior_beta, 0.0, 0.0)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Cell>> {
        self.cells.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add one feedback given `age` ago (zero for one just received).
    pub fn observe(&self, f: &Feedback<'_>, age: Duration, now: Instant) {
        let mut cells = self.lock();
        observe_into(&mut cells, &self.cfg, f, age, now);
    }

    /// Replace every cell with what `feedback` (each with its age) says: a rebuild from the
    /// store. Feedback older than the horizon is skipped.
    pub fn rebuild<'a>(
        &self,
        feedback: impl IntoIterator<Item = (Feedback<'a>, Duration)>,
        now: Instant,
    ) {
        let mut fresh = HashMap::new();
        let horizon = self.cfg.horizon();
        for (f, age) in feedback {
            if age <= horizon {
                observe_into(&mut fresh, &self.cfg, &f, age, now);
            }
        }
        *self.lock() = fresh;
    }

    /// The estimate for `model` on `route` for a request with `task`: the narrowest cell with
    /// enough evidence, else the model's (which may be the prior alone).
    pub fn estimate(&self, model: &str, route: &str, task: Option<&str>, now: Instant) -> Estimate {
        let cells = self.lock();
        let tau = self.cfg.tau();
        let read = |key: Key| cells.get(&key).map(|c| c.at(now, tau));
        let mean =
            |(g, b): (f64, f64)| posterior_mean(self.cfg.prior_alpha, self.cfg.prior_beta, g, b);
        let mut narrow = Vec::with_capacity(2);
        if let Some(t) = task {
            narrow.push((Basis::Task, read(key(model, Some(route), Some(t)))));
        }
        narrow.push((Basis::Route, read(key(model, Some(route), None))));
        for (basis, cell) in narrow {
            if let Some((g, b)) = cell
                && g + b >= self.cfg.min_evidence * EVIDENCE_SLACK
                && g + b > 0.0
            {
                return Estimate {
                    mean: mean((g, b)),
                    evidence: g + b,
                    basis,
                };
            }
        }
        match read(key(model, None, None)) {
            Some((g, b)) if g + b > 0.0 => Estimate {
                mean: mean((g, b)),
                evidence: g + b,
                basis: Basis::Model,
            },
            _ => Estimate {
                mean: mean((0.0, 0.0)),
                evidence: 0.0,
                basis: Basis::Prior,
            },
        }
    }

    /// Every cell, sorted by model, route, task.
    pub fn cells(&self, now: Instant) -> Vec<CellView> {
        let tau = self.cfg.tau();
        let mut out: Vec<CellView> = self
            .lock()
            .iter()
            .map(|((model, route, task), c)| {
                let (g, b) = c.at(now, tau);
                CellView {
                    model: model.clone(),
                    route: route.clone(),
                    task: task.clone(),
                    quality: posterior_mean(self.cfg.prior_alpha, self.cfg.prior_beta, g, b),
                    evidence: g + b,
                    feedback: c.feedback,
                    positive: c.positive,
                    negative: c.feedback - c.positive,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.model, &a.route, &a.task).cmp(&(&b.model, &b.route, &b.task)));
        out
    }

    /// Cells held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn key(model: &str, route: Option<&str>, task: Option<&str>) -> Key {
    (
        model.to_owned(),
        route.map(str::to_owned),
        task.map(str::to_owned),
    )
}

fn observe_into(
    cells: &mut HashMap<Key, Cell>,
    cfg: &QualityConfig,
    f: &Feedback<'_>,
    age: Duration,
    now: Instant,
) {
    let score = if f.score.is_nan() {
        0.5
    } else {
        f.score.clamp(0.0, 1.0)
    };
    let tau = cfg.tau();
    let weight = decay(age, tau);
    let mut keys = vec![key(f.model, Some(f.route), None), key(f.model, None, None)];
    if let Some(t) = f.task {
        keys.insert(0, key(f.model, Some(f.route), Some(t)));
    }
    for k in keys {
        if !cells.contains_key(&k) && cells.len() >= cfg.max_cells {
            evict_weakest(cells, now, tau);
        }
        let cell = cells.entry(k).or_insert(Cell {
            good: 0.0,
            bad: 0.0,
            at: now,
            feedback: 0,
            positive: 0,
        });
        let (g, b) = cell.at(now, tau);
        cell.good = g + weight * score;
        cell.bad = b + weight * (1.0 - score);
        cell.at = now;
        cell.feedback = cell.feedback.saturating_add(1);
        if score >= 0.5 {
            cell.positive = cell.positive.saturating_add(1);
        }
    }
}

/// Drop the cell with the least decayed evidence (O(cells); only when a new cell is full).
fn evict_weakest(cells: &mut HashMap<Key, Cell>, now: Instant, tau: f64) {
    let weakest = cells
        .iter()
        .map(|(k, c)| {
            let (g, b) = c.at(now, tau);
            (k, g + b)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k.clone());
    if let Some(k) = weakest {
        cells.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb<'a>(model: &'a str, task: Option<&'a str>, score: f64) -> Feedback<'a> {
        Feedback {
            model,
            route: "auto",
            task,
            score,
        }
    }

    #[test]
    fn with_no_feedback_every_model_has_the_prior() {
        let q = Quality::new(QualityConfig::default());
        let now = Instant::now();
        let e = q.estimate("a", "auto", Some("code"), now);
        assert_eq!(e.basis, Basis::Prior);
        assert_eq!(e.evidence, 0.0);
        assert!((e.mean - 0.5).abs() < 1e-12);
    }

    #[test]
    fn thumbs_down_lowers_and_thumbs_up_raises_the_estimate() {
        let q = Quality::new(QualityConfig::default());
        let now = Instant::now();
        let prior = q.estimate("a", "auto", None, now).mean;
        for _ in 0..5 {
            q.observe(&fb("a", None, 0.0), Duration::ZERO, now);
            q.observe(&fb("b", None, 1.0), Duration::ZERO, now);
        }
        let a = q.estimate("a", "auto", None, now);
        let b = q.estimate("b", "auto", None, now);
        assert!(a.mean < prior, "{a:?}");
        assert!(b.mean > prior, "{b:?}");
        assert_eq!(a.basis, Basis::Route);
        assert!((a.evidence - 5.0).abs() < 1e-9);
        // Beta(2, 2 + 5): 2/9.
        assert!((a.mean - 2.0 / 9.0).abs() < 1e-9, "{}", a.mean);
        // One more thumbs-down moves it further down; a middling score moves it toward 0.5.
        q.observe(&fb("a", None, 0.0), Duration::ZERO, now);
        assert!(q.estimate("a", "auto", None, now).mean < a.mean);
        q.observe(&fb("b", None, 0.5), Duration::ZERO, now);
        assert!(q.estimate("b", "auto", None, now).mean < b.mean);
    }

    #[test]
    fn evidence_decays_back_toward_the_prior() {
        let cfg = QualityConfig {
            tau_s: 100.0,
            ..QualityConfig::default()
        };
        let q = Quality::new(cfg);
        let t0 = Instant::now();
        for _ in 0..10 {
            q.observe(&fb("a", None, 0.0), Duration::ZERO, t0);
        }
        let fresh = q.estimate("a", "auto", None, t0);
        let later = q.estimate("a", "auto", None, t0 + Duration::from_secs(100));
        assert!(
            (later.evidence - 10.0 * (-1f64).exp()).abs() < 1e-9,
            "{later:?}"
        );
        assert!(later.mean > fresh.mean && later.mean < 0.5);
        // Old feedback (given by its age) weighs what it would have weighed by now.
        let r = Quality::new(cfg);
        for _ in 0..10 {
            r.observe(&fb("a", None, 0.0), Duration::from_secs(100), t0);
        }
        let rebuilt = r.estimate("a", "auto", None, t0);
        assert!((rebuilt.evidence - later.evidence).abs() < 1e-9);
    }

    #[test]
    fn a_rare_task_falls_back_to_the_route_then_the_model() {
        let q = Quality::new(QualityConfig::default());
        let now = Instant::now();
        // Plenty of good feedback on the route, two bad ones for "sql".
        for _ in 0..6 {
            q.observe(&fb("a", Some("chat"), 1.0), Duration::ZERO, now);
        }
        for _ in 0..2 {
            q.observe(&fb("a", Some("sql"), 0.0), Duration::ZERO, now);
        }
        let sql = q.estimate("a", "auto", Some("sql"), now);
        assert_eq!(sql.basis, Basis::Route, "{sql:?}");
        let chat = q.estimate("a", "auto", Some("chat"), now);
        assert_eq!(chat.basis, Basis::Task);
        assert!(chat.mean > sql.mean);
        q.observe(&fb("a", Some("sql"), 0.0), Duration::ZERO, now);
        let sql = q.estimate("a", "auto", Some("sql"), now);
        assert_eq!(sql.basis, Basis::Task);
        assert!(sql.mean < 0.5);
        // Another route has no evidence of its own: the model's, over every route.
        let other = q.estimate("a", "fast", None, now);
        assert_eq!(other.basis, Basis::Model);
        assert!((other.evidence - 9.0).abs() < 1e-9);
    }

    #[test]
    fn cells_are_bounded_and_the_weakest_goes_first() {
        let cfg = QualityConfig {
            max_cells: 5,
            ..QualityConfig::default()
        };
        let q = Quality::new(cfg);
        let now = Instant::now();
        for _ in 0..4 {
            q.observe(&fb("strong", None, 1.0), Duration::ZERO, now);
        }
        for i in 0..50 {
            let task = format!("t{i}");
            q.observe(&fb("weak", Some(&task), 0.0), Duration::ZERO, now);
            assert!(q.len() <= 5, "{}", q.len());
        }
        let strong = q.estimate("strong", "auto", None, now);
        assert_eq!(strong.basis, Basis::Route);
        assert!((strong.evidence - 4.0).abs() < 1e-9);
    }

    #[test]
    fn rebuild_replaces_and_skips_what_is_past_the_horizon() {
        let cfg = QualityConfig {
            tau_s: 10.0,
            ..QualityConfig::default()
        };
        let q = Quality::new(cfg);
        let now = Instant::now();
        q.observe(&fb("gone", None, 1.0), Duration::ZERO, now);
        q.rebuild(
            [
                (fb("a", None, 1.0), Duration::from_secs(1)),
                (fb("b", None, 1.0), Duration::from_secs(51)),
            ],
            now,
        );
        let models: Vec<String> = q.cells(now).into_iter().map(|c| c.model).collect();
        assert_eq!(models, vec!["a", "a"]);
        let view = &q.cells(now)[0];
        assert_eq!((view.feedback, view.positive, view.negative), (1, 1, 0));
    }

    #[test]
    fn hostile_scores_are_clamped() {
        let q = Quality::new(QualityConfig::default());
        let now = Instant::now();
        for s in [f64::NAN, f64::INFINITY, -3.0, 7.0] {
            q.observe(&fb("a", None, s), Duration::ZERO, now);
        }
        let e = q.estimate("a", "auto", None, now);
        assert!(e.mean.is_finite() && e.mean > 0.0 && e.mean < 1.0, "{e:?}");
        assert!((e.evidence - 4.0).abs() < 1e-9);
    }

    #[test]
    fn task_tags_are_validated() {
        let req = |meta: serde_json::Value| -> ChatRequest {
            serde_json::from_value(serde_json::json!({
                "model": "auto",
                "messages": [{"role": "user", "content": "hi"}],
                "metadata": meta,
            }))
            .unwrap()
        };
        assert_eq!(
            task_tag(&req(serde_json::json!({"task": "code/sql"}))),
            Ok(Some("code/sql"))
        );
        assert_eq!(task_tag(&req(serde_json::json!({"user": "x"}))), Ok(None));
        assert!(task_tag(&req(serde_json::json!({"task": 3}))).is_err());
        assert!(task_tag(&req(serde_json::json!({"task": ""}))).is_err());
        assert!(task_tag(&req(serde_json::json!({"task": "a b"}))).is_err());
        assert!(task_tag(&req(serde_json::json!({"task": "x".repeat(65)}))).is_err());
    }

    #[test]
    fn config_is_validated() {
        assert!(QualityConfig::default().validate().is_empty());
        let bad = QualityConfig {
            prior_alpha: 0.0,
            tau_s: f64::NAN,
            max_cells: 0,
            ..QualityConfig::default()
        };
        let fields: Vec<&str> = bad.validate().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["prior_alpha", "tau_s", "max_cells"]);
    }
}
