//! The pipeline's results: routed answers, the log's attempt and policy records, and the
//! domain errors when no candidate was eligible or every attempt failed.

use super::*;
use switchyard_routing::health::{Health, comeback};

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
            // A hedge's cancelled attempt, or a failed one the provider may have billed: the
            // row's extra cost, attempt by attempt.
            cost_picousd: a.charged.map(|(_, pico)| pico),
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
    shadow: Option<ShadowNote>,
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
        hedge: s.hedge,
        shadow,
    }
}

/// No candidate passed the filters. When one model was named, its own filter decides the
/// error (so `tools` on a model without tools is a 400 naming `tools`); otherwise the client
/// gets every model's reason. When every model is out of service, `health` says when to come
/// back.
pub(super) fn no_candidate(decision: &Decision, health: &Health) -> Error {
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
        let route = format!("route '{}'", decision.route);
        let models = filtered.iter().map(|(c, _)| &c.model);
        return out_of_service(&route, &detail, health, models);
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

/// None of `models` may be tried now: 429 `rate_limit_exceeded` when every one is waiting out
/// an upstream 429 (the client may simply wait), else 503 `no_model_available`; both with the
/// soonest any of them may serve again as `retry-after`, read from their health now.
fn out_of_service<'m>(
    route: &str,
    detail: &str,
    health: &Health,
    models: impl Iterator<Item = &'m ModelId>,
) -> Error {
    let now = Instant::now();
    let reasons = models
        .filter_map(|m| health.get(m.as_str()))
        .filter_map(|h| h.unavailable(now));
    match comeback(now, reasons) {
        Some(c) if c.rate_limited => Error::cooling_down(route, detail, c.after),
        Some(c) => Error::unavailable(route, detail, Some(c.after)),
        // Back already (a cool-down ended since the decision): try again at once.
        None => Error::unavailable(route, detail, Some(Duration::from_secs(1))),
    }
}

/// Every attempt failed (or one failed in a way no other model could fix). When every
/// candidate was skipped (none may be tried now), `health` says when to come back.
pub(super) fn failed(f: Failure, ex: Option<&Exchange>, health: &Health) -> Error {
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
        let skipped = f
            .attempts
            .iter()
            .filter(|a| a.outcome == "skipped")
            .map(|a| &a.model);
        return out_of_service("the route", &detail.join("; "), health, skipped);
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

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_routing::health::HealthConfig;
    use switchyard_types::error::{ErrorKind, ProviderError};

    fn limited(secs: u64) -> ProviderError {
        ProviderError::new(ErrorKind::RateLimited, "slow down")
            .with_retry_after(Some(Duration::from_secs(secs)))
    }

    #[tokio::test(start_paused = true)]
    async fn models_out_of_service_say_when_to_come_back() {
        let ids = [ModelId::new("a"), ModelId::new("b")];
        let health = Health::uniform(&HealthConfig::default(), ids.iter().cloned());
        let (a, b) = (health.get("a").unwrap(), health.get("b").unwrap());
        let now = Instant::now();
        a.record_failure(now, &limited(4), Duration::ZERO);
        b.record_failure(now, &limited(2), Duration::ZERO);
        tokio::time::advance(Duration::from_millis(500)).await;
        // Both wait out a 429: a rate limit, back in ⌈1.5 s⌉.
        let secs = Duration::from_secs;
        assert_eq!(
            out_of_service("the route", "d", &health, ids.iter()),
            Error::cooling_down("the route", "d", secs(2))
        );
        // One of them has its breaker open too: down, and still the soonest comeback.
        for _ in 0..5 {
            let err = ProviderError::new(ErrorKind::Server, "boom");
            a.record_failure(Instant::now(), &err, Duration::ZERO);
        }
        assert_eq!(
            out_of_service("the route", "d", &health, ids.iter()),
            Error::unavailable("the route", "d", Some(secs(2)))
        );
        // Only the models asked about count.
        assert_eq!(
            out_of_service("the route", "d", &health, ids[..1].iter()),
            Error::unavailable("the route", "d", Some(secs(30)))
        );
        // All back by now: come again at once.
        tokio::time::advance(secs(60)).await;
        assert_eq!(
            out_of_service("the route", "d", &health, ids.iter()),
            Error::unavailable("the route", "d", Some(secs(1)))
        );
    }
}
