//! Streams against a real simulator on loopback, through the in-process router: no total
//! deadline unless a route sets one; a client that stops reading has its upstream dropped after
//! `server.write_stall_ms` without harming the model; shutdown's `abort` ends a stream with a
//! `server_shutdown` event; a hostile tool-call index on any wire format is one failed attempt,
//! then a fallback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard::{Gateway, app, demo};
use switchyard_sim::{self as sim, SimHandle};
use tower::ServiceExt;

use crate::common::post_request;

/// Providers, models and routes over the demo's, all on the simulator. `slow` streams 40
/// tokens 50 ms apart (2 s); `firehose` 20 000 tokens 1 ms apart (20 s); each `hostile-*`
/// answers streams with a tool call at index 4294967295 (or, for Gemini, 1024 calls).
const OVERRIDES: &str = r#"
[server]
write_stall_ms = 500

[providers.slow]
kind = "openai"
base_url = "${SWITCHYARD_SIM_URL}/openai/v1"
api_key = "sim"
headers = { "x-sim-tokens" = "40", "x-sim-tpot-ms" = "50" }

[providers.firehose]
kind = "openai"
base_url = "${SWITCHYARD_SIM_URL}/openai/v1"
api_key = "sim"
headers = { "x-sim-tokens" = "20000", "x-sim-tpot-ms" = "1" }

[providers.hostile-openai]
kind = "openai"
base_url = "${SWITCHYARD_SIM_URL}/openai/v1"
api_key = "sim"
headers = { "x-sim-fault" = "tool-index" }

[providers.hostile-anthropic]
kind = "anthropic"
base_url = "${SWITCHYARD_SIM_URL}/anthropic/v1"
api_key = "sim"
headers = { "x-sim-fault" = "tool-index" }

[providers.hostile-gemini]
kind = "gemini"
base_url = "${SWITCHYARD_SIM_URL}/gemini/v1beta"
api_key = "sim"
headers = { "x-sim-fault" = "tool-index" }

[providers.hostile-ollama]
kind = "openai-compatible"
dialect = "ollama"
base_url = "${SWITCHYARD_SIM_URL}/ollama/v1"
headers = { "x-sim-fault" = "tool-index" }

[models.slow]
provider = "slow"
catalog = "gpt-4o-mini"
upstream = "slow-upstream"

[models.firehose]
provider = "firehose"
catalog = "gpt-4o-mini"
upstream = "firehose-upstream"

[models.h-openai]
provider = "hostile-openai"
catalog = "gpt-4o-mini"

[models.h-anthropic]
provider = "hostile-anthropic"
catalog = "claude-3-5-haiku"

[models.h-gemini]
provider = "hostile-gemini"
catalog = "gemini-2.0-flash"

[models.h-ollama]
provider = "hostile-ollama"
catalog = "llama3.2"

# Streams: first token and gaps bounded, no total.
[routes.long]
models = ["slow"]
ttft_ms = 2000
idle_ms = 1000

# The same, with a total shorter than the stream.
[routes.capped]
models = ["slow"]
ttft_ms = 500
idle_ms = 1000
total_ms = 1000

# Cost first: every hostile model is cheaper than gpt-4o, so it is tried first.
[routes.r-openai]
models = ["h-openai", "gpt-4o"]
weights = { cost = 1.0, latency = 0.0, reliability = 0.0 }
[routes.r-anthropic]
models = ["h-anthropic", "gpt-4o"]
weights = { cost = 1.0, latency = 0.0, reliability = 0.0 }
[routes.r-gemini]
models = ["h-gemini", "gpt-4o"]
weights = { cost = 1.0, latency = 0.0, reliability = 0.0 }
[routes.r-ollama]
models = ["h-ollama", "gpt-4o"]
weights = { cost = 1.0, latency = 0.0, reliability = 0.0 }
"#;

struct Setup {
    sim: SimHandle,
    gw: Arc<Gateway>,
}

async fn setup() -> Setup {
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let mut cfg = demo::config_with(&format!("http://{}", sim.addr), Some(OVERRIDES)).unwrap();
    cfg.sim = sim::SimConfig::default();
    Setup {
        gw: Gateway::new(cfg).unwrap(),
        sim,
    }
}

fn stream_body(model: &str) -> Value {
    json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "Tell me."}]})
}

/// A streamed answer: its headers and its body, unread.
async fn open(gw: &Arc<Gateway>, model: &str) -> (http::HeaderMap, Body) {
    let req = post_request("/v1/chat/completions", &stream_body(model));
    let resp = app(gw.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200, "{model}");
    let headers = resp.headers().clone();
    (headers, resp.into_body())
}

