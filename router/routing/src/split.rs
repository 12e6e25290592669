//! Canary splits: a route's traffic shared among some of its models (`split`), before the score
//! orders the fallbacks. Each request gets a point in [0, 1) — a hash of (route, sticky value)
//! when it carries one, else a random draw — and the arm whose slice of the cumulative shares
//! holds the point goes first; the other eligible candidates keep the score's order.
//!
//! Arms are laid out in name order, whatever the order in the config, so the same key lands on
//! the same arm while the shares are unchanged, and moving shares between two neighbouring arms
//! moves only the keys in the slice that changed hands.
//!
//! Pure: the sticky value and the random draw are arguments; nothing here reads a clock or an
//! RNG. The per-arm counters (`ArmStats`) are plain counters the gateway fills in.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::candidates::Decision;
use switchyard_types::ids::ModelId;

/// What keeps a request on its arm (`split_by`). A request without the value (no key, no
/// `user`, no such metadata field) is placed at random.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SplitBy {
    /// The virtual key's id (the default).
    #[default]
    Key,
    /// The request's `user` field.
    User,
    /// A string (or number) field of the request's `metadata` object.
    Metadata(String),
    /// No stickiness: every request is drawn anew.
    Random,
}

/// The longest `metadata.NAME` field name (OpenAI's limit on metadata keys).
pub const MAX_METADATA_KEY_CHARS: usize = 64;

impl SplitBy {
    /// `"key"`, `"user"`, `"random"` or `"metadata.NAME"`.
    pub fn parse(s: &str) -> Result<SplitBy, String> {
        match s {
            "key" => Ok(SplitBy::Key),
            "user" => Ok(SplitBy::User),
            "random" => Ok(SplitBy::Random),
            _ => match s.strip_prefix("metadata.") {
                Some(name)
                    if !name.is_empty() && name.chars().count() <= MAX_METADATA_KEY_CHARS =>
                {
                    Ok(SplitBy::Metadata(name.to_owned()))
                }
                _ => Err(format!(
                    "must be \"key\", \"user\", \"random\" or \"metadata.NAME\" (NAME of 1 to \
                     {MAX_METADATA_KEY_CHARS} characters), not {s:?}"
                )),
            },
        }
    }

    /// As written in the config.
    pub fn label(&self) -> String {
        match self {
            SplitBy::Key => "key".to_owned(),
            SplitBy::User => "user".to_owned(),
            SplitBy::Metadata(name) => format!("metadata.{name}"),
            SplitBy::Random => "random".to_owned(),
        }
    }
}

impl Serialize for SplitBy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

/// One arm: a model of the route and its share of the route's traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arm {
    pub model: ModelId,
    /// Its weight over the sum of the weights: the shares sum to 1.
    pub share: f64,
}

/// A validated split: arms in name order, shares summing to 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    pub arms: Vec<Arm>,
    pub by: SplitBy,
}

impl Split {
    /// From weights as configured (finite, non-negative, checked by the config); `None` when
    /// they do not have a positive sum.
    pub fn new(weights: impl IntoIterator<Item = (ModelId, f64)>, by: SplitBy) -> Option<Split> {
        let sorted: BTreeMap<ModelId, f64> = weights.into_iter().collect();
        let sum: f64 = sorted.values().sum();
        if !(sum.is_finite() && sum > 0.0) || sorted.values().any(|w| w.is_nan() || *w < 0.0) {
            return None;
        }
        let arms = sorted
            .into_iter()
            .map(|(model, w)| Arm {
                model,
                share: w / sum,
            })
            .collect();
        Some(Split { arms, by })
    }

    pub fn share_of(&self, model: &ModelId) -> Option<f64> {
        self.arms
            .iter()
            .find(|a| &a.model == model)
            .map(|a| a.share)
    }
}

/// How a request's point in [0, 1) is found.
#[derive(Debug, Clone, Copy)]
pub enum Draw<'a> {
    /// By `split_by`, with this value (the key's id, the `user`, the metadata field).
    Sticky(&'a str),
    /// At random: a uniform draw in [0, 1), made by the caller.
    Random(f64),
}

