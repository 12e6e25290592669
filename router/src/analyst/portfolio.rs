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

#[path = "linalg.rs"]
mod linalg;
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

/// A rejected request: `path` is the JSON path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InputError {
    pub path: String,
    pub message: String,
}

impl InputError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        InputError {
            path: path.into(),
            message: message.into(),
        }
    }
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
    let n = stats.mu.len();
    let risk_free_rate = req.risk_free_rate.unwrap_or(0.0);
    if !risk_free_rate.is_finite() {
        return Err(InputError::new("risk_free_rate", "must be a finite number"));
    }
    let bounds = Bounds::from_request(req.constraints.as_ref(), n)?;
    let points = req.frontier_points.unwrap_or(0);
    if points > MAX_FRONTIER_POINTS {
        return Err(InputError::new(
            "frontier_points",
            format!("at most {MAX_FRONTIER_POINTS} points, got {points}"),
        ));
    }
    let target = match (req.objective, req.target_return) {
        (Objective::TargetReturn, None) => {
            return Err(InputError::new(
                "target_return",
                "required for objective target_return",
            ));
        }
        (Objective::TargetReturn, Some(t)) if !t.is_finite() => {
            return Err(InputError::new("target_return", "must be a finite number"));
        }
        (Objective::TargetReturn, Some(t)) => Some(t),
        (_, Some(_)) => {
            return Err(InputError::new(
                "target_return",
                "only used with objective target_return",
            ));
        }
        (_, None) => None,
    };
    let problem = Problem::new(stats, bounds, risk_free_rate);
    let gmv = problem.min_variance()?;
    let solution = match (req.objective, target) {
        (Objective::TargetReturn, Some(t)) => problem.target(t, &gmv)?,
        (Objective::MaxSharpe, _) => problem.max_sharpe(&gmv)?,
        _ => gmv.clone(),
    };
    let frontier = problem.frontier(points, &gmv)?;
    Ok(problem.result(req, solution, frontier))
}

/// Annual expected returns and covariance, validated (Σ symmetric positive definite).
#[derive(Debug, Clone, PartialEq)]
struct Stats {
    mu: Vec<f64>,
    cov: Vec<Vec<f64>>,
}

