//! Tests for the portfolio optimiser against analytic answers: closed forms computed here with an
//! independent 3×3 adjugate inverse, hand-computed price statistics, and an independent KKT check.

use super::*;
use Objective::{MaxSharpe, MinVariance, TargetReturn};

const TIGHT: f64 = 1e-12;

/// (long_only, min_weight, max_weight); `None` in its place keeps the defaults (long-only).
type Limits = Option<(bool, Option<f64>, Option<f64>)>;
const FREE: Limits = Some((false, None, None));

fn req(mu: &[f64], cov: &[Vec<f64>], objective: Objective, limits: Limits) -> PortfolioRequest {
    let asset = |(i, m): (usize, &f64)| Asset {
        symbol: format!("A{i}"),
        expected_return: Some(*m),
        prices: None,
    };
    PortfolioRequest {
        assets: mu.iter().enumerate().map(asset).collect(),
        covariance: Some(cov.to_vec()),
        objective,
        target_return: None,
        risk_free_rate: None,
        constraints: limits.map(|(long_only, min_weight, max_weight)| Constraints {
            long_only: Some(long_only),
            min_weight,
            max_weight,
        }),
        periods_per_year: None,
        frontier_points: None,
    }
}

/// The box the request implies, computed here independently.
fn box_of(limits: Limits) -> (f64, f64) {
    let (long_only, min, max) = limits.unwrap_or((true, None, None));
    let lo = min.unwrap_or(if long_only { 0.0 } else { f64::NEG_INFINITY });
    (lo, max.unwrap_or(f64::INFINITY))
}

fn m(rows: &[&[f64]]) -> Vec<Vec<f64>> {
    rows.iter().map(|r| r.to_vec()).collect()
}

/// σ = (0.15, 0.20, 0.25), ρ₀₁ = 0.9, ρ₀₂ = 0.3, ρ₁₂ = 0.4: unconstrained GMV shorts asset 1.
fn cov3() -> Vec<Vec<f64>> {
    m(&[
        &[0.0225, 0.027, 0.01125],
        &[0.027, 0.04, 0.02],
        &[0.01125, 0.02, 0.0625],
    ])
}

/// σ² = (0.01, 0.04, 0.09), uncorrelated: unconstrained GMV ∝ (100, 25, 11.1).
fn diag3() -> Vec<Vec<f64>> {
    m(&[&[0.01, 0.0, 0.0], &[0.0, 0.04, 0.0], &[0.0, 0.0, 0.09]])
}

const MU3: [f64; 3] = [0.08, 0.12, 0.10];

/// Adjugate / determinant, independent of the solver's elimination, checked by Σ·Σ⁻¹ = I.
fn inverse3(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let cofactor = |r: usize, k: usize| {
        let (r0, r1) = ((r + 1) % 3, (r + 2) % 3);
        let (k0, k1) = ((k + 1) % 3, (k + 2) % 3);
        a[r0][k0] * a[r1][k1] - a[r0][k1] * a[r1][k0]
    };
    let det: f64 = (0..3).map(|k| a[0][k] * cofactor(0, k)).sum();
    let inv: Vec<Vec<f64>> = (0..3)
        .map(|i| (0..3).map(|j| cofactor(j, i) / det).collect())
        .collect();
    for (i, row) in a.iter().enumerate() {
        let product = mv(&inv, row);
        for (j, p) in product.iter().enumerate() {
            assert!(
                (p - f64::from(u8::from(i == j))).abs() < 1e-12,
                "inverse check"
            );
        }
    }
    inv
}

fn mv(a: &[Vec<f64>], v: &[f64]) -> Vec<f64> {
    a.iter().map(|row| dot(row, v)).collect()
}

fn normalised(v: &[f64]) -> Vec<f64> {
    let s: f64 = v.iter().sum();
    v.iter().map(|x| x / s).collect()
}

