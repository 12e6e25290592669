//! The alert engine end to end, in-process against the simulator: a 5xx storm opens a breaker →
//! a `breaker_open` alert in `GET /ai/alerts` and on the live feed, resolved when the breaker
//! closes; a key's budget 80 % / 100 % used; the webhook receives alerts, and a receiver that
//! hangs or answers 500 stalls neither the engine nor the feed. The detectors on steps made by
//! hand-ticked samples: error rate, cache hit rate, latency and TTFT (the simulator's first
//! token slowed mid-test), a key's spend rate (a burst of paid calls); the rules: a policy that
//! failed or went stale on reload, and a stopped Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use switchyard::Gateway;
use switchyard::config::{self, AuthMode, Vars};
use switchyard::live::{Alert, Event};
use switchyard_routing::health::HealthConfig;
use switchyard_sim::{self as sim, FaultMode};
use switchyard_types::ids::Secret;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::common::{self, get_json, send};

const ADMIN: &str = "test-admin-key-0123456789";
const MINI: &str = "gpt-4o-mini";
/// The engine's own ticker, slowed down where a test ticks by hand (`tick`), so that every
/// sample is exactly what the test sent between two of its ticks.
const QUIET: Duration = Duration::from_secs(3600);

/// Two models at two providers, a route over both, the engine ticking every 100 ms.
fn pair_config(sim_url: &str) -> String {
    let providers = crate::common::pair_providers(sim_url);
    format!(
        r#"
{providers}
[routes.pair]
models = ["gpt-4o-mini", "claude-3-5-haiku"]
optimize = "cost"
retry = {{ max_per_model = 0 }}
[alerts]
interval_ms = 100
"#
    )
}

