//! Shared by the in-process test files: the demo config served by a zero-latency simulator on
//! loopback, and requests through `switchyard::app` with `oneshot`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use switchyard::config::Config;
use switchyard::{Gateway, app, demo};
use switchyard_sim::{self as sim, SimHandle};
use switchyard_store::{RequestLog, RequestRecord, Store};
use switchyard_types::Usage;
use tower::ServiceExt;

pub struct Setup {
    pub sim: SimHandle,
    pub gw: Arc<Gateway>,
}

/// The demo's models and routes over a simulator without latency (tests are about behaviour).
pub async fn setup() -> Setup {
    setup_with(|_| {}).await
}

pub async fn setup_with(edit: impl FnOnce(&mut Config)) -> Setup {
    let sim = sim::spawn(
        sim::SimConfig::default(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let mut cfg = demo::config(&format!("http://{}", sim.addr)).unwrap();
    cfg.sim = sim::SimConfig::default();
    edit(&mut cfg);
    Setup {
        gw: Gateway::new(cfg).unwrap(),
        sim,
    }
}

/// Status, headers and body of one request.
pub async fn send(gw: &Arc<Gateway>, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = app(gw.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

/// POST a JSON body.
pub fn post_request(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// POST a JSON body; the answer must be JSON.
pub async fn post_json(gw: &Arc<Gateway>, path: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, bytes) = send(gw, post_request(path, &body)).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, v)
}

/// GET a path; the answer must be JSON.
pub async fn get_json(gw: &Arc<Gateway>, path: &str) -> (StatusCode, Value) {
    let req = Request::get(path).body(Body::empty()).unwrap();
    let (status, _, bytes) = send(gw, req).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, v)
}

/// Config text: the simulator's OpenAI and Anthropic wire formats as two providers, with one
/// model each (`gpt-4o-mini`, `claude-3-5-haiku`).
pub fn pair_providers(sim_url: &str) -> String {
    format!(
        r#"
[providers.openai]
kind = "openai"
base_url = "{sim_url}/openai/v1"
api_key = "sim"
[providers.anthropic]
kind = "anthropic"
base_url = "{sim_url}/anthropic/v1"
api_key = "sim"

[models."gpt-4o-mini"]
provider = "openai"
[models."claude-3-5-haiku"]
provider = "anthropic"
"#
    )
}

/// Config text: all four of the simulator's wire formats, one model each (the pair's, then
/// `gemini-2.0-flash` and `llama3.2`).
pub fn all_providers(sim_url: &str) -> String {
    format!(
        r#"{pair}
[providers.gemini]
kind = "gemini"
base_url = "{sim_url}/gemini/v1beta"
api_key = "sim"
[providers.ollama]
kind = "openai-compatible"
dialect = "ollama"
base_url = "{sim_url}/ollama/v1"

[models."gemini-2.0-flash"]
provider = "gemini"
[models."llama3.2"]
provider = "ollama"
"#,
        pair = pair_providers(sim_url)
    )
}

/// Shut the gateway down (flushing its log writer), then read the one request-log row of each
/// client request id from the store at `url`.
pub async fn logged_rows(gw: &Gateway, url: &str, ids: &[&str]) -> Vec<RequestRecord> {
    gw.shutdown().await;
    let store = Store::connect(url).await.unwrap();
    let mut out = Vec::new();
    for id in ids {
        let mut found = RequestLog::requests_by_client_id(&store, id).await.unwrap();
        assert_eq!(found.len(), 1, "rows for {id}: {found:?}");
        out.extend(found.pop());
    }
    out
}

/// What the catalog charges `model` for `usage`, in picodollars.
pub fn price(gw: &Gateway, model: &str, usage: &Usage) -> i64 {
    gw.config
        .models
        .get(model)
        .unwrap()
        .entry
        .usage_cost_pico(usage)
}
