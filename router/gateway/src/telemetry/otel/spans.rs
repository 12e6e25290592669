//! A finished request's spans, built from its log row and marks. Every child lies inside the
//! request span: times are clamped to [arrival, finish].

use super::*;

/// The request span and its children, children first.
pub(super) fn build(
    traces: &Traces,
    trace: &Trace,
    marks: &Marks,
    row: &RequestRecord,
    end: Instant,
) -> Vec<SpanData> {
    let at = |i: Instant| trace.wall(i.clamp(trace.start, end));
    let b = Builder { traces, trace };
    let operation = match &marks.request {
        Some(r) if r.embeddings => "embeddings",
        _ => "chat",
    };
    let mut spans = Vec::new();
    for r in &marks.routing {
        spans.push(b.child("switchyard.routing", (at(r.start), at(r.end)), routing(r)));
    }
    for p in &marks.policies {
        let name = format!("switchyard.policy {}", p.name);
        let mut span = b.child(name, (at(p.start), at(p.end)), policy(p));
        if matches!(p.outcome, "failed" | "bypassed") {
            span.status = error(format!("policy {} {}", p.name, p.outcome));
        }
        spans.push(span);
    }
    for c in &marks.cache {
        let attrs = vec![KeyValue::new("switchyard.cache", c.outcome)];
        spans.push(b.child("switchyard.cache", (at(c.start), at(c.end)), attrs));
    }
    let attempts = attempts(traces, marks, row, operation, end);
    let hedge = hedge_outcome(&attempts);
    for a in attempts {
        let mut span = b.child(a.name, (at(a.start), at(a.end)), a.attributes);
        span.span_context = b.context(a.span_id);
        span.span_kind = SpanKind::Client;
        span.status = a.status;
        spans.push(span);
    }
    let mut attrs = request_attributes(traces, marks, row, operation);
    if let Some(h) = hedge {
        attrs.push(KeyValue::new("switchyard.hedge", h));
    }
    let failed = row.status >= 500
        || (row.status < 400
            && row
                .error_code
                .as_deref()
                .is_some_and(|c| !matches!(c, "client_closed" | "cancelled")));
    spans.push(SpanData {
        span_context: trace.context.clone(),
        parent_span_id: trace.parent.unwrap_or(SpanId::INVALID),
        parent_span_is_remote: trace.parent.is_some(),
        span_kind: SpanKind::Server,
        name: format!("POST {}", row.endpoint).into(),
        start_time: trace.wall(trace.start),
        end_time: trace.wall(end),
        attributes: attrs,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: if failed {
            error(
                row.error_code
                    .clone()
                    .unwrap_or_else(|| format!("HTTP {}", row.status)),
            )
        } else {
            Status::Unset
        },
        instrumentation_scope: traces.scope.clone(),
    });
    spans
}

fn error(description: String) -> Status {
    Status::Error {
        description: description.into(),
    }
}

struct Builder<'a> {
    traces: &'a Traces,
    trace: &'a Trace,
}

impl Builder<'_> {
    fn context(&self, span_id: SpanId) -> SpanContext {
        let c = &self.trace.context;
        SpanContext::new(
            c.trace_id(),
            span_id,
            TraceFlags::SAMPLED,
            false,
            c.trace_state().clone(),
        )
    }

    /// An internal span under the request span, with a new id.
    fn child(
        &self,
        name: impl Into<Cow<'static, str>>,
        (start, end): (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
    ) -> SpanData {
        SpanData {
            span_context: self.context(self.traces.ids.new_span_id()),
            parent_span_id: self.trace.context.span_id(),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: start,
            end_time: end.max(start),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.traces.scope.clone(),
        }
    }
}

fn routing(r: &RoutingMark) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("switchyard.route", r.route.clone()),
        KeyValue::new(
            "switchyard.routing.candidate_count",
            r.candidates.len() as i64,
        ),
        KeyValue::new("switchyard.routing.eligible_count", r.scores.len() as i64),
        KeyValue::new(
            "switchyard.routing.candidates",
            strings(r.candidates.clone()),
        ),
        KeyValue::new(
            "switchyard.routing.scores",
            Value::Array(Array::F64(r.scores.clone())),
        ),
        KeyValue::new(
            "switchyard.routing.count_ms",
            r.count.as_secs_f64() * 1000.0,
        ),
        KeyValue::new(
            "switchyard.routing.prompt_tokens",
            i64::from(r.prompt_tokens),
        ),
        KeyValue::new("switchyard.chosen_reason", r.reason.clone()),
    ];
    if let Some(first) = r.candidates.first().filter(|_| !r.scores.is_empty()) {
        attrs.push(KeyValue::new("switchyard.routing.chosen", first.clone()));
    }
    if !r.filtered.is_empty() {
        attrs.push(KeyValue::new(
            "switchyard.routing.filtered",
            strings(r.filtered.clone()),
        ));
    }
    attrs
}

