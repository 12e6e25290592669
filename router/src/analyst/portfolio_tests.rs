//! Tests for the portfolio optimiser against analytic answers: closed forms computed here with an
//! independent 3×3 adjugate inverse, hand-computed price statistics, and an independent KKT check.

use super::*;

const TIGHT: f64 = 1e-12;

fn assets(mu: &[f64]) -> Vec<Asset> {
    mu.iter()
        .enumerate()
        .map(|(i, m)| Asset {
            symbol: format!("A{i}"),
            expected_return: Some(*m),
            prices: None,
        })
        .collect()
}

fn request(mu: &[f64], cov: &[Vec<f64>], objective: Objective) -> PortfolioRequest {
    PortfolioRequest {
        assets: assets(mu),
        covariance: Some(cov.to_vec()),
        objective,
        target_return: None,
        risk_free_rate: None,
        constraints: None,
        periods_per_year: None,
        frontier_points: None,
    }
}

fn with_bounds(
    mut req: PortfolioRequest,
    long_only: bool,
    min: Option<f64>,
    max: Option<f64>,
) -> PortfolioRequest {
    req.constraints = Some(Constraints {
        long_only: Some(long_only),
        min_weight: min,
        max_weight: max,
    });
    req
}

fn unbounded(req: PortfolioRequest) -> PortfolioRequest {
    with_bounds(req, false, None, None)
}

/// σ = (0.15, 0.20, 0.25), ρ₁₂ = 0.9, ρ₁₃ = 0.3, ρ₂₃ = 0.4: unconstrained GMV shorts asset 1.
fn cov3() -> Vec<Vec<f64>> {
    vec![
        vec![0.0225, 0.027, 0.01125],
        vec![0.027, 0.04, 0.02],
        vec![0.01125, 0.02, 0.0625],
    ]
}

const MU3: [f64; 3] = [0.08, 0.12, 0.10];

/// Adjugate / determinant, independent of the solver's elimination.
fn inverse3(m: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let c = |r: usize, k: usize| {
        let rows: Vec<usize> = (0..3).filter(|&x| x != r).collect();
        let cols: Vec<usize> = (0..3).filter(|&x| x != k).collect();
        let minor =
            m[rows[0]][cols[0]] * m[rows[1]][cols[1]] - m[rows[0]][cols[1]] * m[rows[1]][cols[0]];
        if (r + k) % 2 == 0 { minor } else { -minor }
    };
    let det: f64 = (0..3).map(|k| m[0][k] * c(0, k)).sum();
    let inv: Vec<Vec<f64>> = (0..3)
        .map(|i| (0..3).map(|j| c(j, i) / det).collect())
        .collect();
    for i in 0..3 {
        for j in 0..3 {
            let p: f64 = (0..3).map(|k| m[i][k] * inv[k][j]).sum();
            assert!(
                (p - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12,
                "inverse check"
            );
        }
    }
    inv
}

fn mv(m: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
    m.iter()
        .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
        .collect()
}

fn normalised(v: Vec<f64>) -> Vec<f64> {
    let s: f64 = v.iter().sum();
    v.into_iter().map(|x| x / s).collect()
}

fn weights(r: &PortfolioResult) -> Vec<f64> {
    r.weights.iter().map(|a| a.weight).collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "index {i}: got {g}, want {w} (tol {tol})\n{got:?}\n{want:?}"
        );
    }
}

fn solve(req: &PortfolioRequest) -> PortfolioResult {
    let r = optimise(req).unwrap();
    let sum: f64 = weights(&r).iter().sum();
    assert!((sum - 1.0).abs() <= TIGHT, "weights sum to {sum}");
    let c = req
        .covariance
        .clone()
        .unwrap_or_else(|| statistics(req).unwrap().cov);
    let w = weights(&r);
    let vol = dot(&w, &mv(&c, &w)).sqrt();
    assert!((r.volatility - vol).abs() <= TIGHT);
    assert!((r.sharpe - (r.expected_return - r.risk_free_rate) / vol).abs() <= 1e-10);
    r
}

fn rejected(req: &PortfolioRequest) -> InputError {
    optimise(req).unwrap_err()
}