/// The split's part of a routing decision (the explanation's `split`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitChoice {
    /// The arm put first; `None` when no arm could take the request (the score decided).
    pub arm: Option<ModelId>,
    /// That arm's configured share of the route's traffic.
    pub share: f64,
    /// The arm the request's point fell on, when it could not take the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instead_of: Option<ModelId>,
    /// What placed the request: `split_by` when the request carried its value, else `random`.
    pub by: String,
    /// Whether the same value lands on the same arm again (false for a random draw).
    pub sticky: bool,
}

/// A stable point in [0, 1) for (route, value): FNV-1a over both (a NUL between them, so
/// `("ab", "c")` and `("a", "bc")` differ), then SplitMix64's finaliser for an even spread.
/// Stable across processes and versions: no per-process hash keys.
pub fn sticky_point(route: &str, value: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in route.bytes().chain([0]).chain(value.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    unit(switchyard_types::rng::mix(h))
}

/// The top 53 bits of `x` as a float in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The index of the arm among `arms` (weights `share`, only those `keep` accepts) whose slice of
/// the cumulative shares holds `point`, and where in that slice the point lies (in [0, 1));
/// `None` when the kept arms have no weight.
fn pick(arms: &[Arm], point: f64, keep: impl Fn(&Arm) -> bool) -> Option<(usize, f64)> {
    let total: f64 = arms.iter().filter(|a| keep(a)).map(|a| a.share).sum();
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let target = point.clamp(0.0, 1.0) * total;
    let mut acc = 0.0;
    let mut last = None;
    for (i, a) in arms.iter().enumerate() {
        if !keep(a) || a.share <= 0.0 {
            continue;
        }
        let start = acc;
        acc += a.share;
        last = Some((i, 1.0 - f64::EPSILON));
        if target < acc {
            return Some((
                i,
                ((target - start) / a.share).clamp(0.0, 1.0 - f64::EPSILON),
            ));
        }
    }
    // Rounding at the very top of the range: the last weighted arm.
    last
}

/// Put the request's arm first among the decision's eligible candidates (the others keep their
/// order) and record the choice in `decision.split`. An arm that cannot take the request (it
/// was filtered) is replaced by one of the eligible arms, drawn by their weights with the same
/// point; with no eligible arm the order stays the score's.
pub fn assign(split: &Split, route: &str, draw: Draw<'_>, decision: &mut Decision) {
    let (point, by, sticky) = match draw {
        Draw::Sticky(value) => (sticky_point(route, value), split.by.label(), true),
        Draw::Random(p) => (p, "random".to_owned(), false),
    };
    let eligible = |m: &ModelId| decision.eligible().iter().any(|c| &c.model == m);
    let assigned = pick(&split.arms, point, |_| true);
    // A request whose arm cannot take it is placed again among the eligible arms, by where its
    // point lies within the arm's slice: sticky still, and spread by the eligible arms' weights.
    let chosen = match assigned {
        Some((i, _)) if eligible(&split.arms[i].model) => Some(i),
        Some((_, within)) => pick(&split.arms, within, |a| eligible(&a.model)).map(|(i, _)| i),
        None => None,
    };
    let assigned = assigned.map(|(i, _)| i);
    let instead_of = match (assigned, chosen) {
        (Some(a), c) if Some(a) != c => Some(split.arms[a].model.clone()),
        _ => None,
    };
    let arm = chosen.map(|i| split.arms[i].model.clone());
    if let Some(model) = &arm
        && let Some(pos) = decision.eligible().iter().position(|c| &c.model == model)
    {
        decision.candidates[..=pos].rotate_right(1);
    }
    decision.split = Some(SplitChoice {
        share: chosen.map_or(0.0, |i| split.arms[i].share),
        arm,
        instead_of,
        by,
        sticky,
    });
}

/// The decision's one-sentence reason when a split placed the request.
pub fn reason(decision: &Decision, choice: &SplitChoice) -> Option<String> {
    let arm = choice.arm.as_ref()?;
    // A routing policy may have put another candidate first since: the score's reason then.
    if decision.chosen().map(|c| &c.model) != Some(arm) {
        return None;
    }
    let how = if choice.sticky {
        format!("sticky by {}", choice.by)
    } else {
        "drawn at random".to_owned()
    };
    let mut out = format!(
        "{arm} is this request's arm of the route's split ({:.1}% of its traffic, {how})",
        choice.share * 100.0
    );
    if let Some(other) = &choice.instead_of {
        out.push_str(&format!(
            "; its assigned arm {other} could not take the request"
        ));
    }
    let fallbacks: Vec<&str> = decision
        .eligible()
        .iter()
        .skip(1)
        .map(|c| c.model.as_str())
        .collect();
    if !fallbacks.is_empty() {
        out.push_str(&format!(
            "; fallbacks in score order: {}",
            fallbacks.join(", ")
        ));
    }
    let filtered = decision.candidates.len() - decision.eligible().len();
    if filtered > 0 {
        out.push_str(&format!("; {filtered} filtered"));
    }
    Some(out)
}

/// What became of a request placed on an arm.
#[derive(Debug, Clone, Copy)]
pub enum ArmOutcome {
    /// Answered, by the arm's model itself or (a fallback) by another, after `latency` (to the
    /// answer, or to the first token of a stream), for `cost_picousd` in all.
    Answered {
        by_arm: bool,
        latency: Duration,
        cost_picousd: i64,
    },
    /// No answer (every attempt failed, or the client left first).
    Failed,
}

/// One arm's figures since the gateway started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ArmCounters {
    /// Requests placed on the arm (cache hits are not: they reach no model).
    pub requests: u64,
    /// Answered by the arm's own model.
    pub successes: u64,
    /// Answered by a fallback after the arm failed.
    pub fallbacks: u64,
    /// Not answered at all.
    pub failures: u64,
    /// Sum of the arm's own answers' latencies, ms.
    pub latency_ms_sum: f64,
    /// What the arm's requests cost in all (fallbacks included), picodollars.
    pub cost_picousd: i64,
}