fn policy(p: &PolicyMark) -> Vec<KeyValue> {
    let mut attrs = vec![
        KeyValue::new("switchyard.policy.name", p.name.clone()),
        KeyValue::new("switchyard.policy.outcome", p.outcome),
        KeyValue::new("switchyard.policy.edits", p.edits as i64),
    ];
    if let Some(e) = &p.error {
        attrs.push(KeyValue::new("error.type", e.clone()));
    }
    attrs
}

/// One upstream attempt's span, before it is built.
struct AttemptSpan {
    span_id: SpanId,
    name: String,
    start: Instant,
    end: Instant,
    /// Until the attempt returned (its latency): what overlap, hence hedging, is judged by.
    busy_until: Instant,
    outcome: String,
    hedge: bool,
    attributes: Vec<KeyValue>,
    status: Status,
}

/// The attempt marks matched to the row's attempt records. A mark with no record is an attempt
/// the client left during; a streamed answer's winning attempt lasts until the stream ends.
fn attempts(
    traces: &Traces,
    marks: &Marks,
    row: &RequestRecord,
    operation: &'static str,
    end: Instant,
) -> Vec<AttemptSpan> {
    let mut records = records_by_model(&row.attempts);
    let mut out: Vec<AttemptSpan> = Vec::new();
    for (i, mark) in marks.attempts.iter().enumerate() {
        let record = records
            .get_mut(mark.model.as_str())
            .and_then(VecDeque::pop_front);
        let latency = record.map(|r| Duration::from_secs_f64(r.latency_ms.max(0.0) / 1000.0));
        let busy_until = latency.map_or(end, |l| (mark.start + l).min(end));
        let outcome = record.map_or("abandoned", |r| r.outcome.as_str());
        let ok = outcome == "ok";
        let stop = if ok && row.stream { end } else { busy_until };
        let hedge = out
            .iter()
            .any(|o| o.start <= mark.start && mark.start < o.busy_until);
        let up = traces.models.get(&mark.model);
        let upstream = up.map_or(mark.model.as_str(), |u| u.name.as_str());
        let mut attrs = vec![
            KeyValue::new("gen_ai.operation.name", operation),
            KeyValue::new("gen_ai.request.model", upstream.to_owned()),
            KeyValue::new("switchyard.model", mark.model.to_string()),
            KeyValue::new("switchyard.attempt.index", (i + 1) as i64),
            KeyValue::new("switchyard.attempt.outcome", outcome.to_owned()),
        ];
        if let Some(u) = up {
            attrs.push(KeyValue::new("gen_ai.provider.name", u.provider.clone()));
            if let Some((host, port)) = &u.host {
                attrs.push(KeyValue::new("server.address", host.clone()));
                attrs.extend(port.map(|p| KeyValue::new("server.port", i64::from(p))));
            }
        }
        if hedge {
            attrs.push(KeyValue::new("switchyard.attempt.hedge", true));
        }
        if let Some(status) = record.and_then(|r| r.status) {
            attrs.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(l) = latency.filter(|_| ok && row.stream) {
            attrs.push(KeyValue::new(
                "switchyard.ttft_ms",
                l.as_secs_f64() * 1000.0,
            ));
        }
        let failed = !matches!(outcome, "ok" | "hedge_cancelled" | "abandoned");
        let status = if failed {
            attrs.push(KeyValue::new("error.type", outcome.to_owned()));
            let code = record
                .and_then(|r| r.status)
                .map(|s| format!(" (HTTP {s})"));
            error(format!("{outcome}{}", code.unwrap_or_default()))
        } else {
            Status::Unset
        };
        if ok {
            attrs.push(KeyValue::new("gen_ai.response.model", upstream.to_owned()));
            if !marks.finish_reasons.is_empty() {
                let reasons = marks.finish_reasons.iter().copied();
                attrs.push(KeyValue::new(
                    "gen_ai.response.finish_reasons",
                    strings(reasons),
                ));
            }
        }
        out.push(AttemptSpan {
            span_id: mark.span_id,
            name: format!("{operation} {upstream}"),
            start: mark.start,
            end: stop,
            busy_until,
            outcome: outcome.to_owned(),
            hedge,
            attributes: attrs,
            status,
        });
    }
    out
}

/// Whether a hedge raced the first attempt, and who won: `hedge_won`, `primary_won` or
/// `both_failed` (as the `routing.hedge` explanation says them).
fn hedge_outcome(attempts: &[AttemptSpan]) -> Option<&'static str> {
    let h = attempts.iter().position(|a| a.hedge)?;
    let primary = attempts[..h]
        .iter()
        .rfind(|a| a.start <= attempts[h].start)?;
    Some(if attempts[h].outcome == "ok" {
        "hedge_won"
    } else if primary.outcome == "ok" {
        "primary_won"
    } else {
        "both_failed"
    })
}