#[test]
fn two_asset_min_variance_matches_closed_form() {
    // σ₁² = 0.04, σ₂² = 0.09, σ₁₂ = 0.015 ⇒ w₁ = (0.09 − 0.015)/(0.04 + 0.09 − 0.03) = 0.75.
    let cov = vec![vec![0.04, 0.015], vec![0.015, 0.09]];
    let r = solve(&request(&[0.1, 0.2], &cov, Objective::MinVariance));
    assert_close(&weights(&r), &[0.75, 0.25], TIGHT);
    // 0.75²·0.04 + 0.25²·0.09 + 2·0.75·0.25·0.015 = 0.03375.
    assert!((r.volatility - 0.03375_f64.sqrt()).abs() <= TIGHT);
    assert!((r.expected_return - 0.125).abs() <= TIGHT);
    assert!(r.active_bounds.is_empty());
    assert_eq!(r.weight_by_symbol["A0"], r.weights[0].weight);
}

#[test]
fn unconstrained_min_variance_is_inverse_times_ones() {
    let inv = inverse3(&cov3());
    let want = normalised(mv(&inv, &[1.0, 1.0, 1.0]));
    // Hand check of the shape: long asset 0, short asset 1 (≈ 1.4176, −0.6412, 0.2236).
    assert!(want[0] > 1.4 && want[1] < -0.6);
    let r = solve(&unbounded(request(&MU3, &cov3(), Objective::MinVariance)));
    assert_close(&weights(&r), &want, TIGHT);
}

#[test]
fn unconstrained_max_sharpe_is_inverse_times_excess() {
    let rf = 0.02;
    let inv = inverse3(&cov3());
    let excess: Vec<f64> = MU3.iter().map(|m| m - rf).collect();
    let raw = mv(&inv, &excess);
    let want = normalised(raw.clone());
    let mut req = unbounded(request(&MU3, &cov3(), Objective::MaxSharpe));
    req.risk_free_rate = Some(rf);
    let r = solve(&req);
    assert_close(&weights(&r), &want, TIGHT);
    // The tangency's Sharpe ratio is √((μ − r_f)ᵀΣ⁻¹(μ − r_f)).
    let best = dot(&excess, &raw).sqrt();
    assert!((r.sharpe - best).abs() <= 1e-12, "{} vs {best}", r.sharpe);
}

#[test]
fn unconstrained_target_return_matches_two_fund_formula() {
    let t = 0.11;
    let inv = inverse3(&cov3());
    let (ones, mu) = (mv(&inv, &[1.0; 3]), mv(&inv, &MU3));
    let a: f64 = ones.iter().sum();
    let b: f64 = mu.iter().sum();
    let c = dot(&MU3, &mu);
    let d = a * c - b * b;
    let want: Vec<f64> = ones
        .iter()
        .zip(&mu)
        .map(|(o, m)| ((c - t * b) * o + (t * a - b) * m) / d)
        .collect();
    let mut req = unbounded(request(&MU3, &cov3(), Objective::TargetReturn));
    req.target_return = Some(t);
    let r = solve(&req);
    assert_close(&weights(&r), &want, 1e-11);
    assert!((r.expected_return - t).abs() <= TIGHT);
}

#[test]
fn long_only_zeroes_the_asset_the_unconstrained_solution_shorts() {
    let r = solve(&request(&MU3, &cov3(), Objective::MinVariance));
    // Asset 1 out; two-asset closed form on assets 0 and 2:
    // w₀ = (0.0625 − 0.01125)/(0.0225 + 0.0625 − 2·0.01125) = 0.82.
    assert_close(&weights(&r), &[0.82, 0.0, 0.18], TIGHT);
    assert_eq!(
        r.active_bounds,
        vec![ActiveBound {
            symbol: "A1".into(),
            bound: BoundSide::Lower,
            value: 0.0
        }]
    );
    assert_kkt(&cov3(), &MU3, 0.0, f64::INFINITY, &r, Kkt::Budget);
}

/// σ² = (0.01, 0.04, 0.09), uncorrelated: unconstrained GMV ∝ (100, 25, 11.1) = (0.735, 0.184, 0.082).
fn diag3() -> Vec<Vec<f64>> {
    vec![
        vec![0.01, 0.0, 0.0],
        vec![0.0, 0.04, 0.0],
        vec![0.0, 0.0, 0.09],
    ]
}

