//! Health as configured and as told to clients, in-process against the simulator: latency
//! priors rank a cold start, `[health]` tables drive the breaker, a client whose every candidate
//! is out of service learns when to come back (429 when they are all rate limited, else 503,
//! both with `retry-after`), and a request one provider cannot express falls back to one that
//! can without hurting the first model's health.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use switchyard::config::{self, Vars};
use switchyard::{Gateway, api};
use switchyard_routing::candidates::DEFAULT_EXPECTED_OUTPUT;
use switchyard_sim::{self as sim, FaultMode, SimHandle};
use tokio::time::Instant;

use crate::common;

const MINI: &str = "gpt-4o-mini";
const HAIKU: &str = "claude-3-5-haiku-20241022";

struct Setup {
    sim: SimHandle,
    gw: Arc<Gateway>,
}

/// Every provider kind on the simulator, the models named, and `extra` (routes, health tables).
async fn setup(models: &[(&str, &str)], extra: &str) -> Setup {
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let url = format!("http://{}", sim.addr);
    let mut text = format!(
        r#"
[providers.openai]
kind = "openai"
base_url = "{url}/openai/v1"
api_key = "sim"
[providers.anthropic]
kind = "anthropic"
base_url = "{url}/anthropic/v1"
api_key = "sim"
[providers.gemini]
kind = "gemini"
base_url = "{url}/gemini/v1beta"
api_key = "sim"
[providers.ollama]
kind = "openai-compatible"
dialect = "ollama"
base_url = "{url}/ollama/v1"
"#
    );
    for (model, provider) in models {
        text.push_str(&format!(
            "[models.\"{model}\"]\nprovider = \"{provider}\"\n"
        ));
    }
    text.push_str(extra);
    let cfg = config::load_str(&text, &Vars::only(&[])).unwrap();
    Setup {
        gw: Gateway::new(cfg).unwrap(),
        sim,
    }
}

/// The pair most tests use: a cheaper OpenAI model first, an Anthropic one after it.
async fn pair(extra: &str) -> Setup {
    let routes = format!(
        r#"
[routes.pair]
models = ["gpt-4o-mini", "claude-3-5-haiku"]
optimize = "cost"
max_attempts = 3
retry = {{ max_per_model = 0 }}
{extra}
"#
    );
    setup(
        &[("gpt-4o-mini", "openai"), ("claude-3-5-haiku", "anthropic")],
        &routes,
    )
    .await
}

async fn post(s: &Setup, path: &str, body: Value) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, bytes) = common::send(&s.gw, common::post_request(path, &body)).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, headers, v)
}