fn request_attributes(
    traces: &Traces,
    marks: &Marks,
    row: &RequestRecord,
    operation: &'static str,
) -> Vec<KeyValue> {
    let calls = row
        .attempts
        .iter()
        .filter(|a| !matches!(a.outcome.as_str(), "skipped" | "unsupported"))
        .count();
    let mut attrs = vec![
        KeyValue::new("http.request.method", "POST"),
        KeyValue::new("http.route", row.endpoint.clone()),
        KeyValue::new("http.response.status_code", i64::from(row.status)),
        KeyValue::new("gen_ai.operation.name", operation),
        KeyValue::new("switchyard.request_id", row.id.clone()),
        KeyValue::new("switchyard.route", row.route.clone()),
        KeyValue::new("switchyard.cache", row.cache.clone()),
        KeyValue::new("switchyard.attempts", calls as i64),
        KeyValue::new(
            "switchyard.cost_usd",
            switchyard_types::money::pico_to_usd(row.cost_picousd),
        ),
        KeyValue::new("switchyard.stream", row.stream),
        KeyValue::new("switchyard.overhead_ms", row.overhead_ms),
        KeyValue::new("gen_ai.usage.input_tokens", i64::from(row.prompt_tokens)),
        KeyValue::new(
            "gen_ai.usage.output_tokens",
            i64::from(row.completion_tokens),
        ),
    ];
    let mut opt = |key: &'static str, value: Option<Value>| {
        attrs.extend(value.map(|v| KeyValue::new(key, v)));
    };
    let request = marks.request.as_ref();
    opt(
        "gen_ai.request.model",
        request.map(|r| r.model.clone().into()),
    );
    opt(
        "gen_ai.request.max_tokens",
        request
            .and_then(|r| r.max_tokens)
            .map(|n| i64::from(n).into()),
    );
    opt("gen_ai.response.model", row.model.clone().map(Into::into));
    let provider = row.provider.as_deref().and_then(|p| {
        let name = traces.providers.get(p)?;
        Some(name.clone().into())
    });
    opt("gen_ai.provider.name", provider);
    if !marks.finish_reasons.is_empty() {
        let reasons = marks.finish_reasons.iter().copied();
        opt("gen_ai.response.finish_reasons", Some(strings(reasons)));
    }
    opt(
        "switchyard.usage_estimated",
        row.usage_estimated.then_some(true.into()),
    );
    opt("switchyard.ttft_ms", row.ttft_ms.map(Into::into));
    opt("switchyard.key_id", row.key_id.clone().map(Into::into));
    opt("error.type", row.error_code.clone().map(Into::into));
    let reason = marks.routing.last().map(|r| r.reason.clone().into());
    opt("switchyard.chosen_reason", reason);
    let skipped: Vec<String> = row
        .attempts
        .iter()
        .filter(|a| a.outcome == "skipped")
        .map(|a| format!("{}: {}", a.model, a.detail.as_deref().unwrap_or("skipped")))
        .collect();
    if !skipped.is_empty() {
        opt("switchyard.skipped", Some(strings(skipped)));
    }
    opt("gen_ai.input.messages", marks.input.clone().map(Into::into));
    opt(
        "gen_ai.output.messages",
        marks.output.clone().map(Into::into),
    );
    attrs
}