fn weights(r: &PortfolioResult) -> Vec<f64> {
    r.weights.iter().map(|a| a.weight).collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "[{i}]: got {g}, want {w}\n{got:?}\n{want:?}"
        );
    }
}

/// Optimises and checks the invariants every answer must meet.
fn solve(request: &PortfolioRequest) -> PortfolioResult {
    let r = optimise(request).unwrap();
    let w = weights(&r);
    assert!((w.iter().sum::<f64>() - 1.0).abs() <= TIGHT, "{w:?}");
    let cov = statistics(request).unwrap().cov;
    let vol = dot(&w, &mv(&cov, &w)).sqrt();
    assert!((r.volatility - vol).abs() <= TIGHT);
    assert!((r.sharpe - (r.expected_return - r.risk_free_rate) / vol).abs() <= 1e-10);
    r
}

fn rejected(request: &PortfolioRequest) -> InputError {
    optimise(request).unwrap_err()
}

#[test]
fn two_asset_min_variance_matches_closed_form() {
    // σ₁² = 0.04, σ₂² = 0.09, σ₁₂ = 0.015 ⇒ w₁ = (0.09 − 0.015)/(0.04 + 0.09 − 0.03) = 0.75.
    let cov = m(&[&[0.04, 0.015], &[0.015, 0.09]]);
    let r = solve(&req(&[0.1, 0.2], &cov, MinVariance, None));
    assert_close(&weights(&r), &[0.75, 0.25], TIGHT);
    // 0.75²·0.04 + 0.25²·0.09 + 2·0.75·0.25·0.015 = 0.03375.
    assert!((r.volatility - 0.03375_f64.sqrt()).abs() <= TIGHT);
    assert!((r.expected_return - 0.125).abs() <= TIGHT);
    assert!(r.active_bounds.is_empty());
    assert_eq!(r.weight_by_symbol["A1"], 0.25);
}

#[test]
fn unconstrained_min_variance_is_inverse_times_ones() {
    let want = normalised(&mv(&inverse3(&cov3()), &[1.0; 3]));
    // The shape by hand: ≈ (1.4176, −0.6412, 0.2236).
    assert!(want[0] > 1.41 && want[1] < -0.64 && want[2] > 0.22);
    let r = solve(&req(&MU3, &cov3(), MinVariance, FREE));
    assert_close(&weights(&r), &want, TIGHT);
}

#[test]
fn unconstrained_max_sharpe_is_inverse_times_excess() {
    let rf = 0.02;
    let excess: Vec<f64> = MU3.iter().map(|m| m - rf).collect();
    let raw = mv(&inverse3(&cov3()), &excess);
    let r = solve(&PortfolioRequest {
        risk_free_rate: Some(rf),
        ..req(&MU3, &cov3(), MaxSharpe, FREE)
    });
    assert_close(&weights(&r), &normalised(&raw), TIGHT);
    // The tangency's Sharpe ratio is √((μ − r_f)ᵀΣ⁻¹(μ − r_f)).
    assert!((r.sharpe - dot(&excess, &raw).sqrt()).abs() <= TIGHT);
}

#[test]
fn unconstrained_target_return_matches_the_two_fund_formula() {
    // w = Σ⁻¹[(C − tB)·1 + (tA − B)·μ]/(AC − B²), A = 1ᵀΣ⁻¹1, B = 1ᵀΣ⁻¹μ, C = μᵀΣ⁻¹μ.
    let t = 0.11;
    let inv = inverse3(&cov3());
    let (ones, mu) = (mv(&inv, &[1.0; 3]), mv(&inv, &MU3));
    let (a, b, c) = (
        ones.iter().sum::<f64>(),
        mu.iter().sum::<f64>(),
        dot(&MU3, &mu),
    );
    let d = a * c - b * b;
    let want: Vec<f64> = ones
        .iter()
        .zip(&mu)
        .map(|(o, m)| ((c - t * b) * o + (t * a - b) * m) / d)
        .collect();
    let r = solve(&PortfolioRequest {
        target_return: Some(t),
        ..req(&MU3, &cov3(), TargetReturn, FREE)
    });
    assert_close(&weights(&r), &want, 1e-11);
    assert!((r.expected_return - t).abs() <= TIGHT);
}