fn statistics(req: &PortfolioRequest) -> Result<Stats, InputError> {
    let n = req.assets.len();
    if n == 0 {
        return Err(InputError::new("assets", "at least one asset is required"));
    }
    if n > MAX_ASSETS {
        return Err(InputError::new(
            "assets",
            format!("at most {MAX_ASSETS} assets, got {n}"),
        ));
    }
    let periods = match req.periods_per_year {
        None => DEFAULT_PERIODS_PER_YEAR,
        Some(p) if p.is_finite() && p > 0.0 => p,
        Some(p) => {
            return Err(InputError::new(
                "periods_per_year",
                format!("must be a positive number, got {p}"),
            ));
        }
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut first_series: Option<(usize, usize)> = None;
    let mut returns: Vec<Option<Vec<f64>>> = Vec::with_capacity(n);
    for (i, asset) in req.assets.iter().enumerate() {
        if asset.symbol.trim().is_empty() {
            return Err(InputError::new(
                format!("assets[{i}].symbol"),
                "must not be empty",
            ));
        }
        if let Some(j) = seen.get(asset.symbol.as_str()) {
            return Err(InputError::new(
                format!("assets[{i}].symbol"),
                format!("duplicate symbol {:?} (also assets[{j}])", asset.symbol),
            ));
        }
        seen.insert(&asset.symbol, i);
        if let Some(r) = asset.expected_return
            && !r.is_finite()
        {
            return Err(InputError::new(
                format!("assets[{i}].expected_return"),
                "must be a finite number",
            ));
        }
        let series = match &asset.prices {
            Some(prices) => Some(period_returns(prices, i, &mut first_series)?),
            None => None,
        };
        returns.push(series);
    }
    let mut mu = Vec::with_capacity(n);
    for (i, (asset, series)) in req.assets.iter().zip(&returns).enumerate() {
        let estimated = series.as_ref().map(|r| mean(r) * periods);
        match asset.expected_return.or(estimated) {
            Some(m) => mu.push(m),
            None => {
                return Err(InputError::new(
                    format!("assets[{i}].expected_return"),
                    "missing: give expected_return, or prices to estimate it from",
                ));
            }
        }
    }
    let (cov, estimated) = match &req.covariance {
        Some(rows) => (given_covariance(rows, n)?, false),
        None => {
            let mut all = Vec::with_capacity(n);
            for (i, series) in returns.iter().enumerate() {
                match series {
                    Some(r) => all.push(r.as_slice()),
                    None => {
                        return Err(InputError::new(
                            "covariance",
                            format!(
                                "required unless every asset has prices (assets[{i}] has none)"
                            ),
                        ));
                    }
                }
            }
            (sample_covariance(&all, periods), true)
        }
    };
    if !is_positive_definite(&cov) {
        let hint = if estimated {
            "; estimated from prices, it needs more price periods than assets and no perfectly correlated series"
        } else {
            ""
        };
        return Err(InputError::new(
            "covariance",
            format!("covariance is singular or not positive definite{hint}"),
        ));
    }
    Ok(Stats { mu, cov })
}

/// Simple period returns pᵗ/pᵗ⁻¹ − 1; `first` remembers the first series' asset and length.
fn period_returns(
    prices: &[f64],
    asset: usize,
    first: &mut Option<(usize, usize)>,
) -> Result<Vec<f64>, InputError> {
    let path = format!("assets[{asset}].prices");
    if prices.len() < MIN_PRICES {
        return Err(InputError::new(
            path,
            format!(
                "at least {MIN_PRICES} prices are required, got {}",
                prices.len()
            ),
        ));
    }
    if let Some((k, p)) = prices
        .iter()
        .enumerate()
        .find(|(_, p)| !(p.is_finite() && **p > 0.0))
    {
        return Err(InputError::new(
            format!("{path}[{k}]"),
            format!("price must be a finite positive number, got {p}"),
        ));
    }
    match *first {
        Some((other, len)) if len != prices.len() => {
            return Err(InputError::new(
                path,
                format!(
                    "has {} prices but assets[{other}].prices has {len}; price series must have equal length",
                    prices.len()
                ),
            ));
        }
        Some(_) => {}
        None => *first = Some((asset, prices.len())),
    }
    Ok(prices.windows(2).map(|w| w[1] / w[0] - 1.0).collect())
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample covariance (divisor T − 1) of period returns, annualised by `periods`.
fn sample_covariance(series: &[&[f64]], periods: f64) -> Vec<Vec<f64>> {
    let deviations: Vec<Vec<f64>> = series
        .iter()
        .map(|s| {
            let m = mean(s);
            s.iter().map(|r| r - m).collect()
        })
        .collect();
    deviations
        .iter()
        .map(|a| {
            deviations
                .iter()
                .map(|b| dot(a, b) / (a.len() as f64 - 1.0) * periods)
                .collect()
        })
        .collect()
}

/// Checks shape, finiteness and symmetry; returns the exactly symmetric average of Σ and Σᵀ.
fn given_covariance(rows: &[Vec<f64>], n: usize) -> Result<Vec<Vec<f64>>, InputError> {
    if rows.len() != n {
        return Err(InputError::new(
            "covariance",
            format!(
                "must be {n}×{n} (one row per asset), got {} rows",
                rows.len()
            ),
        ));
    }
    for (i, row) in rows.iter().enumerate() {
        if row.len() != n {
            return Err(InputError::new(
                format!("covariance[{i}]"),
                format!("must have {n} entries, got {}", row.len()),
            ));
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(InputError::new(
                format!("covariance[{i}][{j}]"),
                "must be a finite number",
            ));
        }
    }
    let mut out = rows.to_vec();
    for (i, row) in rows.iter().enumerate() {
        for (j, &a) in row.iter().enumerate().skip(i + 1) {
            let b = rows[j][i];
            // Relative to the entries and to the variances, so a near-zero covariance
            // with rounding noise is not refused.
            let scale = a
                .abs()
                .max(b.abs())
                .max((rows[i][i] * rows[j][j]).abs().sqrt());
            if (a - b).abs() > SYMMETRY_RELATIVE * scale {
                return Err(InputError::new(
                    format!("covariance[{i}][{j}]"),
                    format!(
                        "covariance is not symmetric: {a} here but {b} at covariance[{j}][{i}]"
                    ),
                ));
            }
            let avg = (a + b) / 2.0;
            out[i][j] = avg;
            out[j][i] = avg;
        }
    }
    Ok(out)
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
            if let Some(v) = value
                && !v.is_finite()
            {
                return Err(InputError::new(
                    format!("constraints.{name}"),
                    "must be a finite number",
                ));
            }
        }
        let long_only = c.long_only.unwrap_or(true);
        if long_only
            && let Some(m) = c.min_weight
            && m < 0.0
        {
            return Err(InputError::new(
                "constraints",
                format!(
                    "min_weight {m} is negative but long_only is true (the default); set long_only to false to allow short positions"
                ),
            ));
        }
        let lo = c
            .min_weight
            .unwrap_or(if long_only { 0.0 } else { f64::NEG_INFINITY });
        let hi = c.max_weight.unwrap_or(f64::INFINITY);
        if lo > hi {
            return Err(InputError::new(
                "constraints",
                format!("the lower weight bound {lo} exceeds max_weight {hi}"),
            ));
        }
        let count = n as f64;
        if lo * count > 1.0 + ROUNDING {
            return Err(InputError::new(
                "constraints",
                format!(
                    "min_weight {lo} × {n} assets = {} exceeds 1: no fully invested portfolio fits",
                    lo * count
                ),
            ));
        }
        if hi * count < 1.0 - ROUNDING {
            return Err(InputError::new(
                "constraints",
                format!(
                    "max_weight {hi} × {n} assets = {} is below 1: no fully invested portfolio fits",
                    hi * count
                ),
            ));
        }
        Ok(Bounds { lo, hi })
    }

    /// When the box leaves a single portfolio (equal weights), the bound it sits on, if any.
    fn forced(&self, n: usize) -> Option<Option<BoundSide>> {
        let count = n as f64;
        if self.lo * count >= 1.0 - ROUNDING {
            Some(Some(BoundSide::Lower))
        } else if self.hi * count <= 1.0 + ROUNDING {
            Some(Some(BoundSide::Upper))
        } else if n == 1 {
            Some(None)
        } else {
            None
        }
    }
}

