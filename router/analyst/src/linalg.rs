//! Dense linear algebra and the active-set QP behind `portfolio`. It owns the numerics only:
//! no request types, no error wording, never a panic (singular systems come back as `None`).
//!
//! n ≤ 100 assets, so plain `Vec` rows and O(n³) eliminations are the right tool. Every loop
//! runs in index order and ties go to the lowest index, so results are bit-for-bit repeatable.
//!
//! The solver is the primal active-set method for a strictly convex QP (Nocedal & Wright,
//! *Numerical Optimization*, algorithm 16.3) with box bounds as the only inequalities. The
//! working set pins some weights to a bound; each iteration solves the KKT system of the face
//! (free variables plus equality multipliers, Gaussian elimination with partial pivoting, then
//! iterative refinement with doubled-precision residuals), steps from the feasible iterate
//! towards the face optimum, adds the first blocking bound, or — at the face optimum — drops the
//! bound whose multiplier is most wrong-signed. A bound that would make the face singular never
//! blocks (its rate is rounding noise), and a zero-length step switches the drop rule to lowest
//! index (Bland) until the iterate moves again, which rules out cycling in practice.

use std::cmp::Ordering;

use super::BoundSide;

/// Cholesky pivots must keep this share of an asset's own variance: below it the asset is a
/// linear combination of the others to within rounding (perfect correlation).
const PD_RELATIVE: f64 = 1e-12;
/// Elimination pivots smaller than this share of the largest entry mean a singular system.
const PIVOT_RELATIVE: f64 = 1e-14;
/// Refinement steps after the first solve (each costs O(k²) against the O(k³) factorisation).
const REFINEMENTS: usize = 3;
/// Multipliers are wrong-signed only beyond this share of the gradient's magnitude.
const MULTIPLIER_RELATIVE: f64 = 1e-12;

pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(super) fn mat_vec(m: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
    m.iter().map(|row| dot(row, v)).collect()
}

pub(super) fn quad_form(m: &[Vec<f64>], v: &[f64]) -> f64 {
    dot(v, &mat_vec(m, v))
}

