//! `GET /ai/spend` through the real pipeline on a SQLite store: the report per key equals each
//! key's own spend (`/admin/keys/{id}/spend`, the ledger's) to the picodollar, with complete,
//! cached (0), streamed, cut-but-billed, failed and cancelled requests; it equals the sum of
//! the log rows; a virtual key sees only its own rows; tags come from the header and the body
//! and are checked; every parameter is checked; CSV is CSV.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard::config::{AuthMode, Config};
use switchyard::{Gateway, app};
use switchyard_sim::{self as sim, FaultMode, SimHandle};
use switchyard_store::{RequestLog, Store};
use switchyard_types::clock::{now_ms, utc_day_start_ms};
use switchyard_types::ids::Secret;
use tower::ServiceExt;

use crate::common::send;

const ADMIN: &str = "test-admin-key-0123456789";
const DAY: i64 = 86_400_000;

struct Logged {
    sim: SimHandle,
    cfg: Config,
    url: String,
    _dir: tempfile::TempDir,
}

async fn logged() -> Logged {
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/log.db", dir.path().display());
    let mut cfg = switchyard::demo::config(&format!("http://{}", sim.addr)).unwrap();
    cfg.sim = sim::SimConfig::default();
    cfg.store.url = url.clone();
    cfg.policies.dir = None;
    cfg.auth.admin_key = Some(Secret::new(ADMIN));
    cfg.auth.mode = Some(AuthMode::Keys);
    cfg.log.tags = vec!["team".into(), "project".into()];
    Logged {
        sim,
        cfg,
        url,
        _dir: dir,
    }
}

fn request(method: Method, path: &str, key: &str, body: Option<&Value>) -> Request<Body> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    Request::builder()
        .method(method)
        .uri(path)
        .header(
            "x-request-id",
            format!("spend-{}", SEQ.fetch_add(1, Ordering::Relaxed)),
        )
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap()
}

async fn call(gw: &Arc<Gateway>, req: Request<Body>) -> (StatusCode, Value) {
    let (s, _, b) = send(gw, req).await;
    let v = serde_json::from_slice(&b)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned()));
    (s, v)
}