/// Per-arm counters of every route with a split; fixed at startup by the config, so their
/// number is bounded by it.
#[derive(Debug, Default)]
pub struct ArmStats {
    routes: BTreeMap<String, BTreeMap<ModelId, Mutex<ArmCounters>>>,
}

impl ArmStats {
    /// Counters for each route's arms.
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a str, &'a Split)>) -> ArmStats {
        let routes = routes
            .into_iter()
            .map(|(name, split)| {
                let arms = split
                    .arms
                    .iter()
                    .map(|a| (a.model.clone(), Mutex::default()))
                    .collect();
                (name.to_owned(), arms)
            })
            .collect();
        ArmStats { routes }
    }

    /// Count one request placed on `arm` of `route` (unknown routes and arms are ignored).
    pub fn record(&self, route: &str, arm: &ModelId, outcome: ArmOutcome) {
        let Some(counters) = self.routes.get(route).and_then(|arms| arms.get(arm)) else {
            return;
        };
        let Ok(mut c) = counters.lock() else {
            return;
        };
        c.requests += 1;
        match outcome {
            ArmOutcome::Answered {
                by_arm,
                latency,
                cost_picousd,
            } => {
                if by_arm {
                    c.successes += 1;
                    c.latency_ms_sum += latency.as_secs_f64() * 1000.0;
                } else {
                    c.fallbacks += 1;
                }
                c.cost_picousd = c.cost_picousd.saturating_add(cost_picousd);
            }
            ArmOutcome::Failed => c.failures += 1,
        }
    }

    /// Every route's arms and their counters.
    pub fn snapshot(&self) -> BTreeMap<&str, BTreeMap<&ModelId, ArmCounters>> {
        self.routes
            .iter()
            .map(|(route, arms)| {
                let arms = arms
                    .iter()
                    .map(|(m, c)| (m, c.lock().map(|c| *c).unwrap_or_default()))
                    .collect();
                (route.as_str(), arms)
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