#[test]
fn long_only_zeroes_the_asset_the_unconstrained_solution_shorts() {
    let r = solve(&req(&MU3, &cov3(), MinVariance, None));
    // Asset 1 out; the two-asset closed form on assets 0 and 2:
    // w₀ = (0.0625 − 0.01125)/(0.0225 + 0.0625 − 2·0.01125) = 0.82.
    assert_close(&weights(&r), &[0.82, 0.0, 0.18], TIGHT);
    let zero = ActiveBound {
        symbol: "A1".into(),
        bound: BoundSide::Lower,
        value: 0.0,
    };
    assert_eq!(r.active_bounds, vec![zero]);
    assert_kkt(&cov3(), &MU3, None, &r, Kkt::Budget);
}

#[test]
fn max_weight_binds_on_the_dominant_asset() {
    let limits = Some((true, None, Some(0.45)));
    let r = solve(&req(&MU3, &diag3(), MinVariance, limits));
    // w₀ = 0.45; the other 0.55 split in inverse-variance proportion 0.09 : 0.04.
    assert_close(
        &weights(&r),
        &[0.45, 0.55 * 0.09 / 0.13, 0.55 * 0.04 / 0.13],
        TIGHT,
    );
    assert_eq!(r.active_bounds.len(), 1);
    assert_eq!(r.active_bounds[0].bound, BoundSide::Upper);
    assert_kkt(&diag3(), &MU3, limits, &r, Kkt::Budget);
}

#[test]
fn max_weight_binds_on_the_best_sharpe_assets() {
    // Unconstrained tangency ∝ μᵢ/σᵢ² = (8, 3, 1.1) ⇒ (0.66, 0.25, 0.09). Capping at 0.4 moves
    // the surplus to asset 1, which then binds too: the optimum is the vertex (0.4, 0.4, 0.2).
    let limits = Some((true, None, Some(0.4)));
    let r = solve(&req(&MU3, &diag3(), MaxSharpe, limits));
    assert_close(&weights(&r), &[0.4, 0.4, 0.2], TIGHT);
    let pinned: Vec<_> = r
        .active_bounds
        .iter()
        .map(|b| (b.symbol.as_str(), b.bound))
        .collect();
    assert_eq!(pinned, [("A0", BoundSide::Upper), ("A1", BoundSide::Upper)]);
    assert_kkt(&diag3(), &MU3, limits, &r, Kkt::Sharpe(0.0));
    // Brute force over the feasible triangle on a 0.001 grid agrees.
    let mut scan = f64::MIN;
    for (a, b) in (0..=400).flat_map(|a| (0..=400).map(move |b| (a, b))) {
        let w = [a as f64 / 1e3, b as f64 / 1e3, 1.0 - (a + b) as f64 / 1e3];
        if (0.0..=0.4).contains(&w[2]) {
            scan = scan.max(dot(&w, &MU3) / dot(&w, &mv(&diag3(), &w)).sqrt());
        }
    }
    assert!(r.sharpe >= scan - 1e-15, "{} < {scan}", r.sharpe);
}

#[test]
fn min_weight_binds() {
    let r = solve(&req(
        &MU3,
        &diag3(),
        MinVariance,
        Some((true, Some(0.1), None)),
    ));
    // w₂ = 0.1 (its free value 0.082 is below); the other 0.9 split 0.04 : 0.01 ⇒ 0.72, 0.18.
    assert_close(&weights(&r), &[0.72, 0.18, 0.1], TIGHT);
    assert_eq!(r.active_bounds[0].symbol, "A2");
    assert_eq!(r.active_bounds[0].bound, BoundSide::Lower);
}

