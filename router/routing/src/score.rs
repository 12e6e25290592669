//! The score: expected cost and latency *to a successful answer*, as log-ratios to the best
//! candidate, weighted by preference (DESIGN §3, reference §10). Pure functions over plain
//! inputs — no clocks, no locks — so every property is testable directly.
//!
//! Per candidate:
//! - cost C = prompt·p_in + E[out]·p_out (local models: 0);
//! - latency L = (TTFT + E[out]·TPOT) × load, where load grows with requests in flight;
//! - reliability R (decayed success rate with an optimistic prior);
//! - E_cost = C / R (a geometric number of tries until one succeeds);
//! - E_lat = L + (1 − R)·(T_fail + L_next) (a failure costs its time, then the next candidate);
//! - quality Q (posterior mean of feedback, `quality.rs`): its term is the log-ratio of the
//!   share of bad answers, `ln((1 − Q + floor) / (best + floor))`, like reliability's.
//!
//! Terms are `ln(x / best)`, so a 2× dearer and a 2× slower candidate weigh the same at equal
//! weights, and the terms of the best candidate are 0. Lower score is better.

use serde::Serialize;

use crate::route::Weights;

/// Added to every cost before taking ratios, so free (local) models do not make the cost term
/// infinite: a millionth of a dollar, about one output token of a small paid model.
pub const COST_FLOOR_USD: f64 = 1e-6;
/// Added to failure rates before ratios: a 0.1% failure rate is "perfect" for ranking.
pub const FAILURE_FLOOR: f64 = 1e-3;
/// Added to shares of bad answers before ratios: quality 0.99 and 1.0 rank about the same.
pub const QUALITY_FLOOR: f64 = 1e-2;
/// Latencies below 1 ms are treated as 1 ms.
pub const LATENCY_FLOOR_MS: f64 = 1.0;

/// What the scorer needs to know about one eligible candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inputs {
    /// Expected cost of one attempt, USD.
    pub cost_usd: f64,
    /// Expected latency of one attempt, ms (already inflated by load).
    pub latency_ms: f64,
    /// Probability an attempt succeeds, in (0, 1].
    pub reliability: f64,
    /// Expected time an attempt takes to fail, ms.
    pub time_to_fail_ms: f64,
    /// Estimated probability the answer is good (feedback), in [0, 1].
    pub quality: f64,
}

/// The weighted terms of one candidate's score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Terms {
    pub expected_cost_usd: f64,
    pub expected_latency_ms: f64,
    /// `ln(E_cost / best E_cost)`, ≥ 0.
    pub cost: f64,
    /// `ln(E_lat / best E_lat)`, ≥ 0.
    pub latency: f64,
    /// `ln(failure rate / best failure rate)`, ≥ 0.
    pub reliability: f64,
    /// `ln(bad-answer share / best bad-answer share)`, ≥ 0 (0 for all without feedback).
    pub quality: f64,
    /// `w·terms`; lower is better.
    pub score: f64,
}

/// Score every candidate. `inputs` must be non-empty for a meaningful result; an empty slice
/// gives an empty vector.
pub fn score(inputs: &[Inputs], weights: Weights) -> Vec<Terms> {
    if inputs.is_empty() {
        return Vec::new();
    }
    let latency: Vec<f64> = inputs
        .iter()
        .map(|i| i.latency_ms.max(LATENCY_FLOOR_MS))
        .collect();
    let expected: Vec<(f64, f64)> = inputs
        .iter()
        .enumerate()
        .map(|(idx, i)| {
            let r = i.reliability.clamp(FAILURE_FLOOR, 1.0);
            // The fallback after a failure: the fastest of the *other* candidates (or this
            // one again when it is alone).
            let next = latency
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != idx)
                .map(|(_, l)| *l)
                .fold(f64::INFINITY, f64::min);
            let next = if next.is_finite() { next } else { latency[idx] };
            let e_cost = i.cost_usd.max(0.0) / r;
            let e_lat = latency[idx] + (1.0 - r) * (i.time_to_fail_ms.max(0.0) + next);
            (e_cost, e_lat)
        })
        .collect();
    let best_cost = expected.iter().map(|e| e.0).fold(f64::INFINITY, f64::min);
    let best_lat = expected.iter().map(|e| e.1).fold(f64::INFINITY, f64::min);
    let best_fail = inputs
        .iter()
        .map(|i| 1.0 - i.reliability.clamp(0.0, 1.0))
        .fold(f64::INFINITY, f64::min);
    let bad = |i: &Inputs| 1.0 - i.quality.clamp(0.0, 1.0);
    let best_bad = inputs.iter().map(bad).fold(f64::INFINITY, f64::min);
    inputs
        .iter()
        .zip(&expected)
        .map(|(i, &(e_cost, e_lat))| {
            let cost = ((e_cost + COST_FLOOR_USD) / (best_cost + COST_FLOOR_USD)).ln();
            let latency = (e_lat / best_lat).ln();
            let fail = 1.0 - i.reliability.clamp(0.0, 1.0);
            let reliability = ((fail + FAILURE_FLOOR) / (best_fail + FAILURE_FLOOR)).ln();
            let quality = ((bad(i) + QUALITY_FLOOR) / (best_bad + QUALITY_FLOOR)).ln();
            Terms {
                expected_cost_usd: e_cost,
                expected_latency_ms: e_lat,
                cost,
                latency,
                reliability,
                quality,
                score: weights.cost * cost
                    + weights.latency * latency
                    + weights.reliability * reliability
                    + weights.quality * quality,
            }
        })
        .collect()
}

