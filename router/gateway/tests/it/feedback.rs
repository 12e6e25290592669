//! Quality from feedback through the HTTP surface: answers from two models, thumbs down for one
//! model's and up for the other's; with a quality weight (in the request, or the route's config)
//! the ranking flips and the explanation shows the quality term; without it nothing changes.
//! Another key's feedback is refused as if the request did not exist, bad fields are 400s naming
//! them, a second feedback is 409, and a restarted gateway learns the estimates from the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use switchyard::config::{AuthMode, Config};
use switchyard::{Gateway, demo};
use switchyard_sim::{self as sim, SimHandle};
use switchyard_store::{FeedbackLog, RequestLog};
use switchyard_types::ids::Secret;

use crate::common::send;

const ADMIN: &str = "feedback-admin-key-0123456789";
const MODELS: [&str; 2] = ["gpt-4o-mini", "claude-3-5-haiku"];

struct Rated {
    _sim: SimHandle,
    gw: Arc<Gateway>,
    cfg: Config,
    _dir: tempfile::TempDir,
}

async fn rated() -> Rated {
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let overrides = format!(
        r#"
[routes.rated]
models = ["{a}", "{b}"]
weights = {{ cost = 1, reliability = 1 }}

[routes.rated_q]
models = ["{a}", "{b}"]
weights = {{ cost = 1, reliability = 1, quality = 4 }}
"#,
        a = MODELS[0],
        b = MODELS[1]
    );
    let mut cfg = demo::config_with(&format!("http://{}", sim.addr), Some(&overrides)).unwrap();
    cfg.sim = sim::SimConfig::default();
    cfg.policies.dir = None;
    cfg.store.url = format!("sqlite://{}/log.db", dir.path().display());
    cfg.store.flush_ms = 5;
    cfg.auth.admin_key = Some(Secret::new(ADMIN));
    cfg.auth.mode = Some(AuthMode::Keys);
    let gw = Gateway::connect(cfg.clone()).await.unwrap();
    Rated {
        _sim: sim,
        gw,
        cfg,
        _dir: dir,
    }
}