#[test]
fn bounds_that_leave_one_portfolio_return_it() {
    let r = solve(&req(
        &MU3,
        &cov3(),
        MaxSharpe,
        Some((true, Some(1.0 / 3.0), None)),
    ));
    assert_close(&weights(&r), &[1.0 / 3.0; 3], TIGHT);
    assert_eq!((r.iterations, r.active_bounds.len()), (0, 3));
    let single = solve(&req(&[0.07], &[vec![0.04]], MaxSharpe, None));
    assert_eq!(weights(&single), vec![1.0]);
    assert!((single.sharpe - 0.35).abs() <= TIGHT);
}

#[test]
fn target_return_is_exact_and_on_the_frontier() {
    let gmv = solve(&req(&MU3, &cov3(), MinVariance, None));
    for t in [0.08, 0.09, 0.1, 0.115, 0.12] {
        let r = solve(&PortfolioRequest {
            target_return: Some(t),
            ..req(&MU3, &cov3(), TargetReturn, None)
        });
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
            _ => _ = assert_kkt(&cov3(), &MU3, None, &r, Kkt::Target(t)),
        }
    }
}

#[test]
fn frontier_runs_from_min_variance_to_max_return_with_rising_volatility() {
    let (mu, cov) = ([0.06, 0.09, 0.12, 0.15], random_cov(4, 7));
    let r = solve(&PortfolioRequest {
        frontier_points: Some(12),
        ..req(&mu, &cov, MaxSharpe, None)
    });
    let gmv = solve(&req(&mu, &cov, MinVariance, None));
    assert_eq!(r.frontier.len(), 12);
    assert_eq!(r.frontier[0].volatility, gmv.volatility);
    assert!((r.frontier[11].expected_return - 0.15).abs() <= TIGHT);
    for pair in r.frontier.windows(2) {
        assert!(
            pair[1].expected_return > pair[0].expected_return,
            "{pair:?}"
        );
        assert!(pair[1].volatility > pair[0].volatility, "{pair:?}");
    }
    assert!(r.frontier.iter().all(|p| p.sharpe <= r.sharpe + 1e-12));
}

#[test]
fn infeasible_constraints_are_rejected_at_constraints() {
    let (mu, cov) = ([0.1, 0.2, 0.15, 0.05], random_cov(4, 3));
    let cases = [
        (
            (true, Some(0.3), None),
            "min_weight 0.3 × 4 assets exceeds 1",
        ),
        (
            (true, None, Some(0.2)),
            "max_weight 0.2 × 4 assets is below 1",
        ),
        (
            (false, Some(0.3), Some(0.2)),
            "lower weight bound 0.3 exceeds max_weight 0.2",
        ),
        ((true, Some(-0.1), None), "negative but long_only"),
        (
            (true, None, Some(-0.1)),
            "lower weight bound 0 exceeds max_weight -0.1",
        ),
    ];
    for (limits, needle) in cases {
        let e = rejected(&req(&mu, &cov, MinVariance, Some(limits)));
        assert_eq!(e.path, "constraints");
        assert!(e.message.contains(needle), "{e}");
    }
    let nan = req(&mu, &cov, MinVariance, Some((true, Some(f64::NAN), None)));
    assert_eq!(rejected(&nan).path, "constraints.min_weight");
}

#[test]
fn target_outside_the_achievable_range_names_the_range() {
    let capped = req(&MU3, &cov3(), TargetReturn, Some((true, None, Some(0.5))));
    let e = rejected(&PortfolioRequest {
        target_return: Some(0.13),
        ..capped.clone()
    });
    // Long-only, ≤ 0.5 each: best 0.5·0.12 + 0.5·0.10 = 0.11, worst 0.5·0.08 + 0.5·0.10 = 0.09.
    assert_eq!(e.path, "target_return");
    assert!(e.message.contains("[0.09, 0.11]"), "{e}");
    assert_eq!(rejected(&capped).path, "target_return");
    let other = PortfolioRequest {
        target_return: Some(0.1),
        ..req(&MU3, &cov3(), MinVariance, None)
    };
    assert_eq!(rejected(&other).path, "target_return");
}