async fn new_key(gw: &Arc<Gateway>, name: &str) -> (String, String) {
    let spec = json!({"name": name, "budget_usd": 100.0, "budget_period": "day"});
    let (s, v) = call(gw, request(Method::POST, "/admin/keys", ADMIN, Some(&spec))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

fn ask(stream: bool, extra: Value) -> Value {
    let mut v = json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "max_tokens": 30,
        "temperature": 0,
        "messages": [{"role": "user", "content": "tell me a story"}],
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// The whole body of a request, read to its end (a stream too).
async fn drain(gw: &Arc<Gateway>, req: Request<Body>) -> (StatusCode, String) {
    let resp = app(gw.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// One key's traffic of every kind the ledger bills.
async fn traffic(t: &Logged, gw: &Arc<Gateway>, secret: &str) {
    let chat = |body: &Value| request(Method::POST, "/v1/chat/completions", secret, Some(body));
    // Complete, tagged by the header; then the same again: a cache hit, cost 0.
    for _ in 0..2 {
        let mut req = chat(&ask(false, json!({})));
        req.headers_mut().insert(
            "x-switchyard-tags",
            "team=red, other=ignored".parse().unwrap(),
        );
        let (s, body) = drain(gw, req).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    // A stream, tagged by the body's metadata.
    let (s, body) = drain(
        gw,
        chat(&ask(
            true,
            json!({"temperature": 0.7, "metadata": {"team": "blue", "project": "p-1"}}),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("[DONE]"), "{body}");
    // A stream cut after its first tokens: failed, but billed from an estimate.
    t.sim
        .sim
        .set_fault("gpt-4o-mini", "cut:3", FaultMode::Count(1))
        .unwrap();
    let (s, body) = drain(gw, chat(&ask(true, json!({"temperature": 0.5})))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!body.contains("[DONE]"), "{body}");
    // A failure with every attempt refused upstream.
    t.sim
        .sim
        .set_fault("gpt-4o-mini", "400", FaultMode::Count(1))
        .unwrap();
    let (s, body) = drain(gw, chat(&ask(false, json!({"temperature": 0.4})))).await;
    assert!(s.is_client_error() || s.is_server_error(), "{s} {body}");
    // Cancelled: the client leaves while the upstream hangs (499, billed from an estimate).
    t.sim
        .sim
        .set_fault("gpt-4o-mini", "hang", FaultMode::Count(1))
        .unwrap();
    let before = t.sim.sim.stats().model("gpt-4o-mini").requests;
    let app = app(gw.clone());
    let pending = tokio::spawn(app.oneshot(chat(&ask(false, json!({"temperature": 0.3})))));
    for _ in 0..500 {
        if t.sim.sim.stats().model("gpt-4o-mini").requests > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pending.abort();
    let _ = pending.await;
}

/// Count, cost and cancelled rows of the log, read back row by row (every request of these
/// tests carries an `x-request-id` from `request`).
async fn rows_sum(url: &str, ids: &[String]) -> (i64, i64, i64) {
    let store = Store::connect(url).await.unwrap();
    let mut sums = (0, 0, 0);
    for id in ids {
        for r in store.requests_by_client_id(id).await.unwrap() {
            assert!(r.billed);
            sums.0 += 1;
            sums.1 += r.cost_picousd;
            sums.2 += i64::from(r.status == 499);
        }
    }
    store.close().await;
    sums
}

#[tokio::test]
async fn the_report_equals_each_keys_spend_to_the_picodollar_and_the_rows() {
    let t = logged().await;
    let gw = Gateway::connect(t.cfg.clone()).await.unwrap();
    let (a, a_secret) = new_key(&gw, "a").await;
    let (b, b_secret) = new_key(&gw, "b").await;
    traffic(&t, &gw, &a_secret).await;
    let routed = json!({
        "messages": [{"role": "user", "content": "hello"}],
        "metadata": {"team": "red"},
    });
    let (s, v) = call(
        &gw,
        request(Method::POST, "/ai/route", &b_secret, Some(&routed)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Flush the log and the ledger, then read both back through a fresh gateway.
    gw.shutdown().await;
    let ids: Vec<String> = (0..200).map(|i| format!("spend-{i}")).collect();
    let (rows, rows_cost, cancelled) = rows_sum(&t.url, &ids).await;
    assert_eq!(cancelled, 1, "the cancelled request has its row");
    let gw = Gateway::connect(t.cfg.clone()).await.unwrap();
    let today = utc_day_start_ms(now_ms());
    let window = format!(
        "from={}&to={}",
        (today - DAY) / 1000,
        (today + 2 * DAY) / 1000
    );
    let (s, report) = call(
        &gw,
        request(
            Method::GET,
            &format!("/ai/spend?group_by=key&period=day&{window}"),
            ADMIN,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["group_by"], "key");
    assert_eq!(report["total"]["requests"], rows);
    assert_eq!(report["total"]["cost_picousd"], rows_cost);
    let lines = report["rows"].as_array().unwrap();
    for (id, want) in [(&a, 6), (&b, 1)] {
        let (s, spend) = call(
            &gw,
            request(Method::GET, &format!("/admin/keys/{id}/spend"), ADMIN, None),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{spend}");
        let mut requests = 0;
        for period in spend["history"].as_array().unwrap() {
            let line = lines
                .iter()
                .find(|l| l["group"] == **id && l["period_start_ms"] == period["period_start_ms"])
                .unwrap_or_else(|| panic!("no report row for {id} {period}"));
            assert_eq!(line["cost_picousd"], period["spent_picousd"], "{id}");
            assert_eq!(line["requests"], period["requests"], "{id}");
            assert_eq!(line["prompt_tokens"], period["prompt_tokens"], "{id}");
            assert_eq!(
                line["completion_tokens"], period["completion_tokens"],
                "{id}"
            );
            requests += period["requests"].as_i64().unwrap();
        }
        assert_eq!(requests, want, "{id}: {spend}");
    }
    let key_cost = |id: &str| -> i64 {
        lines
            .iter()
            .filter(|l| l["group"] == id)
            .map(|l| l["cost_picousd"].as_i64().unwrap())
            .sum()
    };
    assert!(key_cost(&a) > 0 && key_cost(&b) > 0);

    // By tag: the header's and the body's values; the header's unknown name is not kept.
    let (s, by_team) = call(
        &gw,
        request(
            Method::GET,
            &format!("/ai/spend?group_by=tag&tag=team&{window}"),
            ADMIN,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{by_team}");
    let team = |name: Option<&str>| -> i64 {
        by_team["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["group"].as_str() == name)
            .map(|l| l["requests"].as_i64().unwrap())
            .sum()
    };
    assert_eq!((team(Some("red")), team(Some("blue"))), (3, 1), "{by_team}");
    assert_eq!(team(None), 3, "{by_team}");
    assert_eq!(by_team["total"], report["total"]);

    // A virtual key sees its own rows only, whatever it groups by.
    let (s, mine) = call(
        &gw,
        request(
            Method::GET,
            &format!("/ai/spend?group_by=model&{window}"),
            &b_secret,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    assert_eq!(mine["key_id"], json!(b));
    assert_eq!(mine["total"]["cost_picousd"], key_cost(&b));
    assert_eq!(mine["total"]["requests"], 1);

    // A key with the `dashboard` scope sees every key, as the admin does.
    let spec = json!({"name": "viewer", "scopes": ["dashboard"]});
    let (s, v) = call(
        &gw,
        request(Method::POST, "/admin/keys", ADMIN, Some(&spec)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let viewer = v["key"].as_str().unwrap().to_owned();
    let (s, all) = call(
        &gw,
        request(Method::GET, &format!("/ai/spend?{window}"), &viewer, None),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(all["key_id"], Value::Null);
    assert_eq!(all["total"], report["total"]);

    // CSV, by parameter or by Accept.
    let (s, csv) = drain(
        &gw,
        request(
            Method::GET,
            &format!("/ai/spend?format=csv&{window}"),
            ADMIN,
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let mut lines_csv = csv.lines();
    assert_eq!(
        lines_csv.next(),
        Some("group,period_start,requests,prompt_tokens,completion_tokens,cost_picousd,cost_usd")
    );
    let csv_cost: i64 = lines_csv
        .map(|l| l.split(',').nth(5).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(csv_cost, rows_cost);
    let mut req = request(Method::GET, &format!("/ai/spend?{window}"), ADMIN, None);
    req.headers_mut()
        .insert("accept", "text/csv".parse().unwrap());
    let resp = app(gw.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn every_parameter_and_tag_is_checked() {
    let t = logged().await;
    let gw = Gateway::connect(t.cfg.clone()).await.unwrap();
    let (_, secret) = new_key(&gw, "c").await;
    for (query, param) in [
        ("group_by=team", "group_by"),
        ("period=week", "period"),
        ("from=2026-12-05T00:00:00Z&to=2026-12-04T00:00:00Z", "from"),
        ("from=yesterday", "from"),
        ("to=2026-12-04", "to"),
        ("from=1700000000&to=1740000000", "to"),
        ("period=hour&from=1700000000&to=1703000000", "period"),
        ("tag=team", "tag"),
        ("group_by=tag", "tag"),
        ("group_by=tag&tag=Team!", "tag"),
        ("group_by=tag&tag=region", "tag"),
        ("format=xml", "format"),
        ("colour=blue", "colour"),
        ("period=day&period=hour", "period"),
    ] {
        let (s, v) = call(
            &gw,
            request(Method::GET, &format!("/ai/spend?{query}"), ADMIN, None),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert_eq!(v["error"]["param"], param, "{query}: {v}");
    }
    // No key: refused; a plain key: its own report.
    let (s, _) = call(&gw, Request::get("/ai/spend").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = call(&gw, request(Method::GET, "/ai/spend", &secret, None)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["rows"], json!([]));

    // Tags on requests: a bad value of an allowed tag is a 400 naming where it came from.
    let chat = |body: &Value| request(Method::POST, "/v1/chat/completions", &secret, Some(body));
    for (header, body, param) in [
        (Some("team=-x"), json!({}), "x-switchyard-tags"),
        (Some("team"), json!({}), "x-switchyard-tags"),
        (None, json!({"metadata": {"team": 5}}), "metadata.team"),
        (
            None,
            json!({"metadata": {"project": "a;b"}}),
            "metadata.project",
        ),
        (
            Some("team=a"),
            json!({"metadata": {"team": "b"}}),
            "metadata.team",
        ),
    ] {
        let mut req = chat(&ask(false, body.clone()));
        if let Some(h) = header {
            req.headers_mut()
                .insert("x-switchyard-tags", h.parse().unwrap());
        }
        let (s, v) = call(&gw, req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{header:?} {body}: {v}");
        assert_eq!(v["error"]["param"], param, "{header:?} {body}: {v}");
    }
    // The Responses door reads its `metadata` too.
    for (team, want) in [("-bad", StatusCode::BAD_REQUEST), ("green", StatusCode::OK)] {
        let body = json!({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 16,
            "metadata": {"team": team}});
        let (s, v) = call(
            &gw,
            request(Method::POST, "/v1/responses", &secret, Some(&body)),
        )
        .await;
        assert_eq!(s, want, "{team}: {v}");
        if want == StatusCode::BAD_REQUEST {
            assert_eq!(v["error"]["param"], "metadata.team", "{v}");
        }
    }
    // Names not in [log] tags are ignored, whatever their value.
    let mut req = chat(&ask(
        false,
        json!({"metadata": {"user_tier": {"no": "string"}, "team": "a"}}),
    ));
    req.headers_mut()
        .insert("x-switchyard-tags", "region=!!!, team=a".parse().unwrap());
    let (s, v) = call(&gw, req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.shutdown().await;
}

/// Shadows: an unbilled one is in no key's spend and not in the report; a billed one is in
/// both, under its own model.
#[tokio::test]
async fn shadows_count_in_the_report_exactly_when_the_key_is_billed_for_them() {
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let sim_url = format!("http://{}", sim.addr);
    let providers = crate::common::pair_providers(&sim_url);
    let text = format!(
        r#"
{providers}

[routes.unbilled]
models = ["gpt-4o-mini"]
shadow = {{ model = "claude-3-5-haiku", sample = 1.0 }}
[routes.billed]
models = ["gpt-4o-mini"]
shadow = {{ model = "claude-3-5-haiku", sample = 1.0, bill = true }}
"#
    );
    let mut cfg =
        switchyard::config::load_str(&text, &switchyard::config::Vars::only(&[])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/log.db", dir.path().display());
    cfg.store.url = url.clone();
    cfg.store.flush_ms = 5;
    cfg.auth.admin_key = Some(Secret::new(ADMIN));
    cfg.auth.mode = Some(AuthMode::Keys);
    let gw = Gateway::connect(cfg.clone()).await.unwrap();
    let (id, secret) = new_key(&gw, "shadowed").await;
    let mut originals = Vec::new();
    for route in ["unbilled", "billed"] {
        let body = json!({"model": route, "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}]});
        let resp = app(gw.clone())
            .oneshot(request(
                Method::POST,
                "/v1/chat/completions",
                &secret,
                Some(&body),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let client = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        originals.push(client);
    }
    // Wait for both shadows' rows.
    let store = gw.store.clone().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut shadows = Vec::new();
    for client in &originals {
        loop {
            let rows = store.requests_by_client_id(client).await.unwrap();
            if let Some(original) = rows.iter().find(|r| r.shadow_of.is_none()) {
                let s = store.shadows_of(&original.id).await.unwrap();
                if let Some(shadow) = s.into_iter().next() {
                    shadows.push(shadow);
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no shadow of {client}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(!shadows[0].billed && shadows[1].billed, "{shadows:?}");
    assert!(shadows[0].cost_picousd > 0 && shadows[1].cost_picousd > 0);
    gw.shutdown().await;

    let gw = Gateway::connect(cfg).await.unwrap();
    let today = utc_day_start_ms(now_ms());
    let window = format!(
        "from={}&to={}",
        (today - DAY) / 1000,
        (today + 2 * DAY) / 1000
    );
    let (s, by_key) = call(
        &gw,
        request(Method::GET, &format!("/ai/spend?{window}"), ADMIN, None),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{by_key}");
    let (_, spend) = call(
        &gw,
        request(Method::GET, &format!("/admin/keys/{id}/spend"), ADMIN, None),
    )
    .await;
    let ledger: i64 = spend["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spent_picousd"].as_i64().unwrap())
        .sum();
    assert_eq!(by_key["total"]["cost_picousd"], ledger, "{by_key} {spend}");
    assert_eq!(by_key["total"]["requests"], 3, "{by_key}");
    let (_, by_model) = call(
        &gw,
        request(
            Method::GET,
            &format!("/ai/spend?group_by=model&{window}"),
            ADMIN,
            None,
        ),
    )
    .await;
    let haiku: Vec<&Value> = by_model["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["group"] == "claude-3-5-haiku")
        .collect();
    assert_eq!(haiku.len(), 1, "{by_model}");
    assert_eq!(haiku[0]["requests"], 1);
    assert_eq!(haiku[0]["cost_picousd"], shadows[1].cost_picousd);
    gw.shutdown().await;
    drop(sim);
}
