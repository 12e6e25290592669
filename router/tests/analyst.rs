//! Analyst endpoints end to end, in-process against the simulator: structured narratives are
//! validated, the repair retry happens on invalid JSON, and answers degrade (figures still
//! there) when every model fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard::analyst::narrative;
use switchyard::analyst::prompts::Endpoint;
use switchyard::sim::{self, FaultMode, SimHandle};
use switchyard::{Gateway, app, demo};
use tower::ServiceExt;

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
    let mut cfg = demo::config(&format!("http://{}", sim.addr)).unwrap();
    cfg.sim = sim::SimConfig::default();
    Setup {
        gw: Gateway::new(cfg).unwrap(),
        sim,
    }
}

async fn post(gw: &Arc<Gateway>, path: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(gw.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, v)
}

fn news() -> Value {
    json!({"items": [
        {"headline": "ACME beats estimates and raises guidance", "source": "Wire",
         "published_at": "2026-11-20T12:00:00Z", "symbols": ["ACME"]},
        {"headline": "Regulator opens probe into BOLT accounting", "body": "Shares fell 8%.",
         "published_at": "2026-11-19T09:30:00Z", "symbols": ["BOLT"]},
        {"headline": "ACME and BOLT announce a joint venture", "symbols": ["ACME", "BOLT"]}
    ]})
}

#[tokio::test]
async fn sentiment_scores_every_item_through_the_router() {
    let s = setup().await;
    let (status, v) = post(&s.gw, "/ai/sentiment/news", news()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["degraded"], false, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(item["scored_by"], "model");
        let score = item["score"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&score));
        assert!(["positive", "negative", "neutral"].contains(&item["label"].as_str().unwrap()));
    }
    let symbols: Vec<&str> = v["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, vec!["ACME", "BOLT"]);
    // Three short items fit one prompt: one routed call.
    assert_eq!(v["routing"].as_array().unwrap().len(), 1);
    assert!(v["routing"][0]["model"].is_string());
}

#[tokio::test]
async fn sentiment_degrades_to_the_lexicon_when_every_model_fails() {
    let s = setup().await;
    s.sim
        .sim
        .set_fault("*", "500", FaultMode::Rate(1.0))
        .unwrap();
    let (status, v) = post(&s.gw, "/ai/sentiment/news", news()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["degraded"], true);
    let items = v["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["scored_by"] == "lexicon"));
    assert_eq!(items[0]["label"], "positive", "{}", items[0]);
    assert_eq!(items[1]["label"], "negative", "{}", items[1]);
}

#[tokio::test]
async fn sentiment_rejects_bad_input_by_name() {
    let s = setup().await;
    let (status, v) = post(
        &s.gw,
        "/ai/sentiment/news",
        json!({"items": [{"headline": "ok"}, {"headline": "x", "published_at": "last week"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "items[1].published_at");
    let (status, v) = post(&s.gw, "/ai/sentiment/news", json!({"items": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "items");
    let (status, v) = post(
        &s.gw,
        "/ai/sentiment/news",
        json!({"items": [{"title": "x"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn an_invalid_json_answer_is_repaired_with_one_retry() {
    let s = setup().await;
    let spec =
        s.gw.analyst
            .prompts
            .spec(Endpoint::Portfolio)
            .unwrap()
            .clone();
    let user =
        s.gw.analyst
            .prompts
            .render(
                Endpoint::Portfolio,
                &switchyard::analyst::sample_context(Endpoint::Portfolio),
            )
            .unwrap();
    for model in [
        "gpt-4o-mini",
        "claude-3-5-haiku",
        "gemini-2.0-flash",
        "llama3.2",
    ] {
        // The first answer ignores the format; the second is fine.
        s.sim
            .sim
            .set_fault("*", "bad-json", FaultMode::Count(1))
            .unwrap();
        let n = narrative::ask(&s.gw, &spec, user.clone(), None, Some(model)).await;
        assert!(n.value.is_some(), "{model}: {:?}", n.error);
        assert!(n.repaired, "{model}");
        assert_eq!(n.routing.len(), 2, "{model}");
        assert!(n.value.unwrap()["commentary"].is_string());
    }
    // Invalid twice: no narrative, and the reason says why.
    s.sim
        .sim
        .set_fault("*", "bad-json", FaultMode::Count(2))
        .unwrap();
    let n = narrative::ask(&s.gw, &spec, user, None, Some("gpt-4o-mini")).await;
    assert!(n.value.is_none());
    assert!(n.error.unwrap().contains("not valid JSON"));
}