async fn call(
    gw: &Arc<Gateway>,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let (s, h, b) = send(gw, req.body(body).unwrap()).await;
    let id = h
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (s, id, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

async fn new_key(gw: &Arc<Gateway>, name: &str) -> String {
    let (s, _, v) = call(
        gw,
        Method::POST,
        "/admin/keys",
        Some(ADMIN),
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["key"].as_str().unwrap().to_owned()
}

/// `/ai/route` over `route`, optionally narrowed to one model, with optional weights: the
/// request id and the routing explanation.
async fn route(
    gw: &Arc<Gateway>,
    key: &str,
    route: &str,
    model: Option<&str>,
    weights: Option<Value>,
) -> (String, Value) {
    let mut body = json!({"route": route, "prompt": "write a query", "max_tokens": 16});
    if let Some(m) = model {
        body["models"] = json!([m]);
    }
    if let Some(w) = weights {
        body["preferences"] = json!({"weights": w});
    }
    let (s, id, v) = call(gw, Method::POST, "/ai/route", Some(key), Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (id.unwrap(), v["routing"].clone())
}

/// The request's row is written by the batched writer: wait for it (a bound, not a timing).
async fn logged(gw: &Arc<Gateway>, id: &str) {
    let store = gw.store.as_ref().unwrap();
    for _ in 0..1000 {
        if store.get_request(id).await.unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("row {id} was never written");
}

async fn feedback(gw: &Arc<Gateway>, key: Option<&str>, body: Value) -> (StatusCode, Value) {
    let (s, _, v) = call(gw, Method::POST, "/ai/feedback", key, Some(body)).await;
    (s, v)
}

fn candidate<'a>(routing: &'a Value, model: &str) -> &'a Value {
    routing["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == model)
        .unwrap()
}

#[tokio::test]
async fn feedback_moves_quality_and_a_quality_weight_changes_the_ranking() {
    let t = rated().await;
    let gw = &t.gw;
    let alice = new_key(gw, "alice").await;
    let bob = new_key(gw, "bob").await;
    // Latency is left out: its live estimates move with every answer; prices do not.
    let balanced = json!({"cost": 1, "reliability": 1});
    let with_quality = json!({"cost": 1, "reliability": 1, "quality": 4});

    // Before any feedback: the same winner with or without the quality weight (all at the prior).
    let (_, before) = route(gw, &alice, "rated", None, Some(balanced.clone())).await;
    let winner = before["chosen"].as_str().unwrap().to_owned();
    let loser = MODELS.iter().find(|m| **m != winner).unwrap().to_string();
    let (_, cold) = route(gw, &alice, "rated", None, Some(with_quality.clone())).await;
    assert_eq!(cold["chosen"], winner.as_str(), "{cold}");
    assert_eq!(candidate(&cold, &loser)["terms"]["quality"], 0.0);
    assert_eq!(candidate(&cold, &loser)["quality_basis"], "prior");

    // Three answers from each model on the route; the winner's are rated down, the loser's up.
    let mut ids = Vec::new();
    for (model, thumbs) in [(&winner, "down"), (&loser, "up")] {
        for _ in 0..3 {
            let (id, r) = route(gw, &alice, "rated", Some(model), None).await;
            assert_eq!(&r["chosen"], model.as_str());
            ids.push((id, thumbs));
        }
    }
    for (id, thumbs) in &ids {
        logged(gw, id).await;
        let (s, v) = feedback(
            gw,
            Some(&alice),
            json!({"request_id": id, "thumbs": thumbs}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (last_id, _) = ids.last().unwrap();
    // The estimate moved the right way, from the route's own evidence.
    let (_, v) = feedback(
        gw,
        Some(&alice),
        json!({"request_id": ids[0].0, "score": 1}),
    )
    .await;
    assert_eq!(v["error"]["code"], "feedback_exists", "{v}");
    let (_, warm) = route(gw, &alice, "rated", None, Some(balanced.clone())).await;
    let (w, l) = (candidate(&warm, &winner), candidate(&warm, &loser));
    assert!(w["quality"].as_f64().unwrap() < 0.5, "{w}");
    assert!(l["quality"].as_f64().unwrap() > 0.5, "{l}");
    assert_eq!(w["quality_basis"], "route");
    assert!(
        (w["quality_evidence"].as_f64().unwrap() - 3.0).abs() < 1e-6,
        "{w}"
    );
    // Without a quality weight the ranking is unchanged...
    assert_eq!(warm["chosen"], winner.as_str(), "{warm}");
    assert!(!warm["reason"].as_str().unwrap().contains("quality"));
    // ...with one, the well-rated model leads, and the explanation says why.
    let (_, flipped) = route(gw, &alice, "rated", None, Some(with_quality)).await;
    assert_eq!(flipped["chosen"], loser.as_str(), "{flipped}");
    assert_eq!(flipped["weights"]["quality"], 4.0);
    let wt = &candidate(&flipped, &winner)["terms"];
    assert!(wt["quality"].as_f64().unwrap() > 0.5, "{wt}");
    assert_eq!(candidate(&flipped, &loser)["terms"]["quality"], 0.0);
    let reason = flipped["reason"].as_str().unwrap();
    assert!(reason.contains("quality"), "{reason}");
    // A route configured with the weight: no feedback of its own, so the models' estimates.
    let (_, configured) = route(gw, &alice, "rated_q", None, None).await;
    assert_eq!(configured["chosen"], loser.as_str(), "{configured}");
    assert_eq!(candidate(&configured, &winner)["quality_basis"], "model");

    // A task tag travels with the request and its feedback: three answers for "sql", rated
    // down; the rated route's prices make the winner answer them.
    let mut tagged = Vec::new();
    for i in 0..3 {
        let (s, id, v) = call(
            gw,
            Method::POST,
            "/v1/chat/completions",
            Some(&alice),
            Some(json!({
                "model": "rated",
                "messages": [{"role": "user", "content": "a query please"}],
                "metadata": {"task": "sql"},
            })),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let id = id.unwrap();
        logged(gw, &id).await;
        let (s, v) = feedback(
            gw,
            Some(&alice),
            json!({"request_id": id, "score": 0.25, "comment": "wrong dialect"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["task"], "sql");
        assert_eq!(v["model"], winner.as_str());
        // Too little feedback for the task at first: the route's estimate; then the task's.
        let basis = if i < 2 { "route" } else { "task" };
        assert_eq!(v["quality"]["basis"], basis, "{v}");
        tagged.push(id);
    }
    let stored = gw
        .store
        .as_ref()
        .unwrap()
        .get_feedback(&tagged[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.comment.as_deref(), Some("wrong dialect"));
    assert_eq!(stored.task.as_deref(), Some("sql"));
    assert_eq!(stored.score, 0.25);
    // `/ai/route` takes the tag in its `metadata`; a request without one reads the route's cell.
    let (s, _, v) = call(
        gw,
        Method::POST,
        "/ai/route",
        Some(&alice),
        Some(
            json!({"route": "rated", "prompt": "q", "max_tokens": 8, "metadata": {"task": "sql"}}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let w = candidate(&v["routing"], &winner);
    assert_eq!(w["quality_basis"], "task", "{w}");
    assert!(
        (w["quality_evidence"].as_f64().unwrap() - 3.0).abs() < 1e-3,
        "{w}"
    );
    // Beta(2 + 3·0.25, 2 + 3·0.75).
    assert!(
        (w["quality"].as_f64().unwrap() - 2.75 / 7.0).abs() < 1e-3,
        "{w}"
    );
    let (_, untagged) = route(gw, &alice, "rated", None, None).await;
    assert_eq!(candidate(&untagged, &winner)["quality_basis"], "route");

    // Another key's request is as unknown as one that does not exist; no key is a 401.
    let (s, v) = feedback(
        gw,
        Some(&bob),
        json!({"request_id": last_id, "thumbs": "down"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s2, v2) = feedback(
        gw,
        Some(&bob),
        json!({"request_id": "req_000000000000000000000000", "thumbs": "down"}),
    )
    .await;
    assert_eq!(s2, StatusCode::NOT_FOUND);
    assert_eq!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .replace(last_id.as_str(), "ID"),
        v2["error"]["message"]
            .as_str()
            .unwrap()
            .replace("req_000000000000000000000000", "ID")
    );
    let (s, _) = feedback(gw, None, json!({"request_id": last_id, "thumbs": "down"})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // /ai/performance: per model and route, the estimate, its evidence and the counts.
    let (s, _, perf) = call(gw, Method::GET, "/ai/performance", Some(&alice), None).await;
    assert_eq!(s, StatusCode::OK);
    let wq = &perf["models"][winner.as_str()]["quality"];
    assert_eq!(wq["routes"]["rated"]["negative"], 6, "{wq}");
    assert!(wq["quality"].as_f64().unwrap() < 0.5);
    let lq = &perf["models"][loser.as_str()]["quality"];
    assert_eq!(lq["routes"]["rated"]["positive"], 3, "{lq}");
    assert_eq!(wq["routes"]["rated"]["tasks"]["sql"]["feedback"], 3, "{wq}");

    // A restarted gateway learns the estimates back from the store.
    gw.shutdown().await;
    let again = Gateway::connect(t.cfg.clone()).await.unwrap();
    let (_, _, perf) = call(&again, Method::GET, "/ai/performance", Some(&alice), None).await;
    let rebuilt = &perf["models"][winner.as_str()]["quality"]["routes"]["rated"];
    assert_eq!(
        rebuilt["negative"], wq["routes"]["rated"]["negative"],
        "{perf}"
    );
    let evidence = rebuilt["evidence"].as_f64().unwrap();
    assert!((evidence - wq["routes"]["rated"]["evidence"].as_f64().unwrap()).abs() < 1e-3);
    again.shutdown().await;
}

#[tokio::test]
async fn bad_feedback_is_a_400_naming_the_field() {
    let t = rated().await;
    let gw = &t.gw;
    let key = new_key(gw, "k").await;
    let id = "req_0123456789abcdef01234567";
    let cases = [
        (json!({"thumbs": "up"}), "request_id"),
        (json!({"request_id": 7, "thumbs": "up"}), "request_id"),
        (
            json!({"request_id": "chatcmpl-1", "thumbs": "up"}),
            "request_id",
        ),
        (
            json!({"request_id": format!("req_{}", "a".repeat(80)), "thumbs": "up"}),
            "request_id",
        ),
        (json!({"request_id": id}), "score"),
        (json!({"request_id": id, "score": 1.01}), "score"),
        (json!({"request_id": id, "score": null}), "score"),
        (json!({"request_id": id, "thumbs": "sideways"}), "thumbs"),
        (
            json!({"request_id": id, "thumbs": "up", "score": 1}),
            "thumbs",
        ),
        (
            json!({"request_id": id, "thumbs": "up", "comment": "x".repeat(2001)}),
            "comment",
        ),
        (
            json!({"request_id": id, "thumbs": "up", "comment": 5}),
            "comment",
        ),
        (
            json!({"request_id": id, "thumbs": "up", "model": "gpt-4o"}),
            "model",
        ),
        (json!("thumbs up"), "body"),
    ];
    for (body, param) in cases {
        let (s, v) = feedback(gw, Some(&key), body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    // Well-formed, but no such request.
    let (s, v) = feedback(gw, Some(&key), json!({"request_id": id, "thumbs": "up"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // Not JSON: 415, as for model calls.
    let req = Request::post("/ai/feedback")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "text/plain")
        .body(Body::from("up"))
        .unwrap();
    let (s, _, _) = send(gw, req).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // A malformed task tag on a chat request.
    let (s, _, v) = call(
        gw,
        Method::POST,
        "/v1/chat/completions",
        Some(&key),
        Some(json!({
            "model": "rated",
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"task": "not a tag!"},
        })),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "metadata.task");
    for task in [json!(5), json!("x".repeat(65)), json!("")] {
        let body = json!({"route": "rated", "prompt": "q", "metadata": {"task": task}});
        let (s, _, v) = call(gw, Method::POST, "/ai/route", Some(&key), Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["param"], "metadata.task", "{v}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_client_with_its_own_request_id_rates_by_the_servers_id() {
    let t = rated().await;
    let key = new_key(&t.gw, "own-ids").await;
    let req = Request::post("/ai/route")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .header("x-request-id", "client-trace-42")
        .body(Body::from(
            json!({"route": "rated", "prompt": "write a query", "max_tokens": 16}).to_string(),
        ))
        .unwrap();
    let (status, headers, _) = send(&t.gw, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-request-id"], "client-trace-42");
    let server_id = headers["x-switchyard-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(server_id.starts_with("req_"), "{server_id}");
    logged(&t.gw, &server_id).await;
    let (s, v) = feedback(
        &t.gw,
        Some(&key),
        json!({"request_id": server_id, "thumbs": "up"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}
