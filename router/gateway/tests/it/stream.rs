//! `GET /ai/stream` over a real WebSocket (tokio-tungstenite) on a loopback server: snapshots
//! with the schema's fields, decision and breaker events, topics, who may watch (the admin key,
//! a `dashboard` key, its session cookie; a revoked key stops at once), a client that never
//! reads is dropped rather than buffered, a reload that breaks a policy is a failed
//! `policy_reload` frame, and `decision_sample = 0` sends no decisions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchyard::config::{self, AuthMode, Vars};
use switchyard::live::{Event, PolicyEvent};
use switchyard::{Gateway, server};
use switchyard_types::ids::Secret;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::common::{self, send, setup_with};

const ADMIN: &str = "test-admin-key-0123456789";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The gateway (demo models on the simulator) in `mode` with the admin key, served on loopback.
async fn serve(mode: AuthMode) -> (common::Setup, SocketAddr) {
    serve_with(mode, |_| {}).await
}

/// As [`serve`], with `edit` applied to the config.
async fn serve_with(
    mode: AuthMode,
    edit: impl FnOnce(&mut config::Config),
) -> (common::Setup, SocketAddr) {
    let t = setup_with(|c| {
        c.auth.admin_key = Some(Secret::new(ADMIN));
        c.auth.mode = Some(mode);
        edit(c);
    })
    .await;
    let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let timeouts = server::Timeouts::from(&t.gw.config.server);
    tokio::spawn(server::serve(
        listener,
        switchyard::app(t.gw.clone()),
        timeouts,
        t.gw.abort.clone(),
        std::future::pending(),
    ));
    (t, addr)
}

/// Open the feed with a key and/or a cookie; `Err(status)` when the upgrade is refused.
async fn connect(addr: SocketAddr, key: Option<&str>, cookie: Option<&str>) -> Result<Ws, u16> {
    let mut req = format!("ws://{addr}/ai/stream")
        .into_client_request()
        .unwrap();
    if let Some(k) = key {
        let v = HeaderValue::from_str(&format!("Bearer {k}")).unwrap();
        req.headers_mut().insert("authorization", v);
    }
    if let Some(c) = cookie {
        req.headers_mut()
            .insert("cookie", HeaderValue::from_str(c).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, response)) => {
            assert_eq!(response.status(), 101);
            Ok(ws)
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("connect: {e}"),
    }
}

/// The next JSON text frame for which `wanted` holds, within `within`.
async fn next_where(ws: &mut Ws, within: Duration, wanted: impl Fn(&Value) -> bool) -> Value {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if wanted(&v) {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the feed ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("no such frame in time")
}

fn of_type(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == kind
}

/// How the feed ended: the close frame's code, or `None` when the socket just ended.
async fn closed(ws: &mut Ws, within: Duration) -> Option<u16> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the feed did not end in time")
}

async fn request(
    gw: &Arc<Gateway>,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let (s, h, b) = send(gw, req).await;
    (s, h, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// A new key with these scopes: (id, secret).
async fn key(gw: &Arc<Gateway>, scopes: Value) -> (String, String) {
    let body = json!({"name": "k", "scopes": scopes});
    let (s, _, v) = request(gw, Method::POST, "/admin/keys", Some(ADMIN), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["scopes"], scopes);
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

fn chat_body() -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 8,
           "messages": [{"role": "user", "content": "hello there"}]})
}