fn ask(route: &str) -> Value {
    json!({"route": route, "prompt": "Say hello.", "max_tokens": 8})
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

#[tokio::test]
async fn with_no_traffic_latency_picks_the_catalogs_fastest_model() {
    let models = [
        ("gpt-4o-mini", "openai"),
        ("gpt-4o", "openai"),
        ("claude-3-5-haiku", "anthropic"),
        ("claude-sonnet-4-5", "anthropic"),
        ("gemini-2.0-flash", "gemini"),
        ("gemini-2.5-flash", "gemini"),
        ("llama3.2", "ollama"),
    ];
    let names: Vec<String> = models.iter().map(|(m, _)| format!("\"{m}\"")).collect();
    let extra = format!(
        "[routes.fast]\nmodels = [{}]\noptimize = \"latency\"\n",
        names.join(", ")
    );
    let s = setup(&models, &extra).await;
    // The catalog's fastest for an answer of the default expected length.
    let expected = |m: &str| {
        let e = s.gw.config.catalog.get(m).unwrap();
        e.ttft_ms.unwrap() + DEFAULT_EXPECTED_OUTPUT * e.tpot_ms.unwrap()
    };
    let fastest = models
        .iter()
        .map(|(m, _)| *m)
        .min_by(|a, b| expected(a).total_cmp(&expected(b)))
        .unwrap();
    assert_eq!(fastest, "gemini-2.0-flash");
    // The explanation, before any call: ranked by the priors, no two alike.
    let body = json!({"route": "fast", "prompt": "Say hello."});
    let plan = api::explain(&s.gw, body.to_string().as_bytes()).unwrap();
    let candidates = plan["candidates"].as_array().unwrap();
    assert_eq!(candidates[0]["model"], fastest, "{plan}");
    let latencies: Vec<f64> = candidates
        .iter()
        .map(|c| c["latency_ms"].as_f64().unwrap())
        .collect();
    assert!((latencies[0] - expected(fastest)).abs() < 1e-6, "{plan}");
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    assert_eq!(sorted.len(), models.len(), "a tie: {latencies:?}");
    assert_eq!(sorted[0], latencies[0]);
    // And the real call goes there, explaining why.
    let (status, _, v) = post(&s, "/ai/route", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model"], fastest, "{}", v["routing"]);
    assert_eq!(v["routing"]["chosen"], fastest);
    // A model's own table overrides the catalog: now the local model is the quickest.
    let slow_flash = format!(
        "{extra}[models.\"llama3.2\".health]\nttft_ms = 20\ntpot_ms = 0.5\n\
         [models.\"gemini-2.0-flash\".health]\nttft_ms = 900\n"
    );
    let s = setup(&models, &slow_flash).await;
    let plan = api::explain(&s.gw, body.to_string().as_bytes()).unwrap();
    assert_eq!(plan["candidates"][0]["model"], "llama3.2", "{plan}");
}

#[tokio::test]
async fn every_candidate_rate_limited_is_a_429_with_the_soonest_retry_after() {
    let s = pair("").await;
    s.sim
        .sim
        .set_fault(MINI, "429:5", FaultMode::Rate(1.0))
        .unwrap();
    s.sim
        .sim
        .set_fault(HAIKU, "429:3", FaultMode::Rate(1.0))
        .unwrap();
    // Both answer 429: the last upstream's wait is passed on.
    let (status, headers, v) = post(&s, "/ai/route", ask("pair")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(retry_after(&headers), Some(3));
    // Now both cool down and are not called: still 429, with the soonest of their waits.
    for path in ["/ai/route", "/v1/chat/completions"] {
        let body = if path == "/ai/route" {
            ask("pair")
        } else {
            json!({"model": "pair", "messages": [{"role": "user", "content": "hi"}]})
        };
        let (status, headers, v) = post(&s, path, body).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{path}: {v}");
        assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
        assert_eq!(retry_after(&headers), Some(3), "{path}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("rate limited"), "{message}");
    }
    // The Messages door gives the same status and header, in Anthropic's shape.
    let body = json!({"model": "pair", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, v) = post(&s, "/v1/messages", body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    assert_eq!(retry_after(&headers), Some(3));
    // Neither model was asked again during its cool-down.
    let stats = s.sim.sim.stats();
    assert_eq!(
        (stats.model(MINI).requests, stats.model(HAIKU).requests),
        (1, 1)
    );
}

#[tokio::test]
async fn mixed_causes_are_a_503_with_the_soonest_comeback() {
    // The cheap model's own breaker opens on one failure, for 4 s.
    let health = r#"
[models."gpt-4o-mini".health]
breaker_failures = 1
breaker_base_ms = 4000
breaker_max_ms = 8000
"#;
    let s = pair(health).await;
    s.sim
        .sim
        .set_fault(MINI, "500", FaultMode::Rate(1.0))
        .unwrap();
    s.sim
        .sim
        .set_fault(HAIKU, "429:9", FaultMode::Rate(1.0))
        .unwrap();
    let (status, _, v) = post(&s, "/ai/route", ask("pair")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    let mini = s.gw.health.get("gpt-4o-mini").unwrap();
    assert!(
        mini.snapshot(Instant::now()).breaker != switchyard_routing::health::BreakerState::Closed
    );
    // One breaker open (back in 4 s), one cooling down (9 s): down for now, back in 4 s.
    let (status, headers, v) = post(&s, "/ai/route", ask("pair")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "no_model_available", "{v}");
    assert_eq!(retry_after(&headers), Some(4));
    // The other model kept the default breaker: one failure did not open it.
    let haiku = s.gw.health.get("claude-3-5-haiku").unwrap();
    assert_eq!(haiku.config().breaker_failures, 5);
    assert_eq!(mini.config().breaker_base.as_millis(), 4000);
}

#[tokio::test]
async fn content_one_provider_cannot_take_falls_back_to_one_that_can() {
    let models = [("claude-3-5-haiku", "anthropic"), ("gpt-4o", "openai")];
    let routes = r#"
[routes.listen]
models = ["claude-3-5-haiku", "gpt-4o"]
optimize = "cost"
[routes.claude]
models = ["claude-3-5-haiku", "claude-sonnet-4-5"]
[models."claude-sonnet-4-5"]
provider = "anthropic"
"#;
    let s = setup(&models, routes).await;
    let audio = json!([
        {"type": "text", "text": "What is said here?"},
        {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}}
    ]);
    let body = |route: &str| {
        json!({"route": route, "max_tokens": 8,
               "messages": [{"role": "user", "content": audio.clone()}]})
    };
    let (status, _, v) = post(&s, "/ai/route", body("listen")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model"], "gpt-4o", "{}", v["routing"]);
    let attempts = v["routing"]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["model"], "claude-3-5-haiku", "{attempts:?}");
    assert_eq!(attempts[0]["outcome"], "unsupported", "{attempts:?}");
    assert_eq!(attempts[1]["outcome"], "ok", "{attempts:?}");
    // Refused before any call, and the model's health is untouched.
    assert_eq!(s.sim.sim.stats().model(HAIKU).requests, 0);
    let haiku = s.gw.health.get("claude-3-5-haiku").unwrap();
    let h = haiku.snapshot(Instant::now());
    assert_eq!(h.breaker, switchyard_routing::health::BreakerState::Closed);
    assert_eq!((h.consecutive_failures, h.reliability), (0, 0.9));
    assert!(h.available.is_none());
    // No candidate can take it: a 400 naming the content, not a 5xx.
    for (path, request) in [
        ("/ai/route", body("claude")),
        (
            "/v1/chat/completions",
            json!({"model": "claude-3-5-haiku",
                   "messages": [{"role": "user", "content": audio.clone()}]}),
        ),
    ] {
        let (status, _, v) = post(&s, path, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"]["code"], "unsupported_value", "{v}");
        assert_eq!(v["error"]["param"], "messages[0].content[1]", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("audio"),
            "{v}"
        );
    }
    assert_eq!(s.sim.sim.stats().model(HAIKU).requests, 0);
}

#[tokio::test]
async fn candidates_skipped_after_the_decision_do_not_count_against_max_attempts() {
    use switchyard::execute;
    use switchyard::pipeline::{self, Target};
    use switchyard_routing::health::Forced;
    use switchyard_types::error::{ErrorKind, ProviderError};
    use switchyard_types::{ChatRequest, Message, Role};

    let one = "[routes.one]\nmodels = [\"gpt-4o-mini\", \"claude-3-5-haiku\"]\n\
               optimize = \"cost\"\nmax_attempts = 1\nretry = { max_per_model = 0 }\n";
    let models = [("gpt-4o-mini", "openai"), ("claude-3-5-haiku", "anthropic")];
    let request = ChatRequest::new("one", vec![Message::new(Role::User, "Say hello.")]);
    let target = Target {
        name: Some("one"),
        ..Target::default()
    };
    let outcomes = |attempts: &[execute::Attempt]| -> Vec<(String, &'static str)> {
        attempts
            .iter()
            .map(|a| (a.model.to_string(), a.outcome))
            .collect()
    };
    // Between the decision (both eligible, the cheaper first) and the call, the first one's
    // breaker opens (an operator forces it), or it starts cooling down after an upstream 429.
    for cause in ["breaker_open", "cooling_down"] {
        let s = setup(&models, one).await;
        let mini = s.gw.health.get(MINI_ID).unwrap();
        let (route, decision) = pipeline::plan(&s.gw, &request, &target).unwrap();
        let ranked: Vec<&str> = decision
            .eligible()
            .iter()
            .map(|c| c.model.as_str())
            .collect();
        assert_eq!(ranked, [MINI_ID, "claude-3-5-haiku"]);
        if cause == "breaker_open" {
            mini.force(Some(Forced::Open));
        } else {
            let limited = ProviderError::new(ErrorKind::RateLimited, "slow down")
                .with_retry_after(Some(std::time::Duration::from_secs(30)));
            mini.record_failure(Instant::now(), &limited, std::time::Duration::ZERO);
        }
        let Ok(ok) = execute::complete(s.gw.upstreams(), &route, &decision, &request).await else {
            panic!("{cause}: the second candidate was not tried");
        };
        assert_eq!(ok.model.as_str(), "claude-3-5-haiku", "{cause}");
        assert_eq!(
            outcomes(&ok.attempts),
            [
                (MINI_ID.to_owned(), "skipped"),
                ("claude-3-5-haiku".to_owned(), "ok")
            ],
            "{cause}"
        );
        assert_eq!(execute::upstream_calls(&ok.attempts), 1);
        let stats = s.sim.sim.stats();
        assert_eq!(
            (stats.model(MINI).requests, stats.model(HAIKU).requests),
            (0, 1)
        );
    }

    // The limit itself holds: a first candidate that fails upstream is the one attempt.
    let s = setup(&models, one).await;
    s.sim
        .sim
        .set_fault(MINI, "500", FaultMode::Count(1))
        .unwrap();
    let (route, decision) = pipeline::plan(&s.gw, &request, &target).unwrap();
    let Err(failed) = execute::complete(s.gw.upstreams(), &route, &decision, &request).await else {
        panic!("a second attempt was made past max_attempts = 1");
    };
    assert_eq!(
        outcomes(&failed.attempts),
        [(MINI_ID.to_owned(), "server_error")]
    );
    assert_eq!(s.sim.sim.stats().model(HAIKU).requests, 0);
}

/// `gpt-4o-mini` as the gateway names it (the simulator's name is the same).
const MINI_ID: &str = "gpt-4o-mini";
