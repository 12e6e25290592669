//! The split's properties: shares hold within a binomial bound, a sticky value keeps its arm,
//! distinct values spread by the shares, a filtered arm's requests go to the eligible arms by
//! weight, fallbacks keep the score's order.

use std::collections::BTreeMap;

use super::*;
use crate::candidates::{self, FilterReason, Filtered, Preferences};
use crate::catalog::Catalog;
use crate::health::Health;
use crate::quality::{Quality, QualityConfig};
use crate::route::{ModelConfig, Optimize, RouteConfig};
use switchyard_types::ids::ProviderId;
use switchyard_types::rng::SplitMix64;
use switchyard_types::{ChatRequest, Message, Role};

const MODELS: [&str; 4] = [
    "gpt-4o-mini",
    "claude-3-5-haiku",
    "gemini-2.0-flash",
    "llama3.2",
];

/// The four models ranked by the score (no health yet: by cost), nothing filtered.
fn decision() -> Decision {
    let catalog = Catalog::builtin().unwrap();
    let configured: BTreeMap<ModelId, ModelConfig> = MODELS
        .iter()
        .map(|m| {
            let id = ModelId::new(m);
            let cfg = ModelConfig {
                id: id.clone(),
                provider: ProviderId::new("p"),
                upstream: (*m).to_owned(),
                entry: catalog.get(m).unwrap().clone(),
            };
            (id, cfg)
        })
        .collect();
    let ids: Vec<ModelId> = MODELS.iter().map(ModelId::new).collect();
    let route = RouteConfig::default_over(ids.clone());
    let request = ChatRequest::new("r", vec![Message::new(Role::User, "hi")]);
    let prefs = Preferences {
        weights: Optimize::Cost.weights(),
        max_cost_usd: None,
        max_latency_ms: None,
        defer_context: false,
    };
    let d = candidates::decide(
        &configured,
        &Health::new(Vec::new()),
        &Quality::new(QualityConfig::default()),
        &route,
        &ids,
        &request,
        &prefs,
        tokio::time::Instant::now(),
    );
    assert_eq!(d.eligible().len(), 4);
    d
}

/// `model` filtered, as if it could not take the request.
fn filter(d: &mut Decision, model: &str) {
    let pos = d
        .eligible()
        .iter()
        .position(|c| c.model.as_str() == model)
        .unwrap();
    let mut c = d.candidates.remove(pos);
    c.filtered = Some(Filtered {
        reason: FilterReason::Tools,
        detail: "test".into(),
    });
    c.terms = None;
    d.eligible -= 1;
    d.candidates.push(c);
}

fn split(weights: &[(&str, f64)], by: SplitBy) -> Split {
    Split::new(weights.iter().map(|(m, w)| (ModelId::new(m), *w)), by).unwrap()
}

/// `n` decisions by `draw(i)`; how many went to each arm (by the first candidate).
fn tally(
    s: &Split,
    base: &Decision,
    n: usize,
    mut draw: impl FnMut(usize) -> f64,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let mut d = base.clone();
        assign(s, "r", Draw::Random(draw(i)), &mut d);
        let first = d.chosen().unwrap().model.to_string();
        assert_eq!(
            d.split.as_ref().unwrap().arm.as_ref().unwrap().as_str(),
            first
        );
        *out.entry(first).or_default() += 1;
    }
    out
}

/// |count − np| within 4.5 standard deviations of a binomial(n, p).
fn within_binomial(count: u64, n: usize, p: f64) -> bool {
    let n = n as f64;
    let sd = (n * p * (1.0 - p)).sqrt();
    (count as f64 - n * p).abs() <= 4.5 * sd.max(1.0)
}

#[test]
fn shares_hold_within_a_binomial_bound_over_10000_random_decisions() {
    let base = decision();
    let s = split(
        &[("gpt-4o-mini", 90.0), ("claude-3-5-haiku", 10.0)],
        SplitBy::Random,
    );
    let mut rng = SplitMix64::new(7);
    let counts = tally(&s, &base, 10_000, |_| 0.0);
    // A constant point is one arm every time: the draw is what spreads them.
    assert_eq!(counts.len(), 1);
    let mut counts = BTreeMap::<String, u64>::new();
    for _ in 0..10_000 {
        let mut d = base.clone();
        assign(&s, "r", Draw::Random(rng.next_f64()), &mut d);
        *counts
            .entry(d.chosen().unwrap().model.to_string())
            .or_default() += 1;
    }
    let mini = counts["gpt-4o-mini"];
    let haiku = counts["claude-3-5-haiku"];
    assert_eq!(mini + haiku, 10_000, "{counts:?}");
    assert!(within_binomial(haiku, 10_000, 0.1), "{counts:?}");
    assert!(within_binomial(mini, 10_000, 0.9), "{counts:?}");

    // Three arms with uneven integer weights.
    let s = split(
        &[
            ("gpt-4o-mini", 5.0),
            ("gemini-2.0-flash", 3.0),
            ("llama3.2", 2.0),
        ],
        SplitBy::Random,
    );
    let counts = tally(&s, &base, 10_000, |_| rng.next_f64());
    for (m, p) in [
        ("gpt-4o-mini", 0.5),
        ("gemini-2.0-flash", 0.3),
        ("llama3.2", 0.2),
    ] {
        assert!(within_binomial(counts[m], 10_000, p), "{m}: {counts:?}");
    }
}