#[test]
fn risk_free_rate_above_every_return_is_rejected() {
    let high = PortfolioRequest {
        risk_free_rate: Some(0.12),
        ..req(&MU3, &cov3(), MaxSharpe, None)
    };
    assert_eq!(rejected(&high).path, "risk_free_rate");
    // Without bounds the tangency exists only below the GMV return (≈ 0.0527 here).
    let free = PortfolioRequest {
        risk_free_rate: Some(0.06),
        ..req(&MU3, &cov3(), MaxSharpe, FREE)
    };
    let e = rejected(&free);
    assert_eq!(e.path, "risk_free_rate");
    assert!(e.message.contains("minimum-variance return"), "{e}");
}

#[test]
fn bad_covariances_are_rejected_with_their_path() {
    let cases = [
        (m(&[&[0.04, 0.0, 0.0], &[0.0, 0.04, 0.0]]), "covariance"),
        (
            m(&[&[0.04, 0.0, 0.0], &[0.0, 0.04], &[0.0, 0.0, 0.04]]),
            "covariance[1]",
        ),
        (
            m(&[&[0.04, 0.0, 0.01], &[0.0, 0.04, 0.0], &[0.0, 0.0, 0.04]]),
            "covariance[0][2]",
        ),
        (
            m(&[
                &[0.04, 0.0, 0.0],
                &[0.0, f64::INFINITY, 0.0],
                &[0.0, 0.0, 0.04],
            ]),
            "covariance[1][1]",
        ),
        (
            m(&[&[0.04, 0.0, 0.0], &[0.0, -0.04, 0.0], &[0.0, 0.0, 0.04]]),
            "covariance",
        ),
    ];
    for (cov, path) in cases {
        assert_eq!(
            rejected(&req(&MU3, &cov, MinVariance, None)).path,
            path,
            "{cov:?}"
        );
    }
    // Perfectly correlated assets 0 and 1 (σ 0.2 and 0.3, ρ = 1): singular.
    let singular = m(&[&[0.04, 0.06, 0.0], &[0.06, 0.09, 0.0], &[0.0, 0.0, 0.04]]);
    let e = rejected(&req(&MU3, &singular, MinVariance, None));
    assert_eq!(
        e.to_string(),
        "covariance: covariance is singular or not positive definite"
    );
}

#[test]
fn bad_assets_and_prices_are_rejected_with_their_path() {
    let cov = random_cov(3, 5);
    let mut bad = req(&MU3, &cov, MinVariance, None);
    bad.assets[2].symbol = "A0".into();
    assert_eq!(rejected(&bad).path, "assets[2].symbol");
    assert_eq!(rejected(&req(&[], &[], MinVariance, None)).path, "assets");
    let mut bad = req(&MU3, &cov, MinVariance, None);
    bad.assets[1].expected_return = None;
    assert_eq!(rejected(&bad).path, "assets[1].expected_return");
    bad.assets[1].expected_return = Some(0.1);
    bad.covariance = None;
    assert_eq!(rejected(&bad).path, "covariance");

    let priced = |edit: &dyn Fn(&mut Vec<Vec<f64>>)| {
        let rising: Vec<f64> = (0..8).map(|k| 100.0 + f64::from(k)).collect();
        let mut p = vec![
            rising.clone(),
            rising.iter().map(|x| x * x / 90.0).collect(),
            rising,
        ];
        p[2].reverse();
        edit(&mut p);
        let mut r = PortfolioRequest {
            covariance: None,
            ..req(&MU3, &cov, MinVariance, None)
        };
        for (a, prices) in r.assets.iter_mut().zip(p) {
            (a.expected_return, a.prices) = (None, Some(prices));
        }
        r
    };
    let path = |edit: &dyn Fn(&mut Vec<Vec<f64>>)| rejected(&priced(edit)).path;
    assert_eq!(path(&|p| p[2][5] = 0.0), "assets[2].prices[5]");
    assert_eq!(path(&|p| p[0][1] = -3.0), "assets[0].prices[1]");
    assert_eq!(path(&|p| p[1][7] = f64::NAN), "assets[1].prices[7]");
    assert_eq!(path(&|p| p[1].push(120.0)), "assets[1].prices");
    assert_eq!(path(&|p| p[0].truncate(2)), "assets[0].prices");
    // Asset 2 is asset 0 scaled: identical returns, so the estimate is singular.
    assert_eq!(
        path(&|p| p[2] = p[0].iter().map(|x| 3.0 * x).collect()),
        "covariance"
    );
    let year = PortfolioRequest {
        periods_per_year: Some(0.0),
        ..priced(&|_| {})
    };
    assert_eq!(rejected(&year).path, "periods_per_year");
    solve(&priced(&|_| {}));
}