#[tokio::test]
async fn the_feed_sends_snapshots_with_the_schema_fields_and_decisions() {
    let (t, addr) = serve(AuthMode::Keys).await;
    let (_, caller) = key(&t.gw, json!([])).await;
    let mut ws = connect(addr, Some(ADMIN), None).await.unwrap();
    let snap = next_where(&mut ws, Duration::from_secs(3), of_type("snapshot")).await;
    for field in ["ts_ms", "uptime_s", "totals", "models", "keys", "cache"] {
        assert!(snap.get(field).is_some(), "{field} missing: {snap}");
    }
    for field in [
        "requests_per_s",
        "errors_per_s",
        "cost_per_min_usd",
        "in_flight",
        "alerts_active",
    ] {
        assert!(
            snap["totals"].get(field).is_some(),
            "totals.{field}: {snap}"
        );
    }
    for field in ["hits", "misses", "hit_rate"] {
        assert!(snap["cache"].get(field).is_some(), "cache.{field}");
    }
    let models = snap["models"].as_array().unwrap();
    assert_eq!(models.len(), t.gw.config.models.len());
    let fields = [
        "model",
        "provider",
        "requests_per_s",
        "success_rate",
        "latency_p50_ms",
        "latency_p99_ms",
        "ttft_p50_ms",
        "ttft_p99_ms",
        "tokens_per_s",
        "cost_per_min_usd",
        "breaker",
        "forced",
        "drained",
        "share",
        "in_flight",
    ];
    for m in models {
        for field in fields {
            assert!(m.get(field).is_some(), "models[].{field}: {m}");
        }
        assert_eq!(
            (m["breaker"].clone(), m["drained"].clone()),
            (json!("closed"), json!(false))
        );
    }
    let (s, _, v) = request(
        &t.gw,
        Method::POST,
        "/v1/chat/completions",
        Some(&caller),
        Some(chat_body()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let d = next_where(&mut ws, Duration::from_secs(3), of_type("decision")).await;
    assert_eq!(
        (
            d["model"].clone(),
            d["status"].clone(),
            d["attempts"].clone()
        ),
        (json!("gpt-4o-mini"), json!(200), json!(1))
    );
    assert!(
        !d["reason"].as_str().unwrap().is_empty() && d["cache"].is_string(),
        "{d}"
    );
    // The request shows in the rates within a few snapshots, and the key with its spend.
    let busy =
        next_where(&mut ws, Duration::from_secs(4), |v| {
            v["type"] == "snapshot"
                && v["models"].as_array().unwrap().iter().any(|m| {
                    m["model"] == "gpt-4o-mini" && m["requests_per_s"].as_f64() > Some(0.0)
                })
        })
        .await;
    assert!(
        busy["totals"]["requests_per_s"].as_f64() > Some(0.0),
        "{busy}"
    );
    assert_eq!(busy["keys"].as_array().unwrap().len(), 1, "{busy}");
}

#[tokio::test]
async fn only_the_admin_and_dashboard_keys_watch_and_a_revoked_key_stops_at_once() {
    let (t, addr) = serve(AuthMode::Keys).await;
    assert_eq!(connect(addr, None, None).await.err(), Some(401));
    assert_eq!(
        connect(addr, Some("sk-sy-wrong"), None).await.err(),
        Some(401)
    );
    let (_, plain) = key(&t.gw, json!([])).await;
    assert_eq!(connect(addr, Some(&plain), None).await.err(), Some(403));
    let (id, viewer) = key(&t.gw, json!(["dashboard"])).await;
    let mut ws = connect(addr, Some(&viewer), None).await.unwrap();
    next_where(&mut ws, Duration::from_secs(3), of_type("snapshot")).await;
    let (s, _, _) = request(
        &t.gw,
        Method::DELETE,
        &format!("/admin/keys/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(closed(&mut ws, Duration::from_secs(3)).await, Some(1008));
    assert_eq!(connect(addr, Some(&viewer), None).await.err(), Some(401));
    // Not a WebSocket request: 426 once admitted.
    let (s, _, v) = request(&t.gw, Method::GET, "/ai/stream", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::UPGRADE_REQUIRED, "{v}");
}

#[tokio::test]
async fn a_dashboard_key_reads_but_cannot_call_models_or_write() {
    let (t, _) = serve(AuthMode::Keys).await;
    let (_, viewer) = key(&t.gw, json!(["dashboard"])).await;
    let (s, _, v) = request(
        &t.gw,
        Method::POST,
        "/v1/chat/completions",
        Some(&viewer),
        Some(chat_body()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "permission_denied");
    let (s, _, _) = request(&t.gw, Method::GET, "/ai/performance", Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK);
    let feedback = json!({"request_id": "req_x", "score": 1});
    let (s, _, _) = request(
        &t.gw,
        Method::POST,
        "/ai/feedback",
        Some(&viewer),
        Some(feedback),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // With `models` as well, it calls models again.
    let (_, both) = key(&t.gw, json!(["dashboard", "models"])).await;
    let (s, _, _) = request(
        &t.gw,
        Method::POST,
        "/v1/chat/completions",
        Some(&both),
        Some(chat_body()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for bad in [
        json!(["dashbord"]),
        json!(["dashboard", "dashboard"]),
        json!("dashboard"),
    ] {
        let body = json!({"name": "k", "scopes": bad});
        let (s, _, v) = request(&t.gw, Method::POST, "/admin/keys", Some(ADMIN), Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(
            v["error"]["param"].as_str().unwrap().starts_with("scopes"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn a_session_cookie_opens_the_feed_until_its_key_is_revoked() {
    let (t, addr) = serve(AuthMode::Keys).await;
    let (s, _, _) = request(&t.gw, Method::POST, "/dashboard/session", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, plain) = key(&t.gw, json!([])).await;
    let (s, _, _) = request(
        &t.gw,
        Method::POST,
        "/dashboard/session",
        Some(&plain),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (id, viewer) = key(&t.gw, json!(["dashboard"])).await;
    let (s, h, _) = request(
        &t.gw,
        Method::POST,
        "/dashboard/session",
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let set = h["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(
        cookie.starts_with("switchyard_dashboard=") && cookie.len() > 40,
        "{cookie}"
    );
    assert!(!set.contains(&viewer), "the key is never in the cookie");
    let mut ws = connect(addr, None, Some(&cookie)).await.unwrap();
    next_where(&mut ws, Duration::from_secs(3), of_type("snapshot")).await;
    assert_eq!(
        connect(addr, None, Some("switchyard_dashboard=forged"))
            .await
            .err(),
        Some(401)
    );
    request(
        &t.gw,
        Method::DELETE,
        &format!("/admin/keys/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(closed(&mut ws, Duration::from_secs(3)).await, Some(1008));
    assert_eq!(connect(addr, None, Some(&cookie)).await.err(), Some(401));
    // The admin key gets a session too.
    let (s, _, _) = request(&t.gw, Method::POST, "/dashboard/session", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn topics_filter_the_feed_and_unknown_ones_are_named() {
    let (t, addr) = serve(AuthMode::Open).await;
    // `open` mode: anyone watches.
    let mut ws = connect(addr, None, None).await.unwrap();
    ws.send(Message::Text(
        r#"{"subscribe": ["breakers", "gossip"]}"#.into(),
    ))
    .await
    .unwrap();
    let e = next_where(&mut ws, Duration::from_secs(3), of_type("error")).await;
    assert!(e["message"].as_str().unwrap().contains("gossip"), "{e}");
    ws.send(Message::Text(r#"{"subscribe": ["breakers"]}"#.into()))
        .await
        .unwrap();
    // Drain what was sent before the change took effect (frames wait in the socket until read):
    // once 1.5 s pass without a frame, no snapshot (one a second) is coming any more.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1500), ws.next()).await {}
    let (s, _, v) = request(
        &t.gw,
        Method::POST,
        "/admin/models/gpt-4o-mini/breaker",
        Some(ADMIN),
        Some(json!({"force": "open"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let b = next_where(&mut ws, Duration::from_secs(3), |v| {
        assert_ne!(v["type"], "snapshot", "a snapshot after unsubscribing");
        true
    })
    .await;
    assert_eq!(b["type"], "breaker", "{b}");
    assert_eq!(
        (b["model"].clone(), b["to"].clone(), b["cause"].clone()),
        (json!("gpt-4o-mini"), json!("open"), json!("forced"))
    );
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_not_buffered() {
    let (t, addr) = serve(AuthMode::Open).await;
    let mut ws = connect(addr, None, None).await.unwrap();
    let registered = async {
        while t.gw.live.feeds() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3), registered)
        .await
        .unwrap();
    // 40 MB of events to a client that reads nothing: far more than the sockets hold.
    let detail = "x".repeat(2048);
    for i in 0..20_000 {
        t.gw.live.publish(Event::PolicyReload(PolicyEvent {
            ts_ms: i,
            ok: true,
            detail: detail.clone(),
        }));
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let dropped = async {
        while t.gw.live.feeds() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), dropped)
        .await
        .expect("the slow client is still served");
    // What reached its socket before is readable; then the feed ends.
    closed(&mut ws, Duration::from_secs(10)).await;
}

const POLICY_TEMPLATE: &str =
    include_str!("../../../../plugins/host/tests/fixtures/policy-template.wat");

/// A policy folder `dir/name` that allows every request (its module in WAT text).
fn write_policy(dir: &std::path::Path, name: &str) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let wat = POLICY_TEMPLATE
        .replace("{{IMPORTS}}", "")
        .replace("{{CORE_IMPORTS}}", "")
        .replace("{{CORE_WITH}}", "")
        .replace("{{BODY}}", "(i32.const 16)");
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

#[tokio::test]
async fn a_policy_reload_that_breaks_a_policy_sends_a_failed_policy_reload_frame() {
    let dir = tempfile::tempdir().unwrap();
    write_policy(dir.path(), "allow-all");
    let path = dir.path().to_path_buf();
    let (t, addr) = serve_with(AuthMode::Keys, |c| {
        c.policies.dir = Some(path.clone());
        c.policies.cache_dir = Some(path.join(".cache"));
        c.policies.watch = false;
    })
    .await;
    let mut ws = connect(addr, Some(ADMIN), None).await.unwrap();
    // A first snapshot: the feed has seen the policies as they were.
    next_where(&mut ws, Duration::from_secs(3), of_type("snapshot")).await;
    std::fs::write(dir.path().join("allow-all/p.wat"), "(component broken").unwrap();
    let (s, _, report) = request(
        &t.gw,
        Method::POST,
        "/ai/policies/reload",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(
        report["failed"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    let frame = next_where(&mut ws, Duration::from_secs(4), of_type("policy_reload")).await;
    assert_eq!(frame["ok"], false, "{frame}");
    assert!(
        frame["detail"]
            .as_str()
            .unwrap()
            .contains("allow-all (stale)"),
        "{frame}"
    );
    assert!(frame["ts_ms"].as_i64() > Some(0), "{frame}");
    // Mended and reloaded: an ok frame.
    write_policy(dir.path(), "allow-all");
    let (s, _, _) = request(
        &t.gw,
        Method::POST,
        "/ai/policies/reload",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let frame = next_where(&mut ws, Duration::from_secs(4), of_type("policy_reload")).await;
    assert_eq!(frame["ok"], true, "{frame}");
}

#[tokio::test]
async fn decision_sample_zero_sends_no_decisions_but_snapshots_still_arrive() {
    let (t, addr) = serve_with(AuthMode::Open, |c| c.live.decision_sample = 0.0).await;
    let mut ws = connect(addr, None, None).await.unwrap();
    next_where(&mut ws, Duration::from_secs(3), of_type("snapshot")).await;
    for _ in 0..5 {
        let (s, _, v) = request(
            &t.gw,
            Method::POST,
            "/v1/chat/completions",
            None,
            Some(chat_body()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // Every frame up to a snapshot that counts those requests, and one more snapshot after it:
    // none is a decision.
    let mut snapshots = 0;
    let counted = |v: &Value| {
        v["models"].as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m["model"] == "gpt-4o-mini" && m["requests_per_s"].as_f64() > Some(0.0))
        })
    };
    let mut seen_busy = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("no snapshot counting the requests in time");
        let v: Value = match frame {
            Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("the feed ended: {other:?}"),
        };
        assert_ne!(
            v["type"], "decision",
            "a decision frame with decision_sample = 0: {v}"
        );
        if v["type"] == "snapshot" {
            snapshots += 1;
            if seen_busy {
                break;
            }
            seen_busy = counted(&v);
        }
    }
    assert!(snapshots >= 2, "{snapshots} snapshots");
}

#[test]
fn decision_sample_is_checked_in_config() {
    for bad in ["1.5", "-0.1", "nan"] {
        let text = format!("[live]\ndecision_sample = {bad}\n");
        let errors = config::load_str(&text, &Vars::only(&[])).unwrap_err();
        assert!(
            errors.0.iter().any(|e| e.path == "live.decision_sample"),
            "{bad}: {errors:?}"
        );
    }
    let errors = config::load_str("[live]\nsample = 1\n", &Vars::only(&[])).unwrap_err();
    assert!(
        errors.0.iter().any(|e| e.path.starts_with("live")),
        "{errors:?}"
    );
}