/// Cholesky test for a symmetric matrix (only the lower triangle is read).
pub(super) fn is_positive_definite(m: &[Vec<f64>]) -> bool {
    let mut l: Vec<Vec<f64>> = Vec::with_capacity(m.len());
    for (j, row) in m.iter().enumerate() {
        let mut l_row = vec![0.0; j + 1];
        for (k, l_k) in l.iter().enumerate() {
            let s = row[k] - dot(&l_row[..k], &l_k[..k]);
            l_row[k] = s / l_k[k];
        }
        let d = row[j] - dot(&l_row[..j], &l_row[..j]);
        // Written so that NaN fails too.
        if !(row[j] > 0.0 && d > PD_RELATIVE * row[j]) {
            return false;
        }
        l_row[j] = d.sqrt();
        l.push(l_row);
    }
    true
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting, then iterative refinement
/// with residuals in doubled precision, so the answer is accurate to the last bit or so.
pub(super) fn solve_linear(a: &[Vec<f64>], b: &[f64]) -> Option<Vec<f64>> {
    let lu = Lu::factor(a)?;
    let mut x = lu.solve(b);
    for _ in 0..REFINEMENTS {
        let residual: Vec<f64> = a
            .iter()
            .zip(b)
            .map(|(row, bi)| residual(*bi, row, &x))
            .collect();
        if residual.iter().all(|r| *r == 0.0) {
            break;
        }
        let mut moved = false;
        for (xi, di) in x.iter_mut().zip(lu.solve(&residual)) {
            moved |= *xi + di != *xi;
            *xi += di;
        }
        if !moved {
            break;
        }
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// b − rowᵀx, with error-free products (FMA) and sums (Knuth's TwoSum) carried alongside.
fn residual(b: f64, row: &[f64], x: &[f64]) -> f64 {
    let (mut sum, mut carry) = (b, 0.0);
    for (r, xi) in row.iter().zip(x) {
        let p = -r * xi;
        let p_err = (-r).mul_add(*xi, -p);
        let s = sum + p;
        let z = s - sum;
        carry += (sum - (s - z)) + (p - z) + p_err;
        sum = s;
    }
    sum + carry
}

/// Packed LU factors (unit lower triangle below the diagonal) and the row order.
struct Lu {
    rows: Vec<Vec<f64>>,
    perm: Vec<usize>,
}

impl Lu {
    fn factor(a: &[Vec<f64>]) -> Option<Lu> {
        let n = a.len();
        let mut rows = a.to_vec();
        let mut perm: Vec<usize> = (0..n).collect();
        let scale = rows.iter().flatten().fold(0.0_f64, |m, v| m.max(v.abs()));
        if !(scale.is_finite() && scale > 0.0) {
            return None;
        }
        for k in 0..n {
            let mut best = k;
            for i in k + 1..n {
                if rows[i][k].abs() > rows[best][k].abs() {
                    best = i;
                }
            }
            // Not strictly above the threshold, or NaN.
            if rows[best][k].abs().partial_cmp(&(PIVOT_RELATIVE * scale)) != Some(Ordering::Greater)
            {
                return None;
            }
            rows.swap(k, best);
            perm.swap(k, best);
            let (top, bottom) = rows.split_at_mut(k + 1);
            let pivot = &top[k];
            for row in bottom.iter_mut() {
                let f = row[k] / pivot[k];
                row[k] = f;
                for (r, p) in row[k + 1..].iter_mut().zip(&pivot[k + 1..]) {
                    *r -= f * p;
                }
            }
        }
        Some(Lu { rows, perm })
    }

    fn solve(&self, b: &[f64]) -> Vec<f64> {
        let mut x: Vec<f64> = self.perm.iter().map(|&p| b[p]).collect();
        for i in 0..x.len() {
            let s = dot(&self.rows[i][..i], &x[..i]);
            x[i] -= s;
        }
        for i in (0..x.len()).rev() {
            let s = dot(&self.rows[i][i + 1..], &x[i + 1..]);
            x[i] = (x[i] - s) / self.rows[i][i];
        }
        x
    }
}

/// Which problem a face solve answers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode<'a> {
    /// Minimise ½ wᵀΣw s.t. Σw = 1 and, with a target, μᵀw = t.
    Budget { target: Option<(&'a [f64], f64)> },
    /// Maximise Sharpe through the homogenised problem: minimise ½ yᵀΣy s.t. (μ − r_f)ᵀy = 1,
    /// with κ = Σy and the bounds scaled to lo·κ ≤ y ≤ hi·κ; the portfolio is w = y/κ.
    Tangency { excess: &'a [f64] },
}

/// Box-bounded problem data; `lo` may be −∞ and `hi` +∞ (the bounds are the same for every asset).
#[derive(Debug, Clone, Copy)]
pub(super) struct Qp<'a> {
    pub cov: &'a [Vec<f64>],
    pub lo: f64,
    pub hi: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct QpSolution {
    /// Portfolio weights summing to one.
    pub weights: Vec<f64>,
    /// The final working set: the bound each weight is pinned to, if any.
    pub fixed: Vec<Option<BoundSide>>,
    pub iterations: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QpError {
    /// A KKT system was singular to working precision.
    Singular,
    /// The iteration budget ran out (degenerate constraints).
    IterationLimit(usize),
    /// Tangency only: the optimum has κ ≤ 0, i.e. no finite portfolio attains the supremum.
    NoTangency,
}

/// An equality row of a face: (coefficients on v, coefficient on κ, right-hand side).
type EqualityRow<'a> = (&'a [f64], f64, f64);

/// The optimum of one face, with the gradient of the Lagrangian (zero on free variables, the
/// bound multiplier on pinned ones: ≥ 0 is right at a lower bound, ≤ 0 at an upper one).
struct Face {
    point: Vec<f64>,
    gradient: Vec<f64>,
    scale: f64,
}

impl Qp<'_> {
    fn bound(&self, side: BoundSide) -> f64 {
        match side {
            BoundSide::Lower => self.lo,
            BoundSide::Upper => self.hi,
        }
    }

    /// Solves from `start` (weights summing to one, inside the bounds, and on the target when
    /// there is one). The initial working set is every bound `start` touches, or empty if that
    /// face is singular.
    pub(super) fn solve(&self, mode: Mode<'_>, start: &[f64]) -> Result<QpSolution, QpError> {
        let n = self.cov.len();
        let limit = 10 * n + 50;
        let tangency = matches!(mode, Mode::Tangency { .. });
        let mut v: Vec<f64> = match mode {
            Mode::Budget { .. } => start.to_vec(),
            Mode::Tangency { excess } => {
                let r = dot(excess, start);
                start.iter().map(|w| w / r).collect()
            }
        };
        let mut fixed: Vec<Option<BoundSide>> = start
            .iter()
            .map(|&w| {
                if w == self.lo {
                    Some(BoundSide::Lower)
                } else if w == self.hi {
                    Some(BoundSide::Upper)
                } else {
                    None
                }
            })
            .collect();
        let mut may_reset = fixed.iter().any(Option::is_some);
        let mut stalled = false;
        for iteration in 1..=limit {
            let face = match self.face(mode, &fixed) {
                Some(face) => face,
                None if may_reset => {
                    fixed.fill(None);
                    may_reset = false;
                    continue;
                }
                None => return Err(QpError::Singular),
            };
            may_reset = false;
            let step: Vec<f64> = face.point.iter().zip(&v).map(|(t, c)| t - c).collect();
            if let Some((alpha, i, side)) = self.blocking(&v, &step, &fixed, mode) {
                for (vi, si) in v.iter_mut().zip(&step) {
                    *vi += alpha * si;
                }
                if !tangency {
                    v[i] = self.bound(side);
                }
                fixed[i] = Some(side);
                stalled = alpha == 0.0;
                continue;
            }
            if step.iter().any(|s| *s != 0.0) {
                stalled = false;
            }
            v = face.point;
            let tol = MULTIPLIER_RELATIVE * face.scale;
            let mut drop: Option<(usize, f64)> = None;
            for (i, (side, g)) in fixed.iter().zip(&face.gradient).enumerate() {
                let violation = match side {
                    Some(BoundSide::Lower) => -g,
                    Some(BoundSide::Upper) => *g,
                    None => continue,
                };
                if violation > tol && drop.is_none_or(|(_, worst)| violation > worst) {
                    drop = Some((i, violation));
                    if stalled {
                        break;
                    }
                }
            }
            match drop {
                Some((i, _)) => fixed[i] = None,
                None => return self.finish(v, fixed, iteration, tangency),
            }
        }
        Err(QpError::IterationLimit(limit))
    }

    /// Ratio test: the first bound (lowest index on ties) crossed before the full step.
    fn blocking(
        &self,
        v: &[f64],
        step: &[f64],
        fixed: &[Option<BoundSide>],
        mode: Mode<'_>,
    ) -> Option<(f64, usize, BoundSide)> {
        let (kappa, d_kappa) = if matches!(mode, Mode::Tangency { .. }) {
            (v.iter().sum(), step.iter().sum())
        } else {
            (1.0, 0.0)
        };
        let mut best: Option<(f64, usize, BoundSide)> = None;
        let mut consider = |slack: f64, rate: f64, i: usize, side: BoundSide| {
            if rate < 0.0 {
                let alpha = slack.max(0.0) / -rate;
                if alpha < best.map_or(1.0, |b| b.0) {
                    best = Some((alpha, i, side));
                }
            }
        };
        for (i, ((vi, si), f)) in v.iter().zip(step).zip(fixed).enumerate() {
            // A bound whose addition would make the face singular is dependent on the working
            // set, so in exact arithmetic its rate is zero: what is left is rounding noise.
            if f.is_some() || !self.stays_regular(fixed, i, mode) {
                continue;
            }
            if self.lo.is_finite() {
                consider(
                    vi - self.lo * kappa,
                    si - self.lo * d_kappa,
                    i,
                    BoundSide::Lower,
                );
            }
            if self.hi.is_finite() {
                consider(
                    self.hi * kappa - vi,
                    self.hi * d_kappa - si,
                    i,
                    BoundSide::Upper,
                );
            }
        }
        best
    }

    /// Whether pinning weight `i` as well keeps the face's KKT system regular: enough free
    /// weights for the equality rows, and free returns that still differ under a target.
    fn stays_regular(&self, fixed: &[Option<BoundSide>], i: usize, mode: Mode<'_>) -> bool {
        let mut free = (0..fixed.len()).filter(|&j| j != i && fixed[j].is_none());
        match mode {
            Mode::Budget { target: None } | Mode::Tangency { .. } => free.next().is_some(),
            Mode::Budget {
                target: Some((mu, _)),
            } => match free.next() {
                Some(first) => free.any(|j| mu[j] != mu[first]),
                None => false,
            },
        }
    }

    /// Solves the face's KKT system. Unknowns: the free entries of v, then (tangency) κ, then
    /// one multiplier per equality row. Pinned entries are their bound (budget) or bound·κ
    /// (tangency, where the row Σy − κ = 0 ties κ to y).
    fn face(&self, mode: Mode<'_>, fixed: &[Option<BoundSide>]) -> Option<Face> {
        let n = fixed.len();
        let free: Vec<usize> = (0..n).filter(|&i| fixed[i].is_none()).collect();
        let pinned: Vec<f64> = fixed
            .iter()
            .map(|f| f.map_or(0.0, |s| self.bound(s)))
            .collect();
        let ones = vec![1.0; n];
        let (rows, scaled): (Vec<EqualityRow<'_>>, bool) = match mode {
            Mode::Budget { target: None } => (vec![(&ones, 0.0, 1.0)], false),
            Mode::Budget {
                target: Some((mu, t)),
            } => (vec![(&ones, 0.0, 1.0), (mu, 0.0, t)], false),
            Mode::Tangency { excess } => (vec![(excess, 0.0, 1.0), (&ones, -1.0, 0.0)], true),
        };
        let k = free.len() + usize::from(scaled);
        let size = k + rows.len();
        let pinned_cov = mat_vec(self.cov, &pinned);
        let mut a = vec![vec![0.0; size]; size];
        let mut b = vec![0.0; size];
        for (r, &i) in free.iter().enumerate() {
            for (c, &j) in free.iter().enumerate() {
                a[r][c] = self.cov[i][j];
            }
            if scaled {
                (a[r][k - 1], a[k - 1][r]) = (pinned_cov[i], pinned_cov[i]);
            } else {
                b[r] = -pinned_cov[i];
            }
        }
        if scaled {
            a[k - 1][k - 1] = dot(&pinned, &pinned_cov);
        }
        for (e, &(coef, on_kappa, rhs)) in rows.iter().enumerate() {
            for (r, &i) in free.iter().enumerate() {
                (a[r][k + e], a[k + e][r]) = (coef[i], coef[i]);
            }
            let on_pinned = dot(coef, &pinned);
            if scaled {
                let c = on_pinned + on_kappa;
                (a[k - 1][k + e], a[k + e][k - 1], b[k + e]) = (c, c, rhs);
            } else {
                b[k + e] = rhs - on_pinned;
            }
        }
        let x = solve_linear(&a, &b)?;
        let kappa = if scaled { x[k - 1] } else { 1.0 };
        let mut point: Vec<f64> = pinned.iter().map(|p| p * kappa).collect();
        for (&i, xi) in free.iter().zip(&x) {
            point[i] = *xi;
        }
        let terms: Vec<(f64, &[f64])> = rows
            .iter()
            .zip(&x[k..])
            .map(|(&(coef, _, _), m)| (*m, coef))
            .collect();
        Some(self.gradient(point, &terms))
    }

    /// g = Σv + Σ_r η_r·row_r, with the magnitude of its terms for the multiplier tolerance.
    fn gradient(&self, point: Vec<f64>, terms: &[(f64, &[f64])]) -> Face {
        let mut scale = 0.0_f64;
        let gradient = self
            .cov
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let mut g = dot(row, &point);
                let mut size: f64 = row.iter().zip(&point).map(|(c, p)| (c * p).abs()).sum();
                for (m, r) in terms {
                    g += m * r[i];
                    size += (m * r[i]).abs();
                }
                scale = scale.max(size);
                g
            })
            .collect();
        Face {
            point,
            gradient,
            scale,
        }
    }

    /// Maps y back to weights, pins bound weights exactly, and puts the rounding residual of the
    /// budget on the largest free weight.
    fn finish(
        &self,
        v: Vec<f64>,
        fixed: Vec<Option<BoundSide>>,
        iterations: usize,
        tangency: bool,
    ) -> Result<QpSolution, QpError> {
        let mut weights = if tangency {
            let kappa: f64 = v.iter().sum();
            let w: Vec<f64> = v.iter().map(|y| y / kappa).collect();
            if !(kappa > 0.0 && w.iter().all(|x| x.is_finite())) {
                return Err(QpError::NoTangency);
            }
            w
        } else {
            v
        };
        for (w, f) in weights.iter_mut().zip(&fixed) {
            *w = match f {
                Some(side) => self.bound(*side),
                // Rounding can leave a free weight a hair outside its box.
                None => w.max(self.lo).min(self.hi),
            };
        }
        let mut largest: Option<usize> = None;
        for (i, f) in fixed.iter().enumerate() {
            if f.is_none() && largest.is_none_or(|l| weights[i].abs() > weights[l].abs()) {
                largest = Some(i);
            }
        }
        if let Some(l) = largest {
            let residual = 1.0 - weights.iter().sum::<f64>();
            weights[l] += residual;
        }
        Ok(QpSolution {
            weights,
            fixed,
            iterations,
        })
    }
}

/// The fully invested portfolio with the highest (or lowest) μᵀw inside the box, by the greedy
/// fractional-knapsack rule (exact for this LP); `None` when the box is open on both sides.
pub(super) fn extreme_portfolio(mu: &[f64], lo: f64, hi: f64, highest: bool) -> Option<Vec<f64>> {
    let n = mu.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let by_return = if highest {
            mu[b].total_cmp(&mu[a])
        } else {
            mu[a].total_cmp(&mu[b])
        };
        by_return.then(a.cmp(&b))
    });
    if lo.is_finite() {
        // Everyone at the floor, the rest of the budget to the best assets first.
        let mut w = vec![lo; n];
        let mut left = 1.0 - lo * n as f64;
        for &i in &order {
            let add = left.min(hi - lo).max(0.0);
            w[i] += add;
            left -= add;
        }
        Some(w)
    } else if hi.is_finite() {
        // Everyone at the ceiling, the excess taken from the worst assets first.
        let mut w = vec![hi; n];
        let mut excess = hi * n as f64 - 1.0;
        for &i in order.iter().rev() {
            let cut = excess.min(hi - lo).max(0.0);
            w[i] -= cut;
            excess -= cut;
        }
        Some(w)
    } else {
        None
    }
}
