//! `cost-cap`: keep a request within its cost budget.
//!
//! Budget (micro-dollars): the request's/route's `cost_budget`, else config `max_cost_usd`, else
//! config `route.<route name>` (USD as a decimal string). Each candidate's estimate is its prompt
//! plus an output of `max_tokens`, or, without one, of the candidate's `max_output_tokens` capped
//! at `assumed_output_tokens`.
//!
//! Over budget: if lowering `max_tokens` to at least `min_output_tokens` lets the first candidate
//! fit, lower it (and veto the candidates that still do not fit); otherwise veto the candidates
//! over budget; when none is left, refuse with 402 `budget_exceeded`.

use switchyard_policy::prelude::*;

/// Output assumed when the request has no `max_tokens` (capped by the model's own limit).
pub const DEFAULT_ASSUMED_OUTPUT: u32 = 1024;
/// `max_tokens` is never lowered below this; the candidate is vetoed instead.
pub const DEFAULT_MIN_OUTPUT: u32 = 64;

/// The component's entry point.
pub fn evaluate(ctx: RequestCtx) -> Decision {
    decide(&ctx)
}

switchyard_policy::export_policy!(evaluate);

fn usd_setting(cfg: &Config<'_>, key: &str) -> Option<u64> {
    let raw = cfg.string(key)?;
    let v = parse_usd_micros(raw);
    if v.is_none() {
        log::warn(&format!(
            "cost-cap: config `{key}` = {raw:?} is not a USD amount; ignored"
        ));
    }
    v
}

/// The budget in micro-dollars, if any applies.
pub fn budget(ctx: &RequestCtx) -> Option<u64> {
    let cfg = ctx.config();
    ctx.cost_budget
        .or_else(|| usd_setting(&cfg, "max_cost_usd"))
        .or_else(|| usd_setting(&cfg, &format!("route.{}", ctx.route)))
}

fn u32_setting(cfg: &Config<'_>, key: &str, default: u32) -> u32 {
    cfg.u32_or(key, default).unwrap_or_else(|e| {
        log::warn(&format!("cost-cap: {e}; using {default}"));
        default
    })
}

/// The pure decision.
pub fn decide(ctx: &RequestCtx) -> Decision {
    let Some(budget) = budget(ctx) else {
        return allow();
    };
    let Some(first) = ctx.candidates.first() else {
        return allow();
    };
    let cfg = ctx.config();
    let assumed = u32_setting(&cfg, "assumed_output_tokens", DEFAULT_ASSUMED_OUTPUT);
    let min_output = u32_setting(&cfg, "min_output_tokens", DEFAULT_MIN_OUTPUT);

    let output = |c: &Candidate| {
        ctx.max_tokens
            .unwrap_or_else(|| c.max_output_tokens.min(assumed))
    };
    let costs: Vec<u64> = ctx
        .candidates
        .iter()
        .map(|c| request_cost(c, output(c)))
        .collect();
    if costs.iter().all(|&c| c <= budget) {
        return allow();
    }
    let mut d = DecisionBuilder::new();
    let b = format_usd(budget);

    if costs.first().is_some_and(|&c| c > budget)
        && let Some(m) = max_output_within(first, first.prompt_tokens, budget)
        && m >= min_output
    {
        // m < output(first), or the first candidate would already fit.
        d.set_max_tokens(m);
        let over: Vec<usize> = (0..ctx.candidates.len())
            .filter(|&i| {
                ctx.candidates
                    .get(i)
                    .is_some_and(|c| request_cost(c, m) > budget)
            })
            .collect();
        let mut note = format!(
            "lowered max_tokens to {m} to fit {} on {b} ({})",
            first.model,
            format_usd(request_cost(first, m))
        );
        if d.veto(ctx.candidates.len(), |i| over.contains(&i)) {
            note.push_str(&format!("; vetoed {}", names(ctx, &over)));
        }
        log::info(&format!("cost-cap: {note}"));
        d.annotate("cost_cap", note);
        return d.into_allow();
    }

    let over: Vec<usize> = (0..costs.len())
        .filter(|&i| costs.get(i).is_some_and(|&c| c > budget))
        .collect();
    if d.veto(ctx.candidates.len(), |i| over.contains(&i)) {
        let note = format!("vetoed {} over {b}", names(ctx, &over));
        log::info(&format!("cost-cap: {note}"));
        d.annotate("cost_cap", note);
        return d.into_allow();
    }

    // Every candidate is over budget.
    let cheapest = costs.iter().enumerate().min_by_key(|&(_, c)| *c);
    let (model, cost) = cheapest
        .and_then(|(i, &c)| ctx.candidates.get(i).map(|cand| (cand.model.as_str(), c)))
        .unwrap_or(("?", 0));
    let reason = format!(
        "the cheapest estimate, {} on {model}, exceeds the cost budget of {b}",
        format_usd(cost)
    );
    log::info(&format!("cost-cap: deny: {reason}"));
    deny(402, "budget_exceeded", reason)
}