#[test]
fn a_key_stays_on_its_arm_and_distinct_keys_spread_by_the_shares() {
    let base = decision();
    let s = split(
        &[("gpt-4o-mini", 70.0), ("claude-3-5-haiku", 30.0)],
        SplitBy::Key,
    );
    let place = |key: &str| {
        let mut d = base.clone();
        assign(&s, "canary", Draw::Sticky(key), &mut d);
        let choice = d.split.clone().unwrap();
        assert!(choice.sticky);
        assert_eq!(choice.by, "key");
        choice.arm.unwrap()
    };
    for key in ["key_a", "key_b", "key_0123456789", ""] {
        let first = place(key);
        for _ in 0..200 {
            assert_eq!(place(key), first, "{key:?} moved");
        }
    }
    let mut haiku = 0u64;
    for i in 0..10_000 {
        if place(&format!("key_{i:x}")).as_str() == "claude-3-5-haiku" {
            haiku += 1;
        }
    }
    assert!(within_binomial(haiku, 10_000, 0.3), "{haiku} of 10000");
    // The route is part of the hash: the same key is placed independently on another route.
    let elsewhere = (0..1000)
        .filter(|i| {
            let k = format!("key_{i}");
            sticky_point("canary", &k) == sticky_point("other", &k)
        })
        .count();
    assert_eq!(elsewhere, 0);
}

#[test]
fn moving_shares_moves_only_the_keys_in_the_slice_that_changed_hands() {
    let base = decision();
    let before = split(
        &[("gpt-4o-mini", 90.0), ("claude-3-5-haiku", 10.0)],
        SplitBy::Key,
    );
    let after = split(
        &[("gpt-4o-mini", 80.0), ("claude-3-5-haiku", 20.0)],
        SplitBy::Key,
    );
    let arm = |s: &Split, key: &str| {
        let mut d = base.clone();
        assign(s, "r", Draw::Sticky(key), &mut d);
        d.split.unwrap().arm.unwrap()
    };
    let mut moved = 0u64;
    for i in 0..10_000 {
        let key = format!("k{i}");
        let (a, b) = (arm(&before, &key), arm(&after, &key));
        if a != b {
            // Only towards the arm whose share grew.
            assert_eq!(a.as_str(), "gpt-4o-mini");
            assert_eq!(b.as_str(), "claude-3-5-haiku");
            moved += 1;
        }
    }
    assert!(within_binomial(moved, 10_000, 0.1), "{moved} moved");
}

#[test]
fn the_arm_goes_first_and_the_fallbacks_keep_the_score_order() {
    let base = decision();
    let order: Vec<ModelId> = base.eligible().iter().map(|c| c.model.clone()).collect();
    for arm in &order {
        let s = split(&[(arm.as_str(), 1.0)], SplitBy::Random);
        let mut d = base.clone();
        assign(&s, "r", Draw::Random(0.5), &mut d);
        let got: Vec<ModelId> = d.eligible().iter().map(|c| c.model.clone()).collect();
        let mut want = vec![arm.clone()];
        want.extend(order.iter().filter(|m| *m != arm).cloned());
        assert_eq!(got, want);
        assert_eq!(d.split.as_ref().unwrap().share, 1.0);
        let reason = d.reason();
        assert!(reason.starts_with(arm.as_str()), "{reason}");
        assert!(reason.contains("fallbacks in score order"), "{reason}");
    }
}

