//! Operator controls through the admin API, against the simulator: a drained model gets no new
//! requests (the simulator's counters say so) and comes back, while a request already in flight
//! to it finishes; a breaker forced open makes
//! requests fall back, one forced closed lets them through an open breaker, and a reset clears
//! every breaker; each change is a `breaker` event on the live feed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use switchyard::Gateway;
use switchyard::config::{self, Vars};
use switchyard::live::Event;
use switchyard_routing::health::HealthConfig;
use switchyard_sim::{self as sim, FaultMode, SimHandle};
use switchyard_types::ids::Secret;

use crate::common::send;

const ADMIN: &str = "test-admin-key-0123456789";
/// Upstream ids in the simulator.
const MINI: &str = "gpt-4o-mini";
const HAIKU: &str = "claude-3-5-haiku-20241022";

struct Setup {
    sim: SimHandle,
    gw: Arc<Gateway>,
}

/// Two models of two providers on one route, `open` mode (requests need no key) with the admin
/// key set (the controls need it), a long breaker period (the test decides when it closes).
async fn setup() -> Setup {
    setup_over(sim::SimConfig::default()).await
}

/// As [`setup`], the simulator's models behaving as `sim_config` says.
async fn setup_over(sim_config: sim::SimConfig) -> Setup {
    let sim = sim::spawn(sim_config, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", sim.addr);
    let text = format!(
        r#"
[auth]
mode = "open"
[providers.openai]
kind = "openai"
base_url = "{url}/openai/v1"
api_key = "sim"
[providers.anthropic]
kind = "anthropic"
base_url = "{url}/anthropic/v1"
api_key = "sim"
[models."gpt-4o-mini"]
provider = "openai"
[models."claude-3-5-haiku"]
provider = "anthropic"
[routes.pair]
models = ["gpt-4o-mini", "claude-3-5-haiku"]
optimize = "cost"
max_attempts = 3
retry = {{ max_per_model = 0 }}
"#
    );
    let mut cfg = config::load_str(&text, &Vars::only(&[])).unwrap();
    cfg.auth.admin_key = Some(Secret::new(ADMIN));
    let health = HealthConfig {
        breaker_base: Duration::from_secs(600),
        breaker_max: Duration::from_secs(600),
        ..HealthConfig::default()
    };
    let gw = Gateway::with_health(cfg, health).unwrap();
    Setup { sim, gw }
}

async fn admin(
    gw: &Arc<Gateway>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let (s, _, b) = send(gw, req).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// One request over `pair`; the model that answered.
async fn ask(gw: &Arc<Gateway>) -> String {
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"model": "pair", "max_tokens": 8,
                   "messages": [{"role": "user", "content": "hello"}]})
            .to_string(),
        ))
        .unwrap();
    let (s, h, b) = send(gw, req).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    h["x-switchyard-model"].to_str().unwrap().to_owned()
}

fn requests(s: &Setup, upstream: &str) -> u64 {
    s.sim.sim.stats().model(upstream).requests
}

/// The breaker events on the bus so far: (model, from, to, cause).
fn breaker_events(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<Event>>,
) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let Event::Breaker(b) = &*e {
            out.push((
                b.model.clone(),
                b.from.clone(),
                b.to.clone(),
                b.cause.clone(),
            ));
        }
    }
    out
}

#[tokio::test]
async fn a_drained_model_gets_no_new_requests_and_comes_back() {
    let s = setup().await;
    let mut rx = s.gw.live.subscribe();
    assert_eq!(ask(&s.gw).await, "gpt-4o-mini");
    let before = requests(&s, MINI);
    let (status, v) = admin(&s.gw, Method::POST, "/admin/models/gpt-4o-mini/drain", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["drained"].clone(), v["available"].clone()),
        (json!(true), json!(false))
    );
    for _ in 0..5 {
        assert_eq!(ask(&s.gw).await, "claude-3-5-haiku");
    }
    assert_eq!(requests(&s, MINI), before, "a drained model got requests");
    assert_eq!(requests(&s, HAIKU), 5);
    let (_, health) = crate::common::get_json(&s.gw, "/health/detailed").await;
    assert!(health.to_string().contains("drained"), "{health}");
    let (status, v) = admin(
        &s.gw,
        Method::DELETE,
        "/admin/models/gpt-4o-mini/drain",
        None,
    )
    .await;
    assert_eq!(
        (status, v["drained"].clone()),
        (StatusCode::OK, json!(false))
    );
    assert_eq!(ask(&s.gw).await, "gpt-4o-mini");
    assert_eq!(requests(&s, MINI), before + 1);
    let events = breaker_events(&mut rx);
    let drained = |from: &str, to: &str| {
        (
            "gpt-4o-mini".to_owned(),
            from.to_owned(),
            to.to_owned(),
            "drained".to_owned(),
        )
    };
    assert_eq!(
        events,
        vec![drained("closed", "drained"), drained("drained", "closed")]
    );
}