fn names(ctx: &RequestCtx, idx: &[usize]) -> String {
    idx.iter()
        .filter_map(|&i| ctx.candidates.get(i).map(|c| c.model.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_policy::testing::{self, candidate, edits};
    use switchyard_policy::{Edit, validate};

    fn ctx(candidates: Vec<Candidate>, max_tokens: Option<u32>, budget: Option<u64>) -> RequestCtx {
        RequestCtx {
            max_tokens,
            cost_budget: budget,
            ..testing::ctx(vec![], candidates)
        }
    }

    // gpt-4o: $2.50 / $10 per M; mini: $0.15 / $0.60 per M.
    fn big(p: u32) -> Candidate {
        candidate("gpt-4o", 2_500_000, 10_000_000, p)
    }
    fn mini(p: u32) -> Candidate {
        candidate("gpt-4o-mini", 150_000, 600_000, p)
    }

    #[test]
    fn budget_sources_in_order() {
        let mut c = ctx(vec![], None, None);
        assert_eq!(budget(&c), None);
        c.config.push(("route.auto".into(), "0.02".into()));
        assert_eq!(budget(&c), Some(20_000));
        c.config.push(("max_cost_usd".into(), "0.5".into()));
        assert_eq!(budget(&c), Some(500_000));
        c.cost_budget = Some(7);
        assert_eq!(budget(&c), Some(7));
        let mut bad = ctx(vec![], None, None);
        bad.config.push(("max_cost_usd".into(), "cheap".into()));
        assert_eq!(budget(&bad), None);
    }

    #[test]
    fn within_budget_or_no_budget_is_a_no_op() {
        assert_eq!(decide(&ctx(vec![big(1000)], Some(256), None)), allow());
        // 2500 + 2560 = 5060 <= 6000
        assert_eq!(
            decide(&ctx(vec![big(1000), mini(1000)], Some(256), Some(6000))),
            allow()
        );
    }

    #[test]
    fn lowers_max_tokens_when_that_makes_the_first_fit() {
        // gpt-4o, 1000 in, 4096 out: 2500 + 40960 = 43460 > 10000 -> max out (10000-2500)/10 = 750.
        let c = ctx(vec![big(1000), mini(1000)], Some(4096), Some(10_000));
        let d = decide(&c);
        assert_eq!(validate(&d, &c), Ok(()));
        assert_eq!(
            edits(&d),
            vec![
                Edit::SetMaxTokens(750),
                Edit::Annotate((
                    "cost_cap".into(),
                    "lowered max_tokens to 750 to fit gpt-4o on $0.010000 ($0.010000)".into()
                )),
            ]
        );
    }

    #[test]
    fn lowering_also_vetoes_candidates_that_still_do_not_fit() {
        let pricey = candidate("o1", 15_000_000, 60_000_000, 1000); // 15000 in alone
        let c = ctx(vec![big(1000), pricey, mini(1000)], None, Some(10_000));
        let e = edits(&decide(&c));
        assert_eq!(e[0], Edit::SetMaxTokens(750));
        assert_eq!(e[1], Edit::SetCandidates(vec![0, 2]));
        assert!(matches!(&e[2], Edit::Annotate((_, v)) if v.ends_with("; vetoed o1")));
    }

    #[test]
    fn vetoes_when_lowering_would_go_below_min_output() {
        // gpt-4o with 3000 in: 7500 alone; room for 250 out at 10000 but min_output is 300.
        let mut c = ctx(vec![big(3000), mini(3100)], Some(1000), Some(10_000));
        c.config.push(("min_output_tokens".into(), "300".into()));
        let d = decide(&c);
        assert_eq!(validate(&d, &c), Ok(()));
        assert_eq!(
            edits(&d),
            vec![
                Edit::SetCandidates(vec![1]),
                Edit::Annotate(("cost_cap".into(), "vetoed gpt-4o over $0.010000".into())),
            ]
        );
    }

    #[test]
    fn vetoes_later_candidates_over_budget() {
        // First fits (mini), second does not.
        let c = ctx(vec![mini(1000), big(1000)], Some(1000), Some(5000));
        assert_eq!(edits(&decide(&c))[0], Edit::SetCandidates(vec![0]));
    }

    #[test]
    fn denies_when_nothing_fits() {
        let c = ctx(vec![big(100_000), mini(100_000)], None, Some(10_000)); // mini: 15000 + 615
        assert_eq!(
            decide(&c),
            deny(
                402,
                "budget_exceeded",
                "the cheapest estimate, $0.015615 on gpt-4o-mini, exceeds the cost budget of $0.010000"
            )
        );
    }

    #[test]
    fn output_assumption_without_max_tokens() {
        // No max_tokens: min(4096, assumed 1024) = 1024 -> big: 2500 + 10240 = 12740.
        let mut c = ctx(vec![big(1000)], None, Some(12_740));
        assert_eq!(decide(&c), allow());
        c.config
            .push(("assumed_output_tokens".into(), "2000".into()));
        assert_eq!(edits(&decide(&c))[0], Edit::SetMaxTokens(1024));
    }

    #[test]
    fn manifest_cases() {
        let n =
            switchyard_policy::testing::run_manifest_tests(env!("CARGO_MANIFEST_DIR"), evaluate);
        assert_eq!(n, Ok(4));
    }
}