/// A validated problem: statistics, bounds, and the box's extreme-return portfolios.
struct Problem {
    stats: Stats,
    bounds: Bounds,
    risk_free_rate: f64,
    highest: Option<Vec<f64>>,
    lowest: Option<Vec<f64>>,
}

impl Problem {
    fn new(stats: Stats, bounds: Bounds, risk_free_rate: f64) -> Problem {
        let highest = extreme_portfolio(&stats.mu, bounds.lo, bounds.hi, true);
        let lowest = extreme_portfolio(&stats.mu, bounds.lo, bounds.hi, false);
        Problem {
            stats,
            bounds,
            risk_free_rate,
            highest,
            lowest,
        }
    }

    fn qp(&self) -> Qp<'_> {
        Qp {
            cov: &self.stats.cov,
            lo: self.bounds.lo,
            hi: self.bounds.hi,
        }
    }

    fn n(&self) -> usize {
        self.stats.mu.len()
    }

    fn ret(&self, w: &[f64]) -> f64 {
        dot(&self.stats.mu, w)
    }

    /// [R_min, R_max] over the box; infinite ends when the box is open and returns differ.
    fn return_range(&self) -> (f64, f64) {
        let mu = &self.stats.mu;
        if self.bounds.forced(self.n()).is_some() {
            let r = mean(mu);
            return (r, r);
        }
        match (&self.lowest, &self.highest) {
            (Some(lo), Some(hi)) => (self.ret(lo), self.ret(hi)),
            _ if mu.iter().all(|m| *m == mu[0]) => (mu[0], mu[0]),
            _ => (f64::NEG_INFINITY, f64::INFINITY),
        }
    }

    fn min_variance(&self) -> Result<QpSolution, InputError> {
        let n = self.n();
        let equal = vec![1.0 / n as f64; n];
        if let Some(side) = self.bounds.forced(n) {
            return Ok(QpSolution {
                weights: equal,
                fixed: vec![side; n],
                iterations: 0,
            });
        }
        self.qp()
            .solve(Mode::Budget { target: None }, &equal)
            .map_err(solver_error)
    }

    fn target(&self, t: f64, gmv: &QpSolution) -> Result<QpSolution, InputError> {
        let (low, high) = self.return_range();
        let scale = [low, high]
            .iter()
            .filter(|r| r.is_finite())
            .fold(1.0_f64, |m, r| m.max(r.abs()));
        let slack = ROUNDING * scale;
        if t < low - slack || t > high + slack {
            return Err(InputError::new(
                "target_return",
                format!(
                    "target_return {t} is outside the achievable range [{low}, {high}] under the constraints"
                ),
            ));
        }
        if high - low <= slack {
            // Every feasible portfolio earns the same: the target adds nothing.
            return Ok(gmv.clone());
        }
        let t = t.max(low).min(high);
        // Start on the segment from the minimum-variance portfolio to the extreme one on t's
        // side, which keeps most of its active bounds (a warm start).
        let r_gmv = self.ret(&gmv.weights);
        let end = if t >= r_gmv {
            &self.highest
        } else {
            &self.lowest
        };
        let direction: Vec<f64> = match end {
            Some(e) => e.iter().zip(&gmv.weights).map(|(a, b)| a - b).collect(),
            None => {
                let m = mean(&self.stats.mu);
                self.stats.mu.iter().map(|x| x - m).collect()
            }
        };
        let gain = self.ret(&direction);
        let theta = if gain != 0.0 { (t - r_gmv) / gain } else { 0.0 };
        let theta = if end.is_some() {
            theta.clamp(0.0, 1.0)
        } else {
            theta
        };
        let start: Vec<f64> = gmv
            .weights
            .iter()
            .zip(&direction)
            .map(|(w, d)| w + theta * d)
            .collect();
        self.qp()
            .solve(
                Mode::Budget {
                    target: Some((&self.stats.mu, t)),
                },
                &start,
            )
            .map_err(solver_error)
    }

    fn max_sharpe(&self, gmv: &QpSolution) -> Result<QpSolution, InputError> {
        let rf = self.risk_free_rate;
        let (_, high) = self.return_range();
        if high <= rf {
            return Err(InputError::new(
                "risk_free_rate",
                format!(
                    "no feasible portfolio earns more than the risk-free rate {rf}; the highest achievable expected return is {high}"
                ),
            ));
        }
        if self.bounds.forced(self.n()).is_some() {
            return Ok(gmv.clone());
        }
        let r_gmv = self.ret(&gmv.weights);
        let no_tangency = || {
            InputError::new(
                "risk_free_rate",
                format!(
                    "without weight bounds a maximum-Sharpe portfolio exists only when risk_free_rate ({rf}) is below the minimum-variance return {r_gmv}"
                ),
            )
        };
        let start = if r_gmv > rf {
            gmv.weights.as_slice()
        } else {
            self.highest.as_deref().ok_or_else(no_tangency)?
        };
        let excess: Vec<f64> = self.stats.mu.iter().map(|m| m - rf).collect();
        match self.qp().solve(Mode::Tangency { excess: &excess }, start) {
            Err(QpError::NoTangency) => Err(no_tangency()),
            other => other.map_err(solver_error),
        }
    }

    fn frontier(&self, points: usize, gmv: &QpSolution) -> Result<Vec<FrontierPoint>, InputError> {
        if points == 0 {
            return Ok(Vec::new());
        }
        let mu = &self.stats.mu;
        let r_gmv = self.ret(&gmv.weights);
        let (_, high) = self.return_range();
        let top = if high.is_finite() {
            high
        } else {
            let best = mu.iter().fold(f64::NEG_INFINITY, |m, x| m.max(*x));
            let worst = mu.iter().fold(f64::INFINITY, |m, x| m.min(*x));
            if best > r_gmv {
                best
            } else {
                r_gmv + (best - worst)
            }
        };
        let mut out = Vec::with_capacity(points);
        for j in 0..points {
            let solution = if j == 0 {
                gmv.clone()
            } else if j + 1 == points {
                self.target(top, gmv)?
            } else {
                self.target(r_gmv + (top - r_gmv) * j as f64 / (points - 1) as f64, gmv)?
            };
            let (expected_return, volatility, sharpe) = self.summary(&solution.weights);
            out.push(FrontierPoint {
                expected_return,
                volatility,
                sharpe,
            });
        }
        Ok(out)
    }

    /// (expected return, volatility, Sharpe ratio) of `w`.
    fn summary(&self, w: &[f64]) -> (f64, f64, f64) {
        let r = self.ret(w);
        let vol = quad_form(&self.stats.cov, w).max(0.0).sqrt();
        (r, vol, (r - self.risk_free_rate) / vol)
    }

    fn result(
        &self,
        req: &PortfolioRequest,
        solution: QpSolution,
        frontier: Vec<FrontierPoint>,
    ) -> PortfolioResult {
        let (expected_return, volatility, sharpe) = self.summary(&solution.weights);
        let mut weights = Vec::with_capacity(self.n());
        let mut active_bounds = Vec::new();
        for (i, (asset, &w)) in req.assets.iter().zip(&solution.weights).enumerate() {
            weights.push(AssetWeight {
                symbol: asset.symbol.clone(),
                weight: w,
                expected_return: self.stats.mu[i],
                volatility: self.stats.cov[i][i].sqrt(),
            });
            if let Some(bound) = solution.fixed[i] {
                active_bounds.push(ActiveBound {
                    symbol: asset.symbol.clone(),
                    bound,
                    value: w,
                });
            }
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
            risk_free_rate: self.risk_free_rate,
            active_bounds,
            iterations: solution.iterations,
            frontier,
        }
    }
}

fn solver_error(e: QpError) -> InputError {
    match e {
        QpError::Singular | QpError::NoTangency => InputError::new(
            "covariance",
            "covariance is too ill-conditioned for the optimiser (a KKT system was singular)",
        ),
        QpError::IterationLimit(limit) => InputError::new(
            "constraints",
            format!(
                "the optimiser did not converge within {limit} iterations (degenerate constraints)"
            ),
        ),
    }
}