#[test]
fn statistics_from_prices_match_a_hand_computation() {
    // A: 100 → 110 → 99 → 108.9, returns (0.1, −0.1, 0.1), mean 1/30, sample variance 1/75.
    // B: 50 → 60 → 66 → 59.4, returns (0.2, 0.1, −0.1), mean 1/15, sample variance 7/300.
    // Sample covariance ((1/15)(2/15) + (−2/15)(1/30) + (1/15)(−1/6))/2 = −1/300.
    // Annualised by 252: μ = (8.4, 16.8), Σ = [[3.36, −0.84], [−0.84, 5.88]].
    let mut r = PortfolioRequest {
        covariance: None,
        ..req(&[0.0, 0.0], &[], MinVariance, None)
    };
    r.assets[0].expected_return = None;
    r.assets[1].expected_return = None;
    r.assets[0].prices = Some(vec![100.0, 110.0, 99.0, 108.9]);
    r.assets[1].prices = Some(vec![50.0, 60.0, 66.0, 59.4]);
    let s = statistics(&r).unwrap();
    assert_close(&s.mu, &[8.4, 16.8], TIGHT);
    assert_close(&s.cov[0], &[3.36, -0.84], TIGHT);
    assert_close(&s.cov[1], &[-0.84, 5.88], TIGHT);
    // Min variance: w_A = (5.88 + 0.84)/(3.36 + 5.88 + 2·0.84) = 6.72/10.92 = 8/13.
    let out = solve(&r);
    assert_close(&weights(&out), &[8.0 / 13.0, 5.0 / 13.0], TIGHT);
    assert!((out.weights[1].expected_return - 16.8).abs() <= TIGHT);
    // A given expected return wins over the estimate; periods_per_year rescales the rest.
    r.assets[0].expected_return = Some(0.05);
    r.periods_per_year = Some(12.0);
    let s = statistics(&r).unwrap();
    assert_close(&s.mu, &[0.05, 0.8], TIGHT);
    assert_close(&s.cov[0], &[0.16, -0.04], TIGHT);
}

#[test]
fn requests_deserialise_strictly_and_results_serialise() {
    let json = r#"{"assets":[{"symbol":"X","expected_return":0.1},{"symbol":"Y","expected_return":0.05}],
        "covariance":[[0.04,0.0],[0.0,0.01]],"objective":"target_return","target_return":0.06,
        "risk_free_rate":0.01,"constraints":{"long_only":true,"max_weight":0.9},"frontier_points":3}"#;
    let request: PortfolioRequest = serde_json::from_str(json).unwrap();
    let r = solve(&request);
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
    assert_eq!(optimise(&request), optimise(&request));
}