/// The next alert event of `kind` in `state` on the feed, within `wait`.
async fn next_alert(
    rx: &mut broadcast::Receiver<Arc<Event>>,
    kind: &str,
    state: &str,
    wait: Duration,
) -> Option<Alert> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Err(_) => return None,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            Ok(Ok(event)) => {
                if let Event::Alert(a) = &*event
                    && a.kind == kind
                    && a.state == state
                {
                    return Some(a.clone());
                }
            }
        }
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn alerts_a_5xx_storm_fires_breaker_open_on_the_feed_and_in_the_api_then_resolves() {
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let cfg = config::load_str(
        &pair_config(&format!("http://{}", sim.addr)),
        &Vars::only(&[]),
    )
    .unwrap();
    let health = HealthConfig {
        breaker_base: Duration::from_millis(800),
        breaker_max: Duration::from_millis(800),
        ..HealthConfig::default()
    };
    let gw = Gateway::with_health(cfg, health).unwrap();
    let mut rx = gw.live.subscribe();
    sim.sim
        .set_fault(MINI, "500", FaultMode::Rate(1.0))
        .unwrap();
    let ask = json!({"route": "pair", "prompt": "Say hello.", "max_tokens": 8});
    for _ in 0..6 {
        let (status, v) = common::post_json(&gw, "/ai/route", ask.clone()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let fired = next_alert(&mut rx, "breaker_open", "firing", Duration::from_secs(3))
        .await
        .expect("no breaker_open alert on the feed");
    assert_eq!(fired.id, "breaker_open:gpt-4o-mini");
    assert_eq!(
        (fired.subject.as_str(), fired.severity.as_str()),
        (MINI, "critical")
    );
    let (status, v) = get_json(&gw, "/ai/alerts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&v["active"]), ["breaker_open:gpt-4o-mini"], "{v}");
    assert_eq!(v["recent"][0]["state"], "firing");
    // Fault lifted; after the open period a probe succeeds and closes the breaker.
    sim.sim.clear_faults();
    tokio::time::sleep(Duration::from_millis(900)).await;
    for _ in 0..20 {
        let (_, v) = common::post_json(&gw, "/ai/route", ask.clone()).await;
        if v["model"] == MINI {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resolved = next_alert(&mut rx, "breaker_open", "resolved", Duration::from_secs(3))
        .await
        .expect("breaker_open never resolved");
    assert!(resolved.resolved_ms >= Some(fired.started_ms));
    let (_, v) = get_json(&gw, "/ai/alerts").await;
    assert_eq!(ids(&v["active"]), Vec::<String>::new(), "{v}");
    assert_eq!(v["recent"][0]["state"], "resolved", "{v}");
    // The families count it.
    let (_, _, metrics) = send(&gw, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8_lossy(&metrics);
    assert!(
        text.contains("switchyard_alerts_total{kind=\"breaker_open\"} 1"),
        "{text}"
    );
    assert!(text.contains("switchyard_alerts_active 0"), "{text}");
}

async fn admin(gw: &Arc<Gateway>, path: &str, body: Value) -> Value {
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, _, b) = send(gw, req).await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

async fn chat_as(gw: &Arc<Gateway>, key: &str) -> StatusCode {
    let body = json!({"model": "gpt-4o", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "what is the weather like"}]});
    let req = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    send(gw, req).await.0
}

/// A local webhook receiver: forwards each body it is sent; `mode` = ok, hang or fail (500).
async fn receiver(
    mode: &'static str,
) -> (String, mpsc::UnboundedReceiver<Value>, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let tx = tx.clone();
            let hits = counted.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(body.0);
                match mode {
                    "hang" => {
                        std::future::pending::<()>().await;
                        StatusCode::OK
                    }
                    "fail" => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::NO_CONTENT,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx, hits)
}

/// Keys mode, the demo's models; the webhook at `url` with a short timeout and one retry.
async fn keyed(url: Option<String>) -> common::Setup {
    common::setup_with(|c| {
        c.auth.admin_key = Some(Secret::new(ADMIN));
        c.auth.mode = Some(AuthMode::Keys);
        c.alerts.webhook_url = url.map(Secret::new);
        c.alerts.webhook_timeout = Duration::from_millis(300);
        c.alerts.webhook_retries = 1;
        c.alerts.interval = QUIET;
    })
    .await
}

/// `GET /ai/alerts` with the admin key (keys mode).
async fn alerts_as_admin(gw: &Arc<Gateway>) -> Value {
    let req = Request::get("/ai/alerts")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let (s, _, b) = send(gw, req).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

fn tick(gw: &Gateway) {
    gw.alerts
        .tick(Instant::now(), switchyard_types::clock::now_ms());
}

#[tokio::test]
async fn alerts_a_spent_budget_fires_budget_80_and_100_and_the_webhook_gets_them() {
    let (url, mut hooks, _) = receiver("ok").await;
    let t = keyed(Some(url)).await;
    let mut rx = t.gw.live.subscribe();
    let roomy = admin(
        &t.gw,
        "/admin/keys",
        json!({"name": "roomy", "budget_usd": 100.0}),
    )
    .await;
    let small = admin(
        &t.gw,
        "/admin/keys",
        json!({"name": "small", "budget_usd": 0.000001}),
    )
    .await;
    for key in [&roomy, &small] {
        assert_eq!(
            chat_as(&t.gw, key["key"].as_str().unwrap()).await,
            StatusCode::OK
        );
    }
    tick(&t.gw);
    let small_id = small["id"].as_str().unwrap();
    // In keys mode the alerts need a key, like /ai/performance.
    let (status, _) = get_json(&t.gw, "/ai/alerts").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let v = alerts_as_admin(&t.gw).await;
    let mut active = ids(&v["active"]);
    active.sort();
    assert_eq!(
        active,
        [
            format!("budget_100:{small_id}"),
            format!("budget_80:{small_id}")
        ],
        "{v}"
    );
    let a80 = next_alert(&mut rx, "budget_80", "firing", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(a80.severity, "warning");
    assert!(a80.message.contains("small"), "{}", a80.message);
    // A second tick fires nothing new.
    tick(&t.gw);
    let again = alerts_as_admin(&t.gw).await;
    // A read-only `dashboard` key reads them too.
    let viewer = admin(
        &t.gw,
        "/admin/keys",
        json!({"name": "ops", "scopes": ["dashboard"]}),
    )
    .await;
    let req = Request::get("/ai/alerts")
        .header(
            "authorization",
            format!("Bearer {}", viewer["key"].as_str().unwrap()),
        )
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&t.gw, req).await;
    assert_eq!(status, StatusCode::OK);
    let seen: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["active"].as_array().unwrap().len(), 2, "{seen}");
    // So does the dashboard page, with its session cookie and no key; a made-up cookie does not.
    let req = Request::post("/dashboard/session")
        .header(
            "authorization",
            format!("Bearer {}", viewer["key"].as_str().unwrap()),
        )
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&t.gw, req).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cookie = headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    for (cookie, want) in [
        (cookie.as_str(), StatusCode::OK),
        ("switchyard_dashboard=forged", StatusCode::UNAUTHORIZED),
    ] {
        let req = Request::get("/ai/alerts")
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&t.gw, req).await.0, want, "{cookie}");
    }
    assert_eq!(again["recent"].as_array().unwrap().len(), 2, "{again}");
    // The webhook received both, as the feed's JSON.
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let body = tokio::time::timeout(Duration::from_secs(3), hooks.recv())
            .await
            .expect("webhook not called")
            .unwrap();
        assert_eq!(body["subject"], small_id);
        assert_eq!(body["state"], "firing");
        kinds.push(body["kind"].as_str().unwrap().to_owned());
    }
    kinds.sort();
    assert_eq!(kinds, ["budget_100", "budget_80"]);
}