#[test]
fn max_weight_binds_on_the_dominant_asset() {
    let r = solve(&with_bounds(
        request(&MU3, &diag3(), Objective::MinVariance),
        true,
        None,
        Some(0.45),
    ));
    // w₀ = 0.45; the rest split 0.55 in inverse-variance proportion: 0.55·0.09/0.13, 0.55·0.04/0.13.
    assert_close(
        &weights(&r),
        &[0.45, 0.55 * 0.09 / 0.13, 0.55 * 0.04 / 0.13],
        TIGHT,
    );
    assert_eq!(r.active_bounds.len(), 1);
    assert_eq!(r.active_bounds[0].bound, BoundSide::Upper);
    assert_kkt(&diag3(), &MU3, 0.0, 0.45, &r, Kkt::Budget);
}

#[test]
fn max_weight_binds_on_the_best_sharpe_assets() {
    // Unconstrained tangency ∝ μᵢ/σᵢ² = (8, 3, 1.1) ⇒ (0.66, 0.25, 0.09). Capping at 0.4 moves
    // the surplus to asset 1, which then binds too: the optimum is the vertex (0.4, 0.4, 0.2).
    let req = with_bounds(
        request(&MU3, &diag3(), Objective::MaxSharpe),
        true,
        None,
        Some(0.4),
    );
    let r = solve(&req);
    assert_close(&weights(&r), &[0.4, 0.4, 0.2], TIGHT);
    let pinned: Vec<(&str, BoundSide)> = r
        .active_bounds
        .iter()
        .map(|b| (b.symbol.as_str(), b.bound))
        .collect();
    assert_eq!(
        pinned,
        vec![("A0", BoundSide::Upper), ("A1", BoundSide::Upper)]
    );
    assert_kkt(&diag3(), &MU3, 0.0, 0.4, &r, Kkt::Sharpe(0.0));
    // Brute force over the feasible triangle on a 0.001 grid agrees.
    let mut scan = f64::MIN;
    for a in 0..=400 {
        for b in 0..=400 {
            let w = [
                a as f64 / 1000.0,
                b as f64 / 1000.0,
                1.0 - (a + b) as f64 / 1000.0,
            ];
            if (0.0..=0.4).contains(&w[2]) {
                let var = 0.01 * w[0] * w[0] + 0.04 * w[1] * w[1] + 0.09 * w[2] * w[2];
                scan = scan.max(dot(&w, &MU3) / var.sqrt());
            }
        }
    }
    assert!(r.sharpe >= scan - 1e-15, "{} < {scan}", r.sharpe);
}

#[test]
fn min_weight_binds() {
    let r = solve(&with_bounds(
        request(&MU3, &diag3(), Objective::MinVariance),
        true,
        Some(0.1),
        None,
    ));
    // w₂ = 0.1 (its free value 0.082 is below); the other 0.9 split 0.04 : 0.01 ⇒ 0.72, 0.18.
    assert_close(&weights(&r), &[0.72, 0.18, 0.1], TIGHT);
    assert_eq!(r.active_bounds[0].symbol, "A2");
    assert_eq!(r.active_bounds[0].bound, BoundSide::Lower);
}

#[test]
fn bounds_that_leave_one_portfolio_return_it() {
    let r = solve(&with_bounds(
        request(&MU3, &cov3(), Objective::MaxSharpe),
        true,
        Some(1.0 / 3.0),
        None,
    ));
    assert_close(&weights(&r), &[1.0 / 3.0; 3], TIGHT);
    assert_eq!(r.iterations, 0);
    let single = solve(&request(&[0.07], &[vec![0.04]], Objective::MaxSharpe));
    assert_eq!(weights(&single), vec![1.0]);
    assert!((single.sharpe - 0.35).abs() <= TIGHT);
}