/// Deterministic SPD matrix: BᵀB/m + 0.005·I with B uniform in ±0.2 from a fixed LCG.
fn random_cov(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Lcg(seed);
    let rows = n + 4;
    let b: Vec<Vec<f64>> = (0..rows)
        .map(|_| (0..n).map(|_| 0.4 * rng.next() - 0.2).collect())
        .collect();
    let entry = |i: usize, j: usize| {
        let s: f64 = b.iter().map(|row| row[i] * row[j]).sum::<f64>() / rows as f64;
        s + if i == j { 0.005 } else { 0.0 }
    };
    (0..n)
        .map(|i| (0..n).map(|j| entry(i, j)).collect())
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

/// Independent KKT check to 1e-9: feasibility; stationarity g + ν·1 (+ ν₂·μ) = 0 on free
/// weights, with g = Σw, or Σw − λ(μ − r_f) and λ = σ²/(R − r_f) for max-Sharpe; multipliers
/// ≥ 0 at lower bounds and ≤ 0 at upper ones. Returns how many bounds are strictly active.
fn assert_kkt(
    cov: &[Vec<f64>],
    mu: &[f64],
    limits: Limits,
    r: &PortfolioResult,
    kind: Kkt,
) -> usize {
    let (tol, (lo, hi), w) = (1e-9, box_of(limits), weights(r));
    let (sigma_w, ret) = (mv(cov, &w), dot(mu, &w));
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
    let (nu, nu2) = match kind {
        Kkt::Target(t) => {
            assert!((ret - t).abs() <= TIGHT);
            // Least squares for (ν, ν₂) in g_i + ν + ν₂ μ_i = 0 over the free set.
            let (mut s1, mut s2, mut b1, mut b2) = (0.0, 0.0, 0.0, 0.0);
            for &i in &free {
                (s1, s2, b1, b2) = (s1 + mu[i], s2 + mu[i] * mu[i], b1 - g[i], b2 - g[i] * mu[i]);
            }
            let k = free.len() as f64;
            let det = k * s2 - s1 * s1;
            assert!(
                det.abs() > 1e-12,
                "need two free weights with different returns"
            );
            ((b1 * s2 - b2 * s1) / det, (k * b2 - s1 * b1) / det)
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
fn kkt_conditions_hold_on_random_eight_asset_problems() {
    let n = 8;
    let mut active = 0;
    for seed in 0..10 {
        let cov = random_cov(n, 42 + seed);
        let mut rng = Lcg(9 + seed);
        let mu: Vec<f64> = (0..n).map(|_| 0.02 + 0.13 * rng.next()).collect();
        for limits in [
            None,
            Some((true, None, Some(0.2))),
            Some((false, Some(-0.05), Some(0.25))),
        ] {
            let gmv = solve(&req(&mu, &cov, MinVariance, limits));
            active += assert_kkt(&cov, &mu, limits, &gmv, Kkt::Budget);
            let rf = 0.03;
            let sharpe = PortfolioRequest {
                risk_free_rate: Some(rf),
                ..req(&mu, &cov, MaxSharpe, limits)
            };
            let tangency = solve(&sharpe);
            active += assert_kkt(&cov, &mu, limits, &tangency, Kkt::Sharpe(rf));
            let (lo, hi) = box_of(limits);
            let top = extreme_portfolio(&mu, lo, hi, true)
                .map(|w| dot(&mu, &w))
                .unwrap();
            let t = (gmv.expected_return + top) / 2.0;
            let target = solve(&PortfolioRequest {
                target_return: Some(t),
                ..req(&mu, &cov, TargetReturn, limits)
            });
            active += assert_kkt(&cov, &mu, limits, &target, Kkt::Target(t));
            let at_rf = |r: &PortfolioResult| (r.expected_return - rf) / r.volatility;
            assert!(tangency.sharpe >= at_rf(&gmv) && tangency.sharpe >= at_rf(&target));
        }
    }
    assert!(active >= 30, "the bounds should bind often ({active})");
}
