//! Cost accounting and the request log through the real pipeline, with a SQLite store: a
//! complete answer is priced from the provider's usage; a stream cut after its first token, or
//! abandoned by the client, is priced from an estimate of what was generated and flagged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard::{Gateway, app};
use switchyard_sim::{self as sim, FaultMode, SimHandle};
use switchyard_types::Usage;
use tower::ServiceExt;

use crate::common::{logged_rows, price};

struct Logged {
    sim: SimHandle,
    gw: Arc<Gateway>,
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
    let gw = Gateway::connect(cfg).await.unwrap();
    Logged {
        sim,
        gw,
        url,
        _dir: dir,
    }
}

fn chat(id: &str, body: &Value) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-request-id", id)
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn answers_cut_and_abandoned_streams_are_all_priced_and_logged() {
    let t = logged().await;
    let ask = |stream: bool| {
        json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "max_tokens": 40,
            "messages": [{"role": "user", "content": "tell me a story"}],
        })
    };

    // 1. A complete answer: the provider's usage, not estimated.
    let resp = app(t.gw.clone())
        .oneshot(chat("acc-complete", &ask(false)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let complete_usage: Usage = serde_json::from_value(body["usage"].clone()).unwrap();

    // 2. A stream cut by the upstream after its first tokens: an error event, no [DONE].
    t.sim
        .sim
        .set_fault("gpt-4o-mini", "cut:3", FaultMode::Count(1))
        .unwrap();
    let resp = app(t.gw.clone())
        .oneshot(chat("acc-cut", &ask(true)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("\"error\"") && !text.contains("[DONE]"),
        "{text}"
    );

    // 3. A stream the client walks away from after the first frame.
    let resp = app(t.gw.clone())
        .oneshot(chat("acc-gone", &ask(true)))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);

    let [complete, cut, gone] =
        logged_rows(&t.gw, &t.url, &["acc-complete", "acc-cut", "acc-gone"])
            .await
            .try_into()
            .unwrap();
    assert!(!complete.usage_estimated);
    assert_eq!(complete.completion_tokens, complete_usage.completion_tokens);
    assert_eq!(
        complete.cost_picousd,
        price(&t.gw, "gpt-4o-mini", &complete_usage)
    );
    assert!(complete.cost_picousd > 0);
    assert_eq!(complete.attempts.len(), 1);

    for (row, code) in [(&cut, "stream_cut"), (&gone, "client_closed")] {
        assert_eq!(row.status, 200);
        assert_eq!(row.error_code.as_deref(), Some(code), "{row:?}");
        assert!(row.usage_estimated, "{row:?}");
        assert!(row.stream);
        assert!(row.completion_tokens >= 1, "{row:?}");
        assert!(row.prompt_tokens >= 1, "{row:?}");
        let usage = Usage::new(row.prompt_tokens, row.completion_tokens);
        assert_eq!(
            row.cost_picousd,
            price(&t.gw, "gpt-4o-mini", &usage),
            "{row:?}"
        );
    }
    // The cut stream produced less than a whole answer.
    assert!(cut.completion_tokens < complete_usage.completion_tokens + 5);
}