#[test]
fn target_return_is_exact_and_on_the_frontier() {
    let gmv = solve(&request(&MU3, &cov3(), Objective::MinVariance));
    for t in [0.08, 0.09, 0.1, 0.115, 0.12] {
        let mut req = request(&MU3, &cov3(), Objective::TargetReturn);
        req.target_return = Some(t);
        let r = solve(&req);
        assert!(
            (r.expected_return - t).abs() <= TIGHT,
            "{} vs {t}",
            r.expected_return
        );
        assert!(r.volatility >= gmv.volatility);
        match t {
            // The ends of the long-only range are single portfolios: all in one asset.
            0.08 => assert_close(&weights(&r), &[1.0, 0.0, 0.0], TIGHT),
            0.12 => assert_close(&weights(&r), &[0.0, 1.0, 0.0], TIGHT),
            _ => _ = assert_kkt(&cov3(), &MU3, 0.0, f64::INFINITY, &r, Kkt::Target(t)),
        }
    }
}

#[test]
fn frontier_runs_from_min_variance_to_max_return_with_rising_volatility() {
    let mu = [0.06, 0.09, 0.12, 0.15];
    let cov = random_cov(4, 7);
    let mut req = request(&mu, &cov, Objective::MaxSharpe);
    req.frontier_points = Some(12);
    let r = solve(&req);
    let gmv = solve(&request(&mu, &cov, Objective::MinVariance));
    assert_eq!(r.frontier.len(), 12);
    assert!((r.frontier[0].volatility - gmv.volatility).abs() <= TIGHT);
    assert!((r.frontier[11].expected_return - 0.15).abs() <= TIGHT);
    for pair in r.frontier.windows(2) {
        assert!(pair[1].expected_return > pair[0].expected_return);
        assert!(pair[1].volatility > pair[0].volatility, "{pair:?}");
    }
    assert!(r.frontier.iter().all(|p| p.sharpe <= r.sharpe + 1e-12));
}

#[test]
fn infeasible_constraints_are_rejected_at_constraints() {
    let base = || {
        request(
            &[0.1, 0.2, 0.15, 0.05],
            &random_cov(4, 3),
            Objective::MinVariance,
        )
    };
    let cases = [
        (with_bounds(base(), true, Some(0.3), None), "exceeds 1"),
        (with_bounds(base(), true, None, Some(0.2)), "is below 1"),
        (
            with_bounds(base(), false, Some(0.3), Some(0.2)),
            "exceeds max_weight",
        ),
        (with_bounds(base(), true, Some(-0.1), None), "long_only"),
        (
            with_bounds(base(), true, None, Some(-0.1)),
            "exceeds max_weight",
        ),
    ];
    for (req, needle) in cases {
        let e = rejected(&req);
        assert_eq!(e.path, "constraints");
        assert!(e.message.contains(needle), "{e}");
    }
    assert_eq!(
        rejected(&with_bounds(base(), true, Some(f64::NAN), None)).path,
        "constraints.min_weight"
    );
}

#[test]
fn target_outside_achievable_range_names_the_range() {
    let mut req = with_bounds(
        request(&MU3, &cov3(), Objective::TargetReturn),
        true,
        None,
        Some(0.5),
    );
    req.target_return = Some(0.13);
    let e = rejected(&req);
    // Long-only, ≤ 0.5 each: best 0.5·0.12 + 0.5·0.10 = 0.11, worst 0.5·0.08 + 0.5·0.10 = 0.09.
    assert_eq!(e.path, "target_return");
    assert!(e.message.contains("[0.09, 0.11]"), "{e}");
    req.target_return = None;
    assert_eq!(rejected(&req).path, "target_return");
    let mut other = request(&MU3, &cov3(), Objective::MinVariance);
    other.target_return = Some(0.1);
    assert_eq!(rejected(&other).path, "target_return");
}

#[test]
fn risk_free_rate_above_every_return_is_rejected() {
    let mut req = request(&MU3, &cov3(), Objective::MaxSharpe);
    req.risk_free_rate = Some(0.12);
    assert_eq!(rejected(&req).path, "risk_free_rate");
    // Unbounded: the tangency exists only below the GMV return (≈ 0.0527 here).
    let mut free = unbounded(request(&MU3, &cov3(), Objective::MaxSharpe));
    free.risk_free_rate = Some(0.06);
    let e = rejected(&free);
    assert_eq!(e.path, "risk_free_rate");
    assert!(e.message.contains("minimum-variance return"), "{e}");
}

