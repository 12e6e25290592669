//! Portfolio optimiser for the analyst endpoints. It owns checking a `PortfolioRequest` (every
//! rejection is an `InputError` naming the JSON path, for a 400), estimating annualised
//! statistics from prices, and the optimisation itself. It must never panic on input and never
//! return a number that did not come out of a checked, converged solve.
//!
//! Method. Σ must be positive definite, so each problem is a strictly convex QP with a unique
//! optimum, found exactly (finite termination at a KKT point, no step-size tolerance) by the
//! primal active-set method in `linalg` with the budget 1ᵀw = 1 and box bounds lo ≤ w ≤ hi:
//! - min_variance: minimise ½wᵀΣw.
//! - target_return: the same plus μᵀw = t, where t must lie in the range the box allows,
//!   [R_min, R_max], found greedily (best or worst assets filled first).
//! - max_sharpe: the Sharpe ratio is scale-free in w, so with y = w/(μ − r_f)ᵀw and κ = 1ᵀy it
//!   is maximised by minimising ½yᵀΣy s.t. (μ − r_f)ᵀy = 1, lo·κ ≤ y ≤ hi·κ; then w = y/κ. We
//!   chose this homogenised QP over a golden-section search along the frontier because it is
//!   exact rather than 1e-10-close, reuses the same active-set loop, and with no binding bound
//!   its first face solve *is* the closed form w ∝ Σ⁻¹(μ − r_f 1). With no bounds at all the
//!   maximum exists only when r_f is below the minimum-variance return (otherwise κ ≤ 0).
//! - frontier: evenly spaced targets from the minimum-variance return to R_max (with no cap on
//!   the return, to the best single-asset return), each solved as target_return.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::indicators::mean;

#[path = "linalg.rs"]
mod linalg;
#[path = "portfolio_stats.rs"]
mod stats;
use stats::{Stats, statistics};
#[cfg(test)]
#[path = "portfolio_tests.rs"]
mod tests;

use linalg::{
    Mode, Qp, QpError, QpSolution, dot, extreme_portfolio, is_positive_definite, quad_form,
};

/// Bigger requests are refused: the solver is O(n³) per iteration.
pub const MAX_ASSETS: usize = 100;
pub const MAX_FRONTIER_POINTS: usize = 50;
const DEFAULT_PERIODS_PER_YEAR: f64 = 252.0;
const MIN_PRICES: usize = 3;
const SYMMETRY_RELATIVE: f64 = 1e-9;
/// Slack for sums of weights and returns that rounding may push a hair across a limit.
const ROUNDING: f64 = 1e-12;
const SINGULAR: &str = "covariance is singular or not positive definite";
const ILL_CONDITIONED: &str = "covariance is too ill-conditioned: a KKT system was singular";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortfolioRequest {
    pub assets: Vec<Asset>,
    /// Annualised; required unless every asset has prices.
    pub covariance: Option<Vec<Vec<f64>>>,
    pub objective: Objective,
    /// Required for (and only allowed with) `target_return`.
    pub target_return: Option<f64>,
    /// Annual; default 0.
    pub risk_free_rate: Option<f64>,
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    pub constraints: Option<Constraints>,
    /// Default 252; annualises statistics estimated from prices.
    pub periods_per_year: Option<f64>,
    /// 0 (default) to 50 efficient-frontier points.
    pub frontier_points: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub symbol: String,
    /// Annual; estimated from `prices` when absent.
    pub expected_return: Option<f64>,
    pub prices: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    MaxSharpe,
    MinVariance,
    TargetReturn,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Default true: weights ≥ 0 (and ≥ `min_weight`).
    pub long_only: Option<bool>,
    pub min_weight: Option<f64>,
    pub max_weight: Option<f64>,
}

/// A rejected request: `path` is the JSON path of the offending value (shared with the market
/// endpoint's input checks).
pub use super::series::InputError;