#[tokio::test]
async fn a_request_in_flight_when_its_model_is_drained_finishes_and_new_ones_go_elsewhere() {
    // gpt-4o-mini answers after 1.5 s, so a request to it is still in flight when it is drained.
    let slow: sim::SimConfig =
        toml::from_str("[models.\"gpt-4o-mini\"]\nttft_ms = { mean = 1500, stddev = 0 }\n")
            .unwrap();
    let s = setup_over(slow).await;
    let gw = s.gw.clone();
    let first = tokio::spawn(async move {
        let req = Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"model": "pair", "max_tokens": 8,
                       "messages": [{"role": "user", "content": "hello"}]})
                .to_string(),
            ))
            .unwrap();
        send(&gw, req).await
    });
    let started = async {
        while s.sim.sim.stats().model(MINI).in_flight == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), started)
        .await
        .expect("the first request never reached gpt-4o-mini");
    let (status, v) = admin(&s.gw, Method::POST, "/admin/models/gpt-4o-mini/drain", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        s.sim.sim.stats().model(MINI).in_flight,
        1,
        "drained while its request was in flight"
    );
    // New requests go to the other model …
    for _ in 0..3 {
        assert_eq!(ask(&s.gw).await, "claude-3-5-haiku");
    }
    // … and the one in flight finishes, answered by the drained model.
    let (status, headers, body) = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the in-flight request never finished")
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-switchyard-model"], "gpt-4o-mini");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    assert_eq!(requests(&s, MINI), 1);
    assert_eq!(s.sim.sim.stats().model(MINI).in_flight, 0);
}

#[tokio::test]
async fn forcing_a_breaker_open_falls_back_closed_lets_through_and_reset_clears() {
    let s = setup().await;
    let mut rx = s.gw.live.subscribe();
    let force = |v: Value| {
        let gw = s.gw.clone();
        async move {
            admin(
                &gw,
                Method::POST,
                "/admin/models/gpt-4o-mini/breaker",
                Some(json!({"force": v})),
            )
            .await
        }
    };
    let (status, v) = force(json!("open")).await;
    assert_eq!(
        (status, v["forced"].clone()),
        (StatusCode::OK, json!("open")),
        "{v}"
    );
    assert_eq!(ask(&s.gw).await, "claude-3-5-haiku");
    assert_eq!(requests(&s, MINI), 0);
    let (status, v) = force(Value::Null).await;
    assert_eq!((status, v["forced"].clone()), (StatusCode::OK, Value::Null));
    assert_eq!(ask(&s.gw).await, "gpt-4o-mini");

    // Open the real breaker: five failures in a row (each request falls back to haiku).
    s.sim
        .sim
        .set_fault(MINI, "500", FaultMode::Count(5))
        .unwrap();
    for _ in 0..5 {
        assert_eq!(ask(&s.gw).await, "claude-3-5-haiku");
    }
    s.sim.sim.clear_faults();
    let (_, v) = force(json!("closed")).await;
    assert_eq!(
        (v["breaker"].clone(), v["available"].clone()),
        (json!("open"), json!(true)),
        "{v}"
    );
    assert_eq!(
        ask(&s.gw).await,
        "gpt-4o-mini",
        "forced closed lets requests through"
    );
    force(Value::Null).await;
    assert_eq!(
        ask(&s.gw).await,
        "claude-3-5-haiku",
        "the breaker itself is still open"
    );

    let (status, v) = admin(&s.gw, Method::POST, "/admin/breakers/reset", None).await;
    assert_eq!(
        (status, v["reset"].clone()),
        (StatusCode::OK, json!(2)),
        "{v}"
    );
    assert_eq!(
        ask(&s.gw).await,
        "gpt-4o-mini",
        "reset closes every breaker"
    );
    let forced: Vec<(String, String)> = breaker_events(&mut rx)
        .into_iter()
        .filter(|e| e.3 == "forced")
        .map(|e| (e.1, e.2))
        .collect();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        forced,
        vec![
            pair("closed", "open"),
            pair("open", "closed"),
            pair("open", "closed"),
            pair("closed", "open"),
            pair("open", "closed"),
        ]
    );
}

#[tokio::test]
async fn controls_name_an_unknown_model_refuse_bad_bodies_and_need_the_admin_key() {
    let s = setup().await;
    let (status, v) = admin(&s.gw, Method::POST, "/admin/models/gpt-9/drain", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'gpt-9'"),
        "{v}"
    );
    let (status, _) = admin(&s.gw, Method::DELETE, "/admin/models/gpt-9/drain", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = admin(
        &s.gw,
        Method::POST,
        "/admin/models/gpt-4o-mini/breaker",
        Some(json!({"force": "ajar"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "force", "{v}");
    let (status, v) = admin(
        &s.gw,
        Method::POST,
        "/admin/models/gpt-4o-mini/breaker",
        Some(json!({"force": null, "also": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    // A dashboard key is read-only: the controls are the admin's.
    let (_, key) = admin(
        &s.gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "wall", "scopes": ["dashboard"]})),
    )
    .await;
    let secret = key["key"].as_str().unwrap();
    let req = Request::post("/admin/breakers/reset")
        .header("authorization", format!("Bearer {secret}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&s.gw, req).await.0, StatusCode::UNAUTHORIZED);
    assert!(!s.gw.health.get("gpt-4o-mini").unwrap().drained());
}