#[test]
fn bad_covariances_are_rejected_with_their_path() {
    let mu = [0.1, 0.2, 0.15];
    let mut cases: Vec<(Vec<Vec<f64>>, &str)> = vec![
        (
            vec![vec![0.04, 0.0, 0.0], vec![0.0, 0.04, 0.0]],
            "covariance",
        ),
        (
            vec![vec![0.04, 0.0, 0.0], vec![0.0, 0.04], vec![0.0, 0.0, 0.04]],
            "covariance[1]",
        ),
        (
            vec![
                vec![0.04, 0.0, 0.01],
                vec![0.0, 0.04, 0.0],
                vec![0.0, 0.0, 0.04],
            ],
            "covariance[0][2]",
        ),
        (
            vec![
                vec![0.04, 0.0, 0.0],
                vec![0.0, f64::INFINITY, 0.0],
                vec![0.0, 0.0, 0.04],
            ],
            "covariance[1][1]",
        ),
    ];
    // Perfectly correlated assets 0 and 1 (σ 0.2 and 0.3, ρ = 1): singular.
    cases.push((
        vec![
            vec![0.04, 0.06, 0.0],
            vec![0.06, 0.09, 0.0],
            vec![0.0, 0.0, 0.04],
        ],
        "covariance",
    ));
    for (cov, path) in cases {
        assert_eq!(
            rejected(&request(&mu, &cov, Objective::MinVariance)).path,
            path,
            "{cov:?}"
        );
    }
    let singular = vec![
        vec![0.04, 0.06, 0.0],
        vec![0.06, 0.09, 0.0],
        vec![0.0, 0.0, 0.04],
    ];
    let e = rejected(&request(&mu, &singular, Objective::MinVariance));
    assert_eq!(e.message, "covariance is singular or not positive definite");
    assert_eq!(
        e.to_string(),
        "covariance: covariance is singular or not positive definite"
    );
}

#[test]
fn bad_assets_and_prices_are_rejected_with_their_path() {
    let cov = random_cov(3, 5);
    let mut dup = request(&MU3, &cov, Objective::MinVariance);
    dup.assets[2].symbol = "A0".into();
    assert_eq!(rejected(&dup).path, "assets[2].symbol");
    assert_eq!(
        rejected(&request(&[], &[], Objective::MinVariance)).path,
        "assets"
    );
    let mut missing = request(&MU3, &cov, Objective::MinVariance);
    missing.assets[1].expected_return = None;
    assert_eq!(rejected(&missing).path, "assets[1].expected_return");
    missing.covariance = None;
    missing.assets[1].expected_return = Some(0.1);
    assert_eq!(rejected(&missing).path, "covariance");

    let series = |n: usize| (0..n).map(|k| 100.0 + k as f64).collect::<Vec<f64>>();
    let priced = |edit: &dyn Fn(&mut Vec<Vec<f64>>)| {
        let mut p = vec![
            series(8),
            series(8).iter().map(|x| x * x / 90.0).collect(),
            series(8),
        ];
        p[2].reverse();
        edit(&mut p);
        let mut req = request(&MU3, &cov, Objective::MinVariance);
        req.covariance = None;
        for (a, prices) in req.assets.iter_mut().zip(p) {
            a.expected_return = None;
            a.prices = Some(prices);
        }
        req
    };
    assert_eq!(
        rejected(&priced(&|p| p[2][5] = 0.0)).path,
        "assets[2].prices[5]"
    );
    assert_eq!(
        rejected(&priced(&|p| p[0][1] = -3.0)).path,
        "assets[0].prices[1]"
    );
    assert_eq!(
        rejected(&priced(&|p| p[1][7] = f64::NAN)).path,
        "assets[1].prices[7]"
    );
    assert_eq!(
        rejected(&priced(&|p| p[1].push(120.0))).path,
        "assets[1].prices"
    );
    assert_eq!(
        rejected(&priced(&|p| p[0].truncate(2))).path,
        "assets[0].prices"
    );
    // Asset 2 is asset 0 scaled: identical returns, so the estimate is singular.
    let e = rejected(&priced(&|p| p[2] = p[0].iter().map(|x| 3.0 * x).collect()));
    assert_eq!(e.path, "covariance");
    let mut year = priced(&|_| {});
    year.periods_per_year = Some(0.0);
    assert_eq!(rejected(&year).path, "periods_per_year");
    assert!(optimise(&priced(&|_| {})).is_ok());
}