/// `Err(InputError)` at `path`.
fn fail<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, InputError> {
    Err(InputError::new(path, message))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortfolioResult {
    pub objective: Objective,
    /// In request order.
    pub weights: Vec<AssetWeight>,
    pub weight_by_symbol: BTreeMap<String, f64>,
    pub expected_return: f64,
    /// √(wᵀΣw), annualised.
    pub volatility: f64,
    /// (expected_return − risk_free_rate) / volatility.
    pub sharpe: f64,
    pub risk_free_rate: f64,
    /// Weights pinned to a bound at the optimum.
    pub active_bounds: Vec<ActiveBound>,
    /// Active-set iterations of the objective's solve (0 when the bounds leave one portfolio).
    pub iterations: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frontier: Vec<FrontierPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssetWeight {
    pub symbol: String,
    pub weight: f64,
    /// The annual expected return used (given or estimated).
    pub expected_return: f64,
    /// The asset's own annualised volatility √Σᵢᵢ.
    pub volatility: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundSide {
    Lower,
    Upper,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveBound {
    pub symbol: String,
    pub bound: BoundSide,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrontierPoint {
    pub expected_return: f64,
    pub volatility: f64,
    pub sharpe: f64,
}

/// Validates the request, then solves its objective (and frontier, if asked).
pub fn optimise(req: &PortfolioRequest) -> Result<PortfolioResult, InputError> {
    let stats = statistics(req)?;
    let rf = req.risk_free_rate.unwrap_or(0.0);
    if !rf.is_finite() {
        return fail("risk_free_rate", "must be a finite number");
    }
    let bounds = Bounds::from_request(req.constraints.as_ref(), stats.mu.len())?;
    let points = req.frontier_points.unwrap_or(0);
    if points > MAX_FRONTIER_POINTS {
        return fail(
            "frontier_points",
            format!("at most {MAX_FRONTIER_POINTS}, got {points}"),
        );
    }
    let target = match (req.objective, req.target_return) {
        (Objective::TargetReturn, None) => return fail("target_return", "required"),
        (Objective::TargetReturn, Some(t)) if !t.is_finite() => {
            return fail("target_return", "must be a finite number");
        }
        (Objective::TargetReturn, t) => t,
        (_, Some(_)) => return fail("target_return", "only used with objective target_return"),
        (_, None) => None,
    };
    let problem = Problem::new(stats, bounds, rf);
    let gmv = problem.min_variance()?;
    let solution = match (req.objective, target) {
        (Objective::MaxSharpe, _) => problem.max_sharpe(&gmv)?,
        (_, Some(t)) => problem.target(t, &gmv)?,
        (_, None) => gmv.clone(),
    };
    let frontier = problem.frontier(points, &gmv)?;
    Ok(problem.result(req, solution, frontier))
}

/// The same box for every weight; `lo` may be −∞ and `hi` +∞.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bounds {
    lo: f64,
    hi: f64,
}

impl Bounds {
    fn from_request(constraints: Option<&Constraints>, n: usize) -> Result<Bounds, InputError> {
        let c = constraints.cloned().unwrap_or_default();
        for (name, value) in [("min_weight", c.min_weight), ("max_weight", c.max_weight)] {
            if value.is_some_and(|v| !v.is_finite()) {
                return fail(format!("constraints.{name}"), "must be a finite number");
            }
        }
        let long_only = c.long_only.unwrap_or(true);
        if let (true, Some(m)) = (long_only, c.min_weight)
            && m < 0.0
        {
            let message = format!("min_weight {m} is negative but long_only is true (the default)");
            return fail("constraints", message);
        }
        let lo = c
            .min_weight
            .unwrap_or(if long_only { 0.0 } else { f64::NEG_INFINITY });
        let hi = c.max_weight.unwrap_or(f64::INFINITY);
        let count = n as f64;
        let problem = if lo > hi {
            format!("the lower weight bound {lo} exceeds max_weight {hi}")
        } else if lo * count > 1.0 + ROUNDING {
            format!("min_weight {lo} × {n} assets exceeds 1")
        } else if hi * count < 1.0 - ROUNDING {
            format!("max_weight {hi} × {n} assets is below 1")
        } else {
            return Ok(Bounds { lo, hi });
        };
        fail(
            "constraints",
            format!("{problem}: no fully invested portfolio fits"),
        )
    }

    /// When the box leaves a single portfolio (equal weights), the bound it sits on, if any.
    fn forced(&self, n: usize) -> Option<Option<BoundSide>> {
        let count = n as f64;
        if self.lo * count >= 1.0 - ROUNDING {
            Some(Some(BoundSide::Lower))
        } else if self.hi * count <= 1.0 + ROUNDING {
            Some(Some(BoundSide::Upper))
        } else {
            (n == 1).then_some(None)
        }
    }
}

/// A validated problem: statistics, bounds, and the box's extreme-return portfolios.
struct Problem {
    stats: Stats,
    bounds: Bounds,
    rf: f64,
    highest: Option<Vec<f64>>,
    lowest: Option<Vec<f64>>,
}

impl Problem {
    fn new(stats: Stats, bounds: Bounds, rf: f64) -> Problem {
        let Bounds { lo, hi } = bounds;
        let highest = extreme_portfolio(&stats.mu, lo, hi, true);
        let lowest = extreme_portfolio(&stats.mu, lo, hi, false);
        Problem {
            stats,
            bounds,
            rf,
            highest,
            lowest,
        }
    }

    fn solve(&self, mode: Mode<'_>, start: &[f64]) -> Result<QpSolution, QpError> {
        let (cov, Bounds { lo, hi }) = (&self.stats.cov, self.bounds);
        Qp { cov, lo, hi }.solve(mode, start)
    }

    fn ret(&self, w: &[f64]) -> f64 {
        dot(&self.stats.mu, w)
    }

    /// [R_min, R_max] over the box; infinite ends when the box is open and returns differ.
    fn return_range(&self) -> (f64, f64) {
        let mu = &self.stats.mu;
        if self.bounds.forced(mu.len()).is_some() {
            return (mean(mu), mean(mu));
        }
        match (&self.lowest, &self.highest) {
            (Some(lo), Some(hi)) => (self.ret(lo), self.ret(hi)),
            _ if mu.iter().all(|m| *m == mu[0]) => (mu[0], mu[0]),
            _ => (f64::NEG_INFINITY, f64::INFINITY),
        }
    }

    fn min_variance(&self) -> Result<QpSolution, InputError> {
        let n = self.stats.mu.len();
        let equal = vec![1.0 / n as f64; n];
        match self.bounds.forced(n) {
            Some(side) => Ok(QpSolution {
                weights: equal,
                fixed: vec![side; n],
                iterations: 0,
            }),
            None => self
                .solve(Mode::Budget { target: None }, &equal)
                .or_else(solver_error),
        }
    }

    /// Minimum variance at return `t`, warm-started from `anchor`, a feasible solution: the
    /// start lies on the segment from it to the extreme portfolio on t's side, which keeps
    /// most of its active bounds. If every feasible portfolio earns the same, returns `anchor`.
    fn target(&self, t: f64, anchor: &QpSolution) -> Result<QpSolution, InputError> {
        let (low, high) = self.return_range();
        let scale = [low, high]
            .iter()
            .filter(|r| r.is_finite())
            .fold(1.0, |m: f64, r| m.max(r.abs()));
        let slack = ROUNDING * scale;
        if t < low - slack || t > high + slack {
            let range = format!("the achievable range [{low}, {high}] under the constraints");
            return fail(
                "target_return",
                format!("target_return {t} is outside {range}"),
            );
        }
        if high - low <= slack {
            return Ok(anchor.clone());
        }
        let t = t.max(low).min(high);
        let from = self.ret(&anchor.weights);
        let end = if t >= from {
            &self.highest
        } else {
            &self.lowest
        };
        let direction: Vec<f64> = match end {
            Some(e) => e.iter().zip(&anchor.weights).map(|(a, b)| a - b).collect(),
            None => self
                .stats
                .mu
                .iter()
                .map(|m| m - mean(&self.stats.mu))
                .collect(),
        };
        let gain = self.ret(&direction);
        let theta = if gain != 0.0 { (t - from) / gain } else { 0.0 };
        let theta = if end.is_some() {
            theta.clamp(0.0, 1.0)
        } else {
            theta
        };
        let start: Vec<f64> = anchor
            .weights
            .iter()
            .zip(&direction)
            .map(|(w, d)| w + theta * d)
            .collect();
        let mode = Mode::Budget {
            target: Some((&self.stats.mu, t)),
        };
        self.solve(mode, &start).or_else(solver_error)
    }

    fn max_sharpe(&self, gmv: &QpSolution) -> Result<QpSolution, InputError> {
        let rf = self.rf;
        let (_, high) = self.return_range();
        if high <= rf {
            let message = format!("no feasible portfolio earns more than {rf} (best: {high})");
            return fail("risk_free_rate", message);
        }
        if self.bounds.forced(self.stats.mu.len()).is_some() {
            return Ok(gmv.clone());
        }
        let r_gmv = self.ret(&gmv.weights);
        let no_tangency = || {
            let below =
                format!("risk_free_rate ({rf}) is below the minimum-variance return {r_gmv}");
            fail(
                "risk_free_rate",
                format!("without weight bounds the Sharpe ratio has a maximum only when {below}"),
            )
        };
        let start = match &self.highest {
            _ if r_gmv > rf => &gmv.weights,
            Some(highest) => highest,
            None => return no_tangency(),
        };
        let excess: Vec<f64> = self.stats.mu.iter().map(|m| m - rf).collect();
        match self.solve(Mode::Tangency { excess: &excess }, start) {
            Err(QpError::NoTangency) => no_tangency(),
            solved => solved.or_else(solver_error),
        }
    }

    /// Evenly spaced targets from the minimum-variance return to the top of the range, each
    /// warm-started from the previous point.
    fn frontier(&self, points: usize, gmv: &QpSolution) -> Result<Vec<FrontierPoint>, InputError> {
        let mu = &self.stats.mu;
        let r_gmv = self.ret(&gmv.weights);
        let top = match self.return_range() {
            (_, high) if high.is_finite() => high,
            // No cap on the return: run to the best single asset (or as far past the GMV).
            _ => {
                let best = mu.iter().fold(f64::NEG_INFINITY, |m, x| m.max(*x));
                let worst = mu.iter().fold(f64::INFINITY, |m, x| m.min(*x));
                if best > r_gmv {
                    best
                } else {
                    r_gmv + (best - worst)
                }
            }
        };
        let mut out = Vec::with_capacity(points);
        let mut anchor = gmv.clone();
        for j in 1..points {
            let t = if j + 1 == points {
                top
            } else {
                r_gmv + (top - r_gmv) * j as f64 / (points - 1) as f64
            };
            out.push(self.point(&anchor.weights));
            anchor = self.target(t, &anchor)?;
        }
        if points > 0 {
            out.push(self.point(&anchor.weights));
        }
        Ok(out)
    }

    fn point(&self, w: &[f64]) -> FrontierPoint {
        let expected_return = self.ret(w);
        let volatility = quad_form(&self.stats.cov, w).max(0.0).sqrt();
        let sharpe = (expected_return - self.rf) / volatility;
        FrontierPoint {
            expected_return,
            volatility,
            sharpe,
        }
    }

    fn result(
        &self,
        req: &PortfolioRequest,
        solution: QpSolution,
        frontier: Vec<FrontierPoint>,
    ) -> PortfolioResult {
        let FrontierPoint {
            expected_return,
            volatility,
            sharpe,
        } = self.point(&solution.weights);
        let mut weights = Vec::with_capacity(req.assets.len());
        let mut active_bounds = Vec::new();
        for (i, (asset, &weight)) in req.assets.iter().zip(&solution.weights).enumerate() {
            let symbol = asset.symbol.clone();
            if let Some(bound) = solution.fixed[i] {
                active_bounds.push(ActiveBound {
                    symbol: symbol.clone(),
                    bound,
                    value: weight,
                });
            }
            let (expected_return, volatility) = (self.stats.mu[i], self.stats.cov[i][i].sqrt());
            weights.push(AssetWeight {
                symbol,
                weight,
                expected_return,
                volatility,
            });
        }
        PortfolioResult {
            objective: req.objective,
            weight_by_symbol: weights
                .iter()
                .map(|a| (a.symbol.clone(), a.weight))
                .collect(),
            weights,
            expected_return,
            volatility,
            sharpe,
            risk_free_rate: self.rf,
            active_bounds,
            iterations: solution.iterations,
            frontier,
        }
    }
}

fn solver_error(e: QpError) -> Result<QpSolution, InputError> {
    match e {
        QpError::Singular | QpError::NoTangency => fail("covariance", ILL_CONDITIONED),
        QpError::IterationLimit(limit) => fail(
            "constraints",
            format!("no convergence in {limit} iterations (degenerate bounds)"),
        ),
    }
}
