use super::*;
use crate::config::{Vars, load_str};

fn traces(ratio: f64) -> Arc<Traces> {
    let text = format!(
        "[providers.local]\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [models.llama]\nprovider = \"local\"\ncatalog = \"llama3.2\"\n\
         [telemetry.traces]\nendpoint = \"http://127.0.0.1:9\"\nsample_ratio = {ratio}\n\
         batch_delay_ms = 60000"
    );
    let config = load_str(&text, &Vars::only(&[])).unwrap();
    Traces::start(&config).unwrap().unwrap()
}

fn headers(traceparent: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("traceparent", traceparent.parse().unwrap());
    h
}

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn an_incoming_traceparent_is_the_parent_and_decides_sampling() {
    // Nothing new is sampled at ratio 0, but a sampled parent is followed.
    let t = traces(0.0);
    let trace = t.begin(&headers(PARENT), Instant::now());
    assert_eq!(
        format!("{:032x}", trace.context.trace_id()),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        trace.parent.map(|p| format!("{p:016x}")).as_deref(),
        Some("00f067aa0ba902b7")
    );
    assert!(trace.marks.is_some());
    let unsampled = PARENT.replace("-01", "-00");
    assert!(
        t.begin(&headers(&unsampled), Instant::now())
            .marks
            .is_none()
    );
    let root = t.begin(&HeaderMap::new(), Instant::now());
    assert!(root.marks.is_none() && root.parent.is_none());
    // At ratio 1 a root is sampled.
    assert!(
        traces(1.0)
            .begin(&HeaderMap::new(), Instant::now())
            .marks
            .is_some()
    );
}

#[tokio::test]
async fn a_hostile_traceparent_starts_a_new_trace() {
    let t = traces(1.0);
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y",
        "garbage",
    ] {
        let Ok(value) = bad.parse() else { continue };
        let mut h = HeaderMap::new();
        h.insert("traceparent", value);
        let trace = t.begin(&h, Instant::now());
        assert!(trace.parent.is_none(), "{bad}");
        assert_ne!(
            format!("{:032x}", trace.context.trace_id()),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{bad}"
        );
    }
}

#[tokio::test]
async fn the_upstream_traceparent_names_the_attempt_span() {
    let t = traces(1.0);
    let trace = t.begin(&headers(PARENT), Instant::now());
    let header = trace.attempt(&ModelId::new("llama")).to_string();
    let marks = trace.take_marks().unwrap();
    let span = format!("{:016x}", marks.attempts[0].span_id);
    assert_eq!(
        header,
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span}-01")
    );
    assert_ne!(span, "00f067aa0ba902b7");
    // Not sampled: the request's own context goes upstream, marked unsampled, and nothing is
    // noted.
    let quiet = traces(0.0).begin(&HeaderMap::new(), Instant::now());
    let header = quiet.attempt(&ModelId::new("llama")).to_string();
    assert!(header.ends_with("-00"), "{header}");
    assert!(quiet.take_marks().is_none());
}

fn record(model: &str, outcome: &str, latency_ms: f64) -> AttemptRecord {
    AttemptRecord {
        model: model.into(),
        provider: "local".into(),
        outcome: outcome.into(),
        status: (outcome == "server_error").then_some(500),
        latency_ms,
        detail: None,
        cost_picousd: None,
    }
}

#[tokio::test(start_paused = true)]
async fn retries_and_hedges_become_attempt_spans_inside_the_request() {
    let t = traces(1.0);
    let trace = t.begin(&HeaderMap::new(), Instant::now());
    let (a, b) = (ModelId::new("llama"), ModelId::new("other"));
    // llama fails after 100 ms; retried 50 ms later; at 250 ms a hedge on `other` starts and
    // wins at 300 ms while the retry is cancelled.
    trace.attempt(&a);
    tokio::time::advance(Duration::from_millis(150)).await;
    trace.attempt(&a);
    tokio::time::advance(Duration::from_millis(100)).await;
    trace.attempt(&b);
    tokio::time::advance(Duration::from_millis(50)).await;
    let marks = trace.take_marks().unwrap();
    let row = RequestRecord {
        attempts: vec![
            record("llama", "server_error", 100.0),
            record("other", "ok", 50.0),
            record("llama", "hedge_cancelled", 150.0),
        ],
        ..test_row()
    };
    let spans = spans::build(&t, &trace, &marks, &row, Instant::now());
    let request = spans.last().unwrap();
    assert_eq!(request.name, "POST /v1/chat/completions");
    let attempts: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    assert_eq!(attempts.len(), 3);
    let attr = |s: &SpanData, k: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|s| attr(s, "switchyard.attempt.outcome").unwrap())
        .collect();
    assert_eq!(outcomes, ["server_error", "hedge_cancelled", "ok"]);
    assert!(matches!(attempts[0].status, Status::Error { .. }));
    assert_eq!(
        attr(attempts[2], "switchyard.attempt.hedge").as_deref(),
        Some("true")
    );
    assert_eq!(attr(attempts[1], "switchyard.attempt.hedge"), None);
    assert_eq!(
        attr(request, "switchyard.hedge").as_deref(),
        Some("hedge_won")
    );
    for s in &spans[..spans.len() - 1] {
        assert_eq!(s.parent_span_id, request.span_context.span_id());
        assert!(s.start_time >= request.start_time && s.end_time <= request.end_time);
        assert!(s.start_time <= s.end_time);
    }
    let ms = |s: &SpanData| s.end_time.duration_since(s.start_time).unwrap().as_millis();
    assert_eq!(
        attempts.iter().map(|s| ms(s)).collect::<Vec<_>>(),
        [100, 150, 50]
    );
}

/// A row as the exchange writes it (through serde, so new columns with defaults need no edit).
fn test_row() -> RequestRecord {
    serde_json::from_value(serde_json::json!({
        "id": "req_1", "client_request_id": null, "ts_ms": 0, "key_id": null,
        "endpoint": "/v1/chat/completions", "route": "auto", "task": null,
        "model": "other", "provider": "local", "status": 200, "error_code": null,
        "stream": false, "cache": "bypass", "prompt_tokens": 10, "completion_tokens": 5,
        "cached_tokens": 0, "reasoning_tokens": 0, "usage_estimated": false,
        "cost_picousd": 0, "latency_ms": 300.0, "ttft_ms": null, "overhead_ms": 1.0,
        "shadow_of": null, "response_text": null, "attempts": [], "policies": []
    }))
    .unwrap()
}

#[test]
fn traceparent_renders_w3c() {
    let t = TraceParent {
        trace_id: [0xab; 16],
        span_id: [1, 2, 3, 4, 5, 6, 7, 8],
        sampled: true,
    };
    assert_eq!(
        t.to_string(),
        format!("00-{}-0102030405060708-01", "ab".repeat(16))
    );
}