/// The rest of a body as text; panics if it does not end within `limit`.
async fn read_to_end(body: &mut Body, limit: Duration) -> String {
    let mut text = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => panic!("the body did not end within {limit:?}"),
            Ok(None) => break,
            Ok(Some(frame)) => {
                if let Some(data) = frame.unwrap().data_ref() {
                    text.extend_from_slice(data);
                }
            }
        }
    }
    String::from_utf8(text).unwrap()
}

/// The `data:` payloads of an SSE text.
fn data(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect()
}

fn failures(gw: &Gateway, model: &str) -> (u64, u32, u32) {
    let h = gw.health.get(model).unwrap();
    let now = tokio::time::Instant::now();
    let snap = h.snapshot(now);
    (
        h.performance(now).failures,
        snap.consecutive_failures,
        snap.in_flight,
    )
}

/// Polls the simulator until `model` shows a cancelled exchange; how long it took.
async fn upstream_cancelled(sim: &SimHandle, model: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while sim.sim.stats().model(model).streams_cancelled == 0 {
        assert!(
            started.elapsed() < within,
            "the upstream of {model} was not closed within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_stream_longer_than_a_would_be_total_completes_unless_the_route_sets_total_ms() {
    let s = setup().await;
    // 2 s of tokens with no total: complete, with [DONE].
    let (_, mut body) = open(&s.gw, "long").await;
    let text = read_to_end(&mut body, Duration::from_secs(30)).await;
    let events = data(&text);
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");
    assert!(events.len() > 40, "every token arrived: {}", events.len());

    // The same stream on a route whose total is 1 s: cut, with an error event and no [DONE].
    let started = Instant::now();
    let (_, mut body) = open(&s.gw, "capped").await;
    let text = read_to_end(&mut body, Duration::from_secs(30)).await;
    let last: Value = serde_json::from_str(data(&text).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{text}");
    assert!(!text.contains("[DONE]"));
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "cut at its total"
    );
    // The total is the route's limit, not the model's failure.
    assert_eq!(failures(&s.gw, "slow"), (0, 0, 0));
}

#[tokio::test]
async fn a_client_that_stops_reading_has_its_upstream_dropped_and_the_model_is_unharmed() {
    let s = setup().await;
    let (_, mut body) = open(&s.gw, "firehose").await;
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    // The client reads nothing more. The upstream would stream for 20 s; it is dropped after
    // the write stall (500 ms), with margin.
    let took = upstream_cancelled(&s.sim, "firehose-upstream", Duration::from_secs(10)).await;
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    assert_eq!(failures(&s.gw, "firehose"), (0, 0, 0));
    assert_eq!(s.sim.sim.stats().model("firehose-upstream").in_flight, 0);
    // A client that comes back gets what was queued, then an error: never a clean end.
    let text = read_to_end(&mut body, Duration::from_secs(10)).await;
    let last: Value = serde_json::from_str(data(&text).last().unwrap()).unwrap();
    assert!(last["error"].is_object(), "{last}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn abort_ends_a_stream_in_flight_with_a_server_shutdown_event() {
    let s = setup().await;
    let (_, mut body) = open(&s.gw, "firehose").await;
    for _ in 0..3 {
        body.frame().await.unwrap().unwrap();
    }
    s.gw.abort.cancel();
    let text = read_to_end(&mut body, Duration::from_secs(10)).await;
    let last: Value = serde_json::from_str(data(&text).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "server_shutdown", "{text}");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down")
    );
    assert!(!text.contains("[DONE]"));
    upstream_cancelled(&s.sim, "firehose-upstream", Duration::from_secs(10)).await;
    assert_eq!(failures(&s.gw, "firehose"), (0, 0, 0));
}

#[tokio::test]
async fn a_hostile_tool_index_on_any_format_is_one_failed_attempt_then_a_fallback() {
    for kind in ["openai", "anthropic", "gemini", "ollama"] {
        // A gateway of its own each time: a fallback's success must not reorder the next route.
        let s = setup().await;
        let (headers, mut body) = open(&s.gw, &format!("r-{kind}")).await;
        let text = read_to_end(&mut body, Duration::from_secs(30)).await;
        assert_eq!(headers["x-switchyard-model"], "gpt-4o", "{kind}");
        assert_eq!(headers["x-switchyard-attempts"], "2", "{kind}");
        assert_eq!(data(&text).last(), Some(&"[DONE]"), "{kind}: {text}");
        let hostile = format!("h-{kind}");
        let h = s.gw.health.get(&hostile).unwrap();
        let snap = h.snapshot(tokio::time::Instant::now());
        assert_eq!(snap.consecutive_failures, 1, "{kind}");
        assert_eq!(snap.in_flight, 0, "{kind}");
        let why = snap.last_error.unwrap();
        assert!(
            why.contains("malformed") || why.contains("Malformed"),
            "{kind}: {why}"
        );
    }
}
