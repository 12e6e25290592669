//! The pipeline's results: routed answers, the log's attempt and policy records, and the
//! domain errors when no candidate was eligible or every attempt failed.

use super::*;

pub(super) fn attempt_records(attempts: &[Attempt]) -> Vec<AttemptRecord> {
    attempts
        .iter()
        .map(|a| AttemptRecord {
            model: a.model.to_string(),
            provider: a.provider.to_string(),
            outcome: a.outcome.to_owned(),
            status: a.status,
            latency_ms: a.latency_ms,
            detail: a.detail.clone(),
        })
        .collect()
}

pub(super) fn policy_records(runs: &[PolicyRun]) -> Vec<PolicyRecord> {
    runs.iter()
        .map(|r| PolicyRecord {
            policy: r.policy.clone(),
            outcome: r.outcome.to_owned(),
            annotations: r
                .annotations
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect(),
        })
        .collect()
}

pub(super) fn routed<T>(
    s: Success<T>,
    route: String,
    decision: Decision,
    applied: Applied,
    cache: Outcome,
    cost_picousd: i64,
) -> Routed<T> {
    Routed {
        value: s.value,
        model: s.model,
        provider: s.provider,
        route,
        attempts: s.attempts,
        decision,
        latency: s.latency,
        policies: applied.runs,
        headers: applied.headers,
        cache,
        cost_picousd,
    }
}

/// No candidate passed the filters. When one model was named, its own filter decides the
/// error (so `tools` on a model without tools is a 400 naming `tools`); otherwise the client
/// gets every model's reason.
pub(super) fn no_candidate(decision: &Decision) -> Error {
    let filtered: Vec<_> = decision
        .candidates
        .iter()
        .filter_map(|c| c.filtered.as_ref().map(|f| (c, f)))
        .collect();
    let detail = filtered
        .iter()
        .map(|(c, f)| format!("{}: {f}", c.model))
        .collect::<Vec<_>>()
        .join("; ");
    let all_health = !filtered.is_empty()
        && filtered
            .iter()
            .all(|(_, f)| f.reason == FilterReason::Health);
    if all_health {
        return Error::unavailable(&decision.route, &detail);
    }
    if let [(_, f)] = filtered.as_slice() {
        return if f.reason == FilterReason::Context {
            Error::context_length(&f.detail)
        } else {
            Error::invalid_param(f.reason.param(), &f.detail)
        };
    }
    // Every model refused for one reason the request itself can change: name it.
    if let Some((_, first)) = filtered.first()
        && matches!(
            first.reason,
            FilterReason::Dimensions | FilterReason::Native
        )
        && filtered.iter().all(|(_, f)| f.reason == first.reason)
    {
        return Error::invalid_param(first.reason.param(), &detail);
    }
    Error::no_eligible_model(&decision.route, &detail)
}

/// Every attempt failed (or one failed in a way no other model could fix).
pub(super) fn failed(f: Failure, ex: Option<&Exchange>) -> Error {
    if let Some(ex) = ex
        && let Some(last) = f.attempts.last()
    {
        ex.routed(
            &last.model,
            &last.provider,
            attempt_records(&f.attempts),
            Vec::new(),
        );
    }
    let Some((model, err)) = f.last else {
        let detail: Vec<String> = f
            .attempts
            .iter()
            .filter_map(|a| a.detail.as_ref().map(|d| format!("{}: {d}", a.model)))
            .collect();
        return Error::unavailable("the route", &detail.join("; "));
    };
    let tried = execute::upstream_calls(&f.attempts);
    let attempts = (!f.fail_fast && tried > 1).then(|| {
        let summary: Vec<String> = f
            .attempts
            .iter()
            .map(|a| format!("{} ({})", a.model, a.outcome))
            .collect();
        format!("All {tried} attempts failed: {}", summary.join(", "))
    });
    Error::Upstream {
        model: model.to_string(),
        error: err,
        attempts,
    }
}