#[tokio::test]
async fn alerts_a_hanging_or_failing_webhook_stalls_neither_the_engine_nor_the_feed() {
    for mode in ["hang", "fail"] {
        let (url, mut hooks, hits) = receiver(mode).await;
        let t = keyed(Some(url)).await;
        let mut rx = t.gw.live.subscribe();
        let small = admin(
            &t.gw,
            "/admin/keys",
            json!({"name": "small", "budget_usd": 0.000001}),
        )
        .await;
        assert_eq!(
            chat_as(&t.gw, small["key"].as_str().unwrap()).await,
            StatusCode::OK
        );
        let started = std::time::Instant::now();
        tick(&t.gw);
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{mode}: tick waited"
        );
        // The first alert reached the receiver, which hangs on it (or refuses it) …
        tokio::time::timeout(Duration::from_secs(2), hooks.recv())
            .await
            .expect("webhook not called");
        // … and the second alert still reaches the feed and the API at once.
        for kind in ["budget_80", "budget_100"] {
            assert!(
                next_alert(&mut rx, kind, "firing", Duration::from_millis(500))
                    .await
                    .is_some(),
                "{mode}: {kind} not on the feed"
            );
        }
        let v = alerts_as_admin(&t.gw).await;
        assert_eq!(v["active"].as_array().unwrap().len(), 2, "{mode}: {v}");
        if mode == "fail" {
            // One retry each: 2 alerts × 2 attempts, then counted as failed.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while hits.load(Ordering::SeqCst) < 4 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(hits.load(Ordering::SeqCst), 4);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (_, _, m) =
                send(&t.gw, Request::get("/metrics").body(Body::empty()).unwrap()).await;
            let text = String::from_utf8_lossy(&m);
            assert!(
                text.contains("switchyard_alert_webhooks_total{result=\"failed\"} 2"),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn alerts_an_error_rate_step_fires_error_rate_from_the_health_totals() {
    let t = common::setup_with(|c| {
        c.alerts.interval = QUIET;
        c.alerts.error_rate.detector.warmup = 5;
        c.alerts.error_rate.detector.consecutive = 2;
    })
    .await;
    let mut rx = t.gw.live.subscribe();
    let ask = json!({"model": MINI, "max_tokens": 8,
                     "messages": [{"role": "user", "content": "hello"}]});
    tick(&t.gw);
    for _ in 0..8 {
        for _ in 0..2 {
            let (status, v) = common::post_json(&t.gw, "/v1/chat/completions", ask.clone()).await;
            assert_eq!(status, StatusCode::OK, "{v}");
        }
        tick(&t.gw);
    }
    let (_, v) = get_json(&t.gw, "/ai/alerts").await;
    assert_eq!(
        ids(&v["active"]),
        Vec::<String>::new(),
        "healthy traffic alerted: {v}"
    );
    t.sim
        .sim
        .set_fault(MINI, "500", FaultMode::Rate(1.0))
        .unwrap();
    for _ in 0..2 {
        let (status, _) = common::post_json(&t.gw, "/v1/chat/completions", ask.clone()).await;
        assert!(status.is_server_error(), "{status}");
        tick(&t.gw);
    }
    let fired = next_alert(&mut rx, "error_rate", "firing", Duration::from_secs(1))
        .await
        .expect("no error_rate alert");
    assert_eq!(fired.id, "error_rate:gpt-4o-mini");
    assert_eq!(fired.value, Some(1.0));
    // The first failing tick moved the baseline by a clipped, tenth-weight step only.
    assert!(fired.baseline.is_some_and(|b| b < 0.01), "{fired:?}");
    assert!(
        fired.message.contains("error rate 100 %"),
        "{}",
        fired.message
    );
}

#[tokio::test]
async fn alerts_a_falling_cache_hit_rate_fires_cache_hit_rate() {
    let t = common::setup_with(|c| {
        c.alerts.interval = QUIET;
        c.alerts.cache_hit_rate.detector.warmup = 5;
        c.alerts.cache_hit_rate.detector.consecutive = 2;
    })
    .await;
    let mut rx = t.gw.live.subscribe();
    let ask = |text: String| {
        json!({"model": MINI, "temperature": 0.0, "max_tokens": 8,
               "messages": [{"role": "user", "content": text}]})
    };
    tick(&t.gw);
    // 3 hits in 4 lookups a tick …
    for i in 0..8 {
        for _ in 0..4 {
            let (status, v) =
                common::post_json(&t.gw, "/v1/chat/completions", ask(format!("q{i}"))).await;
            assert_eq!(status, StatusCode::OK, "{v}");
        }
        tick(&t.gw);
    }
    let (_, v) = get_json(&t.gw, "/ai/alerts").await;
    assert_eq!(ids(&v["active"]), Vec::<String>::new(), "{v}");
    // … then only misses.
    for i in 0..2 {
        for j in 0..4 {
            let text = format!("fresh {i} {j}");
            let (status, _) = common::post_json(&t.gw, "/v1/chat/completions", ask(text)).await;
            assert_eq!(status, StatusCode::OK);
        }
        tick(&t.gw);
    }
    let fired = next_alert(&mut rx, "cache_hit_rate", "firing", Duration::from_secs(1))
        .await
        .expect("no cache_hit_rate alert");
    assert_eq!(fired.id, "cache_hit_rate:cache");
    assert_eq!(fired.value, Some(0.0));
    assert!(fired.threshold < fired.baseline, "{fired:?}");
    // Hits again: resolved.
    for _ in 0..2 {
        for _ in 0..4 {
            common::post_json(&t.gw, "/v1/chat/completions", ask("q0".to_owned())).await;
        }
        tick(&t.gw);
    }
    assert!(
        next_alert(
            &mut rx,
            "cache_hit_rate",
            "resolved",
            Duration::from_secs(1)
        )
        .await
        .is_some()
    );
}

/// The simulator behind a proxy that adds `x-sim-ttft-ms: N` to every call while `slow_ms` is
/// N > 0: a step in the simulator's own latency, mid-test. Returns the proxy's URL.
async fn stepped_sim(sim: &sim::SimHandle) -> (String, Arc<std::sync::atomic::AtomicU64>) {
    let slow = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let target = format!("http://{}", sim.addr);
    let client = reqwest::Client::new();
    let knob = slow.clone();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let (client, target, knob) = (client.clone(), target.clone(), knob.clone());
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let mut call = client
                .request(parts.method, format!("{target}{path}"))
                .body(bytes);
            for (name, value) in &parts.headers {
                if !matches!(name.as_str(), "host" | "content-length") {
                    call = call.header(name, value);
                }
            }
            let ms = knob.load(Ordering::SeqCst);
            if ms > 0 {
                call = call.header("x-sim-ttft-ms", ms.to_string());
            }
            let upstream = call.send().await.unwrap();
            let mut out = axum::http::Response::builder().status(upstream.status());
            for (name, value) in upstream.headers() {
                if !matches!(
                    name.as_str(),
                    "content-length" | "transfer-encoding" | "connection"
                ) {
                    out = out.header(name, value);
                }
            }
            out.body(Body::from_stream(upstream.bytes_stream()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, slow)
}

#[tokio::test]
async fn alerts_a_latency_and_ttft_step_fires_latency_and_ttft() {
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let (url, slow) = stepped_sim(&sim).await;
    let mut cfg = config::load_str(&common::pair_providers(&url), &Vars::only(&[])).unwrap();
    cfg.alerts.interval = QUIET;
    for signal in [&mut cfg.alerts.latency, &mut cfg.alerts.ttft] {
        signal.detector.warmup = 5;
        signal.detector.consecutive = 2;
    }
    let gw = Gateway::new(cfg).unwrap();
    let mut rx = gw.live.subscribe();
    // Streams: each gives a latency and a TTFT sample.
    let ask = json!({"model": MINI, "max_tokens": 8, "stream": true,
                     "messages": [{"role": "user", "content": "hello"}]});
    let stream = |gw: Arc<Gateway>| {
        let ask = ask.clone();
        async move {
            let (status, _, body) =
                send(&gw, common::post_request("/v1/chat/completions", &ask)).await;
            assert_eq!(status, StatusCode::OK);
            assert!(String::from_utf8_lossy(&body).contains("[DONE]"));
        }
    };
    tick(&gw);
    for _ in 0..8 {
        for _ in 0..2 {
            stream(gw.clone()).await;
        }
        tick(&gw);
    }
    let (_, v) = get_json(&gw, "/ai/alerts").await;
    assert_eq!(
        ids(&v["active"]),
        Vec::<String>::new(),
        "fast answers alerted: {v}"
    );
    // The simulator's first token now takes 400 ms.
    slow.store(400, Ordering::SeqCst);
    for _ in 0..2 {
        stream(gw.clone()).await;
        tick(&gw);
    }
    for kind in ["latency", "ttft"] {
        let fired = next_alert(&mut rx, kind, "firing", Duration::from_secs(1))
            .await
            .unwrap_or_else(|| panic!("no {kind} alert"));
        assert_eq!(fired.id, format!("{kind}:{MINI}"));
        assert_eq!(fired.severity, "warning");
        assert!(fired.value.is_some_and(|v| v >= 400.0), "{fired:?}");
        assert!(fired.baseline.is_some_and(|b| b < 200.0), "{fired:?}");
    }
    let (_, v) = get_json(&gw, "/ai/alerts").await;
    let mut active = ids(&v["active"]);
    active.sort();
    assert_eq!(
        active,
        [format!("latency:{MINI}"), format!("ttft:{MINI}")],
        "{v}"
    );
    // The other model saw no traffic: no sample, no alert.
    assert!(!active.iter().any(|a| a.ends_with("claude-3-5-haiku")));
}

#[tokio::test]
async fn alerts_a_burst_of_paid_calls_on_one_key_fires_spend_rate_for_that_key() {
    let t = common::setup_with(|c| {
        c.auth.admin_key = Some(Secret::new(ADMIN));
        c.auth.mode = Some(AuthMode::Keys);
        c.alerts.interval = QUIET;
        c.alerts.rules.budget = false;
        c.alerts.spend_rate.detector.warmup = 6;
        c.alerts.spend_rate.detector.consecutive = 2;
        // gpt-4o answers of 8 tokens cost about $0.0001: a rate of that order per minute.
        c.alerts.spend_rate.detector.min_delta = 1e-4;
    })
    .await;
    let mut rx = t.gw.live.subscribe();
    let burst = admin(
        &t.gw,
        "/admin/keys",
        json!({"name": "burst", "budget_usd": 100.0}),
    )
    .await;
    let calm = admin(
        &t.gw,
        "/admin/keys",
        json!({"name": "calm", "budget_usd": 100.0}),
    )
    .await;
    let (burst_key, calm_key) = (
        burst["key"].as_str().unwrap().to_owned(),
        calm["key"].as_str().unwrap().to_owned(),
    );
    // Ticks a second apart on the engine's clock; the spend rate is per minute of it.
    let start = Instant::now();
    let tick_at = |s: u64| {
        t.gw.alerts.tick(
            start + Duration::from_secs(s),
            switchyard_types::clock::now_ms(),
        );
    };
    // Warm-up: one paid call a second on each key.
    tick_at(0);
    for s in 1..=10 {
        for key in [&burst_key, &calm_key] {
            assert_eq!(chat_as(&t.gw, key).await, StatusCode::OK);
        }
        tick_at(s);
    }
    let v = alerts_as_admin(&t.gw).await;
    assert_eq!(
        ids(&v["active"]),
        Vec::<String>::new(),
        "a steady spend alerted: {v}"
    );
    // Then 15 calls a second on one key, for two seconds.
    for s in 11..=12 {
        for _ in 0..15 {
            assert_eq!(chat_as(&t.gw, &burst_key).await, StatusCode::OK);
        }
        assert_eq!(chat_as(&t.gw, &calm_key).await, StatusCode::OK);
        tick_at(s);
    }
    let fired = next_alert(&mut rx, "spend_rate", "firing", Duration::from_secs(1))
        .await
        .expect("no spend_rate alert");
    let burst_id = burst["id"].as_str().unwrap();
    assert_eq!(fired.id, format!("spend_rate:{burst_id}"));
    assert_eq!(fired.subject, burst_id);
    assert!(fired.value > fired.baseline, "{fired:?}");
    let v = alerts_as_admin(&t.gw).await;
    assert_eq!(ids(&v["active"]), [format!("spend_rate:{burst_id}")], "{v}");
}

const POLICY_TEMPLATE: &str =
    include_str!("../../../../plugins/host/tests/fixtures/policy-template.wat");

/// A policy folder `dir/name` that allows every request on every route (or, `broken`, whose
/// module is not WebAssembly).
fn write_policy(dir: &std::path::Path, name: &str, broken: bool) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let wat = if broken {
        "not a module".to_owned()
    } else {
        POLICY_TEMPLATE
            .replace("{{IMPORTS}}", "")
            .replace("{{CORE_IMPORTS}}", "")
            .replace("{{CORE_WITH}}", "")
            .replace("{{BODY}}", "(i32.const 16)")
    };
    std::fs::write(d.join("p.wat"), wat).unwrap();
    std::fs::write(
        d.join("policy.toml"),
        format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\nabi = \"switchyard:policy@0.1.0\"\n\
             wasm = \"p.wat\"\nfailure_mode = \"open\"\n[limits]\ntimeout_ms = 50\n"
        ),
    )
    .unwrap();
}

async fn reload_policies(gw: &Arc<Gateway>) -> Value {
    let req = Request::post("/ai/policies/reload")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(gw, req).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn alerts_a_failed_and_a_stale_policy_fire_policy_failed_and_policy_stale() {
    let dir = tempfile::tempdir().unwrap();
    write_policy(dir.path(), "good", false);
    write_policy(dir.path(), "bad", true);
    let path = dir.path().to_path_buf();
    let t = common::setup_with(|c| {
        c.auth.admin_key = Some(Secret::new(ADMIN));
        c.alerts.interval = QUIET;
        c.policies.dir = Some(path.clone());
        c.policies.cache_dir = Some(path.join(".cache"));
        c.policies.watch = false;
    })
    .await;
    let mut rx = t.gw.live.subscribe();
    // `bad` never loaded: failed, nothing serves.
    tick(&t.gw);
    let fired = next_alert(&mut rx, "policy_failed", "firing", Duration::from_secs(1))
        .await
        .expect("no policy_failed alert");
    assert_eq!(
        (fired.id.as_str(), fired.severity.as_str()),
        ("policy_failed:bad", "critical")
    );
    let (_, v) = get_json(&t.gw, "/ai/alerts").await;
    assert_eq!(ids(&v["active"]), ["policy_failed:bad"], "{v}");
    // Break `good` and reload: its old version keeps serving, so it is stale.
    std::fs::write(dir.path().join("good/p.wat"), "(module broken").unwrap();
    let report = reload_policies(&t.gw).await;
    assert!(!report["failed"].as_array().unwrap().is_empty(), "{report}");
    tick(&t.gw);
    let stale = next_alert(&mut rx, "policy_stale", "firing", Duration::from_secs(1))
        .await
        .expect("no policy_stale alert");
    assert_eq!(
        (stale.id.as_str(), stale.severity.as_str()),
        ("policy_stale:good", "warning")
    );
    assert!(stale.message.contains("older version"), "{}", stale.message);
    let (_, v) = get_json(&t.gw, "/ai/alerts").await;
    let mut active = ids(&v["active"]);
    active.sort();
    assert_eq!(active, ["policy_failed:bad", "policy_stale:good"], "{v}");
    // Mend both and reload: both resolve.
    write_policy(dir.path(), "good", false);
    write_policy(dir.path(), "bad", false);
    reload_policies(&t.gw).await;
    tick(&t.gw);
    for kind in ["policy_failed", "policy_stale"] {
        assert!(
            next_alert(&mut rx, kind, "resolved", Duration::from_secs(1))
                .await
                .is_some(),
            "{kind} not resolved"
        );
    }
    let (_, v) = get_json(&t.gw, "/ai/alerts").await;
    assert_eq!(ids(&v["active"]), Vec::<String>::new(), "{v}");
}

#[tokio::test]
async fn alerts_a_stopped_redis_fires_redis_degraded_and_resolves_when_it_returns() {
    let Some(mut redis) = switchyard_e2e::RedisServer::start() else {
        return;
    };
    redis.kill();
    let store = tempfile::tempdir().unwrap();
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let text = format!(
        "{}\n[store]\nurl = \"sqlite://{}/log.db\"\n[redis]\nurl = \"{}\"\ntimeout_ms = 300\n",
        common::pair_providers(&format!("http://{}", sim.addr)),
        store.path().display(),
        redis.url(),
    );
    let mut cfg = config::load_str(&text, &Vars::only(&[])).unwrap();
    cfg.alerts.interval = QUIET;
    // The gateway starts while its Redis is stopped.
    let gw = Gateway::connect(cfg).await.unwrap();
    let mut rx = gw.live.subscribe();
    tick(&gw);
    let fired = next_alert(&mut rx, "redis_degraded", "firing", Duration::from_secs(1))
        .await
        .expect("no redis_degraded alert");
    assert_eq!(
        (fired.id.as_str(), fired.severity.as_str()),
        ("redis_degraded:redis", "critical")
    );
    let (_, v) = get_json(&gw, "/ai/alerts").await;
    assert_eq!(ids(&v["active"]), ["redis_degraded:redis"], "{v}");
    // Redis returns; once the prober sees it, the next tick resolves the alert.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tick(&gw);
        let (_, v) = get_json(&gw, "/ai/alerts").await;
        if ids(&v["active"]).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redis_degraded never resolved: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        next_alert(
            &mut rx,
            "redis_degraded",
            "resolved",
            Duration::from_secs(1)
        )
        .await
        .is_some()
    );
    gw.shutdown().await;
}