/// Indices of `terms` from best to worst; ties go to the cheaper, then the earlier candidate
/// (the route's own order), so the ranking is deterministic.
pub fn rank(terms: &[Terms]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..terms.len()).collect();
    order.sort_by(|&a, &b| {
        terms[a]
            .score
            .total_cmp(&terms[b].score)
            .then(
                terms[a]
                    .expected_cost_usd
                    .total_cmp(&terms[b].expected_cost_usd),
            )
            .then(a.cmp(&b))
    });
    order
}

/// Expected cost of one attempt in USD: prices are per 1M tokens; above the long-context
/// threshold the whole call is billed at the higher tier (as Anthropic and Google do).
pub fn attempt_cost(
    entry: &crate::catalog::CatalogEntry,
    prompt_tokens: u32,
    output_tokens: f64,
) -> f64 {
    if entry.is_local() {
        return 0.0;
    }
    let (input, output) = match entry.long_context {
        Some(tier) if prompt_tokens > tier.threshold => (tier.input, tier.output),
        _ => (entry.input, entry.output),
    };
    (f64::from(prompt_tokens) * input + output_tokens.max(0.0) * output) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Optimize;

    fn c(cost: f64, latency: f64, reliability: f64) -> Inputs {
        Inputs {
            cost_usd: cost,
            latency_ms: latency,
            reliability,
            time_to_fail_ms: 500.0,
            quality: 0.5,
        }
    }

    fn q(mut i: Inputs, quality: f64) -> Inputs {
        i.quality = quality;
        i
    }

    fn winner(inputs: &[Inputs], w: Weights) -> usize {
        rank(&score(inputs, w))[0]
    }

    #[test]
    fn cheaper_wins_under_cost_and_faster_under_latency() {
        // 0: cheap and slow; 1: dear and fast; equally reliable.
        let inputs = [c(0.0001, 2000.0, 0.95), c(0.002, 300.0, 0.95)];
        assert_eq!(winner(&inputs, Optimize::Cost.weights()), 0);
        assert_eq!(winner(&inputs, Optimize::Latency.weights()), 1);
    }

    #[test]
    fn a_flaky_model_loses_under_reliability() {
        // 0: flaky but cheaper and faster; 1: solid.
        let inputs = [c(0.0005, 400.0, 0.6), c(0.0008, 500.0, 0.99)];
        assert_eq!(winner(&inputs, Optimize::Reliability.weights()), 1);
        // A flaky model's expected cost and latency to success are inflated too.
        let t = score(&inputs, Optimize::Balanced.weights());
        assert!((t[0].expected_cost_usd - 0.0005 / 0.6).abs() < 1e-12);
        assert!(t[0].expected_latency_ms > 400.0);
    }

    #[test]
    fn the_best_candidate_has_zero_terms_and_terms_are_unit_free() {
        // Perfectly reliable, so expected latency is the latency itself (no fallback term).
        let inputs = [c(0.001, 1000.0, 1.0), c(0.002, 2000.0, 1.0)];
        let t = score(&inputs, Optimize::Balanced.weights());
        assert_eq!(t[0].cost, 0.0);
        assert_eq!(t[0].latency, 0.0);
        // 2× dearer and 2× slower weigh about the same (the cost floor shifts it slightly).
        assert!((t[1].cost - 2f64.ln()).abs() < 0.01, "{}", t[1].cost);
        assert!((t[1].latency - 2f64.ln()).abs() < 0.01, "{}", t[1].latency);
    }

    #[test]
    fn free_local_models_do_not_break_the_ratios() {
        let inputs = [c(0.0, 800.0, 0.9), c(0.00003, 300.0, 0.9)];
        let t = score(&inputs, Optimize::Cost.weights());
        assert!(t.iter().all(|t| t.score.is_finite()));
        assert_eq!(winner(&inputs, Optimize::Cost.weights()), 0);
    }

    /// Moving one weight up never makes that term worse for the winner.
    #[test]
    fn raising_a_weight_never_worsens_that_term_for_the_winner() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..2000 {
            let n = 2 + (rnd() * 5.0) as usize;
            let inputs: Vec<Inputs> = (0..n)
                .map(|_| {
                    q(
                        c(rnd() * 0.01, 50.0 + rnd() * 5000.0, 0.3 + rnd() * 0.7),
                        rnd(),
                    )
                })
                .collect();
            let base = Weights {
                cost: rnd() * 2.0,
                latency: rnd() * 2.0,
                reliability: rnd() * 2.0,
                quality: rnd() * 2.0,
            };
            let before = score(&inputs, base);
            let w0 = rank(&before)[0];
            for term in 0..4 {
                let mut up = base;
                match term {
                    0 => up.cost += 0.5 + rnd() * 3.0,
                    1 => up.latency += 0.5 + rnd() * 3.0,
                    2 => up.reliability += 0.5 + rnd() * 3.0,
                    _ => up.quality += 0.5 + rnd() * 3.0,
                }
                let after = score(&inputs, up);
                let w1 = rank(&after)[0];
                let pick = |t: &Terms| match term {
                    0 => t.cost,
                    1 => t.latency,
                    2 => t.reliability,
                    _ => t.quality,
                };
                assert!(
                    pick(&after[w1]) <= pick(&after[w0]) + 1e-12,
                    "term {term}: winner {w0}→{w1} got worse: {:?} vs {:?}",
                    after[w1],
                    after[w0]
                );
            }
        }
    }

    #[test]
    fn quality_changes_the_ranking_only_with_its_weight() {
        // 0: cheaper, faster, judged poorly; 1: dearer, judged well.
        let inputs = [
            q(c(0.001, 500.0, 0.95), 0.2),
            q(c(0.0015, 600.0, 0.95), 0.9),
        ];
        let balanced = Optimize::Balanced.weights();
        assert_eq!(balanced.quality, 0.0);
        let t = score(&inputs, balanced);
        assert_eq!(winner(&inputs, balanced), 0);
        // The term is computed (and shown) even at weight 0, and does not count.
        assert_eq!(t[1].quality, 0.0);
        assert!(
            (t[0].quality - (0.81f64 / 0.11).ln()).abs() < 1e-9,
            "{}",
            t[0].quality
        );
        let with_quality = Weights {
            quality: 0.5,
            ..balanced
        };
        assert_eq!(winner(&inputs, with_quality), 1);
        let t = score(&inputs, with_quality);
        let expected = t[0].cost + t[0].latency + t[0].reliability + 0.5 * t[0].quality;
        assert!((t[0].score - expected).abs() < 1e-12);
        // Equal quality: the term is 0 for everyone, whatever its weight.
        let same = [q(inputs[0], 0.6), q(inputs[1], 0.6)];
        assert!(score(&same, with_quality).iter().all(|t| t.quality == 0.0));
        assert_eq!(winner(&same, with_quality), 0);
    }

    #[test]
    fn ties_break_by_cost_then_route_order() {
        let inputs = [
            c(0.002, 500.0, 0.9),
            c(0.001, 500.0, 0.9),
            c(0.001, 500.0, 0.9),
        ];
        let w = Weights {
            cost: 0.0,
            latency: 1.0,
            reliability: 0.0,
            quality: 0.0,
        };
        assert_eq!(rank(&score(&inputs, w)), vec![1, 2, 0]);
    }

    #[test]
    fn attempt_cost_uses_per_million_prices_and_long_context_tiers() {
        let catalog = crate::catalog::Catalog::builtin().unwrap();
        let mini = catalog.get("gpt-4o-mini").unwrap();
        let cost = attempt_cost(mini, 1_000_000, 1_000_000.0);
        assert!((cost - 0.75).abs() < 1e-9, "{cost}");
        let sonnet = catalog.get("claude-sonnet-4").unwrap();
        assert!((attempt_cost(sonnet, 200_000, 0.0) - 0.6).abs() < 1e-9);
        assert!((attempt_cost(sonnet, 200_001, 0.0) - 200_001.0 * 6.0 / 1e6).abs() < 1e-9);
        assert_eq!(
            attempt_cost(catalog.get("llama3.2").unwrap(), 5000, 500.0),
            0.0
        );
    }
}