#[test]
fn statistics_from_prices_match_a_hand_computation() {
    // A: 100 → 110 → 99 → 108.9, returns (0.1, −0.1, 0.1), mean 1/30, sample variance 1/75.
    // B: 50 → 60 → 66 → 59.4, returns (0.2, 0.1, −0.1), mean 1/15, sample variance 7/300.
    // Sample covariance ((1/15)(2/15) + (−2/15)(1/30) + (1/15)(−1/6))/2 = −1/300.
    // Annualised by 252: μ = (8.4, 16.8), Σ = [[3.36, −0.84], [−0.84, 5.88]].
    let mut req = request(&[0.0, 0.0], &[], Objective::MinVariance);
    req.covariance = None;
    req.assets[0].expected_return = None;
    req.assets[1].expected_return = None;
    req.assets[0].prices = Some(vec![100.0, 110.0, 99.0, 108.9]);
    req.assets[1].prices = Some(vec![50.0, 60.0, 66.0, 59.4]);
    let s = statistics(&req).unwrap();
    assert_close(&s.mu, &[8.4, 16.8], 1e-12);
    assert_close(&s.cov[0], &[3.36, -0.84], 1e-12);
    assert_close(&s.cov[1], &[-0.84, 5.88], 1e-12);
    // Min variance: w_A = (5.88 + 0.84)/(3.36 + 5.88 + 2·0.84) = 6.72/10.92 = 8/13.
    let r = solve(&req);
    assert_close(&weights(&r), &[8.0 / 13.0, 5.0 / 13.0], 1e-12);
    assert!((r.weights[1].expected_return - 16.8).abs() <= 1e-12);
    // A given expected return wins over the estimate; periods_per_year rescales the rest.
    req.assets[0].expected_return = Some(0.05);
    req.periods_per_year = Some(12.0);
    let s = statistics(&req).unwrap();
    assert_close(&s.mu, &[0.05, 0.8], 1e-12);
    assert_close(&s.cov[0], &[0.16, -0.04], 1e-12);
}

#[test]
fn requests_deserialise_strictly_and_results_serialise() {
    let json = r#"{"assets":[{"symbol":"X","expected_return":0.1},{"symbol":"Y","expected_return":0.05}],
        "covariance":[[0.04,0.0],[0.0,0.01]],"objective":"target_return","target_return":0.06,
        "risk_free_rate":0.01,"constraints":{"long_only":true,"max_weight":0.9},"frontier_points":3}"#;
    let req: PortfolioRequest = serde_json::from_str(json).unwrap();
    let r = solve(&req);
    assert!((r.expected_return - 0.06).abs() <= TIGHT);
    let out = serde_json::to_value(&r).unwrap();
    assert_eq!(out["objective"], "target_return");
    assert_eq!(out["weights"][0]["symbol"], "X");
    assert_eq!(out["frontier"].as_array().map(Vec::len), Some(3));
    assert!(out["weight_by_symbol"]["Y"].is_f64());
    let extra = json.replace(
        "\"frontier_points\":3",
        "\"frontier_points\":3,\"leverage\":2",
    );
    assert!(serde_json::from_str::<PortfolioRequest>(&extra).is_err());
    let objective = json.replace("target_return\",", "max_return\",");
    assert!(serde_json::from_str::<PortfolioRequest>(&objective).is_err());
    assert_eq!(optimise(&req), optimise(&req));
}

/// Deterministic SPD matrix: BᵀB/m + 0.005·I with B uniform in ±0.2 from a fixed LCG.
fn random_cov(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Lcg(seed);
    let m = n + 4;
    let b: Vec<Vec<f64>> = (0..m)
        .map(|_| (0..n).map(|_| 0.4 * rng.next() - 0.2).collect())
        .collect();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let s: f64 = b.iter().map(|row| row[i] * row[j]).sum::<f64>() / m as f64;
                    s + if i == j { 0.005 } else { 0.0 }
                })
                .collect()
        })
        .collect()
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
enum Kkt {
    Budget,
    Target(f64),
    Sharpe(f64),
}