#[test]
fn a_filtered_arm_sends_its_requests_to_the_eligible_arms_by_weight() {
    let mut base = decision();
    filter(&mut base, "llama3.2");
    let s = split(
        &[
            ("gpt-4o-mini", 50.0),
            ("gemini-2.0-flash", 30.0),
            ("llama3.2", 20.0),
        ],
        SplitBy::Random,
    );
    let mut rng = SplitMix64::new(11);
    let mut counts = BTreeMap::<String, u64>::new();
    let mut replaced = 0;
    for _ in 0..10_000 {
        let mut d = base.clone();
        assign(&s, "r", Draw::Random(rng.next_f64()), &mut d);
        let choice = d.split.clone().unwrap();
        let arm = choice.arm.unwrap();
        assert_ne!(arm.as_str(), "llama3.2");
        if let Some(other) = &choice.instead_of {
            assert_eq!(other.as_str(), "llama3.2");
            replaced += 1;
        }
        assert_eq!(d.chosen().unwrap().model, arm);
        *counts.entry(arm.to_string()).or_default() += 1;
    }
    assert!(within_binomial(replaced, 10_000, 0.2), "{replaced}");
    assert!(
        within_binomial(counts["gpt-4o-mini"], 10_000, 5.0 / 8.0),
        "{counts:?}"
    );
    assert!(
        within_binomial(counts["gemini-2.0-flash"], 10_000, 3.0 / 8.0),
        "{counts:?}"
    );
}

#[test]
fn with_no_eligible_arm_the_score_decides() {
    let mut base = decision();
    filter(&mut base, "llama3.2");
    let order: Vec<ModelId> = base.eligible().iter().map(|c| c.model.clone()).collect();
    let reason = base.reason();
    let s = split(&[("llama3.2", 1.0)], SplitBy::Key);
    let mut d = base.clone();
    assign(&s, "r", Draw::Sticky("key_x"), &mut d);
    let got: Vec<ModelId> = d.eligible().iter().map(|c| c.model.clone()).collect();
    assert_eq!(got, order);
    let choice = d.split.clone().unwrap();
    assert_eq!(choice.arm, None);
    assert_eq!(choice.instead_of.unwrap().as_str(), "llama3.2");
    assert_eq!(d.reason(), reason);
}

#[test]
fn zero_weight_arms_never_win_and_weights_need_a_positive_sum() {
    let base = decision();
    let s = split(&[("gpt-4o-mini", 0.0), ("llama3.2", 1.0)], SplitBy::Random);
    let counts = tally(&s, &base, 1000, |i| i as f64 / 1000.0);
    assert_eq!(counts.get("gpt-4o-mini"), None);
    assert_eq!(counts["llama3.2"], 1000);
    let zero = [(ModelId::new("a"), 0.0), (ModelId::new("b"), 0.0)];
    assert_eq!(Split::new(zero, SplitBy::Key), None);
    assert_eq!(
        Split::new(
            [(ModelId::new("a"), -1.0), (ModelId::new("b"), 2.0)],
            SplitBy::Key
        ),
        None
    );
    assert_eq!(
        Split::new([(ModelId::new("a"), f64::NAN)], SplitBy::Key),
        None
    );
    // A point at the very top of the range still lands on an arm.
    let mut d = base.clone();
    assign(&s, "r", Draw::Random(0.999_999_999_999), &mut d);
    assert_eq!(d.split.unwrap().arm.unwrap().as_str(), "llama3.2");
}

#[test]
fn split_by_parses_what_the_config_allows() {
    assert_eq!(SplitBy::parse("key"), Ok(SplitBy::Key));
    assert_eq!(SplitBy::parse("user"), Ok(SplitBy::User));
    assert_eq!(SplitBy::parse("random"), Ok(SplitBy::Random));
    assert_eq!(
        SplitBy::parse("metadata.tenant"),
        Ok(SplitBy::Metadata("tenant".into()))
    );
    for bad in [
        "",
        "metadata.",
        "Key",
        "users",
        &format!("metadata.{}", "x".repeat(65)),
    ] {
        assert!(SplitBy::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(SplitBy::Metadata("t".into()).label(), "metadata.t");
}

#[test]
fn arm_counters_add_up() {
    let s = split(&[("a", 1.0), ("b", 1.0)], SplitBy::Key);
    let stats = ArmStats::new([("r", &s)]);
    let a = ModelId::new("a");
    let ok = |by_arm, ms, cost| ArmOutcome::Answered {
        by_arm,
        latency: Duration::from_millis(ms),
        cost_picousd: cost,
    };
    stats.record("r", &a, ok(true, 100, 5));
    stats.record("r", &a, ok(true, 300, 7));
    stats.record("r", &a, ok(false, 50, 11));
    stats.record("r", &a, ArmOutcome::Failed);
    stats.record("other", &a, ArmOutcome::Failed);
    stats.record("r", &ModelId::new("c"), ArmOutcome::Failed);
    let snap = stats.snapshot();
    let c = snap["r"][&a];
    assert_eq!(
        (c.requests, c.successes, c.fallbacks, c.failures),
        (4, 2, 1, 1)
    );
    assert_eq!(c.latency_ms_sum, 400.0);
    assert_eq!(c.cost_picousd, 23);
    assert_eq!(snap["r"][&ModelId::new("b")], ArmCounters::default());
    assert_eq!(snap.len(), 1);
}