/// Independent KKT check to 1e-9: primal feasibility; stationarity g + ν·1 (+ ν₂·μ) = 0 on free
/// weights, with g = Σw, or Σw − λ(μ − r_f) and λ = σ²/(R − r_f) for max-Sharpe; multipliers
/// ≥ 0 at lower bounds and ≤ 0 at upper ones. Returns how many bounds are strictly active.
fn assert_kkt(
    cov: &[Vec<f64>],
    mu: &[f64],
    lo: f64,
    hi: f64,
    r: &PortfolioResult,
    kind: Kkt,
) -> usize {
    let tol = 1e-9;
    let w = weights(r);
    let sigma_w = mv(cov, &w);
    let ret = dot(mu, &w);
    let g: Vec<f64> = match kind {
        Kkt::Sharpe(rf) => {
            let lambda = dot(&w, &sigma_w) / (ret - rf);
            sigma_w
                .iter()
                .zip(mu)
                .map(|(s, m)| s - lambda * (m - rf))
                .collect()
        }
        _ => sigma_w,
    };
    assert!(
        w.iter().all(|x| *x >= lo - 1e-15 && *x <= hi + 1e-15),
        "{w:?}"
    );
    let free: Vec<usize> = (0..w.len())
        .filter(|&i| w[i] > lo + tol && w[i] < hi - tol)
        .collect();
    assert!(!free.is_empty());
    let (nu, nu2) = match kind {
        Kkt::Target(t) => {
            assert!((ret - t).abs() <= 1e-12);
            // Least squares for (ν, ν₂) in g_i + ν + ν₂ μ_i = 0 over the free set.
            let (mut s11, mut s12, mut s22, mut b1, mut b2) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for &i in &free {
                s11 += 1.0;
                s12 += mu[i];
                s22 += mu[i] * mu[i];
                b1 -= g[i];
                b2 -= g[i] * mu[i];
            }
            let det = s11 * s22 - s12 * s12;
            ((b1 * s22 - b2 * s12) / det, (s11 * b2 - s12 * b1) / det)
        }
        _ => (
            -free.iter().map(|&i| g[i]).sum::<f64>() / free.len() as f64,
            0.0,
        ),
    };
    let mut strictly_active = 0;
    for (i, (gi, wi)) in g.iter().zip(&w).enumerate() {
        let z = gi + nu + nu2 * mu[i];
        if free.contains(&i) {
            assert!(z.abs() <= tol, "stationarity at {i}: {z}");
        } else if (wi - lo).abs() <= tol {
            assert!(
                z >= -tol,
                "lower-bound multiplier at {i} has the wrong sign: {z}"
            );
            strictly_active += usize::from(z > 1e-6);
        } else {
            assert!(
                z <= tol,
                "upper-bound multiplier at {i} has the wrong sign: {z}"
            );
            strictly_active += usize::from(z < -1e-6);
        }
    }
    strictly_active
}

#[test]
fn kkt_conditions_hold_on_a_random_eight_asset_problem() {
    let n = 8;
    let cov = random_cov(n, 42);
    let mut rng = Lcg(9);
    let mu: Vec<f64> = (0..n).map(|_| 0.02 + 0.13 * rng.next()).collect();
    for (long_only, lo, min, hi) in [(true, 0.0, None, 0.2), (false, -0.2, Some(-0.2), 0.35)] {
        let build =
            |objective| with_bounds(request(&mu, &cov, objective), long_only, min, Some(hi));
        let gmv = solve(&build(Objective::MinVariance));
        let mut active = assert_kkt(&cov, &mu, lo, hi, &gmv, Kkt::Budget);
        let mut sharpe_req = build(Objective::MaxSharpe);
        sharpe_req.risk_free_rate = Some(0.03);
        let tangency = solve(&sharpe_req);
        active += assert_kkt(&cov, &mu, lo, hi, &tangency, Kkt::Sharpe(0.03));
        let top = extreme_portfolio(&mu, lo, hi, true)
            .map(|w| dot(&mu, &w))
            .unwrap();
        let t = (gmv.expected_return + top) / 2.0;
        let mut target_req = build(Objective::TargetReturn);
        target_req.target_return = Some(t);
        let target = solve(&target_req);
        active += assert_kkt(&cov, &mu, lo, hi, &target, Kkt::Target(t));
        assert!(active >= 3, "the bounds should bind somewhere ({active})");
        assert!(tangency.sharpe >= gmv.sharpe && tangency.sharpe >= target.sharpe);
    }
}
