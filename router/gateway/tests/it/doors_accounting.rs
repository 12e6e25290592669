//! The other front doors in the books: each writes its request-log row (endpoint, tokens,
//! cost), charges the virtual key, refuses a spent key in its own error shape, and counts in
//! `/metrics`; a routing policy runs on `/v1/messages` and is logged with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use switchyard::Gateway;
use switchyard::config::AuthMode;
use switchyard_sim::{self as sim, SimHandle};
use switchyard_types::ids::Secret;
use switchyard_types::{PromptTokensDetails, Usage};

use crate::common::{logged_rows, price, send};

const ADMIN: &str = "doors-admin-key-0123456789";

struct Books {
    _sim: SimHandle,
    gw: Arc<Gateway>,
    url: String,
    _dir: tempfile::TempDir,
}

/// Copies the shipped `pii-redact` policy into `into` (with a deadline a loaded debug build
/// meets: these tests are about what it does, not how fast).
fn install_pii_redact(into: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/pii-redact");
    let to = into.join("pii-redact");
    std::fs::create_dir_all(to.join("tests")).unwrap();
    let manifest = std::fs::read_to_string(from.join("policy.toml")).unwrap();
    assert!(
        from.join("pii_redact.wasm").is_file(),
        "build the policies first (bash policies/build.sh)"
    );
    let manifest: Vec<&str> = manifest
        .lines()
        .map(|l| {
            if l.starts_with("timeout_ms") {
                "timeout_ms = 50"
            } else {
                l
            }
        })
        .collect();
    std::fs::write(to.join("policy.toml"), manifest.join("\n")).unwrap();
    std::fs::copy(from.join("pii_redact.wasm"), to.join("pii_redact.wasm")).unwrap();
    for f in std::fs::read_dir(from.join("tests")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join("tests").join(f.file_name())).unwrap();
    }
}

/// The demo over the simulator with a SQLite request log, virtual keys, and (when asked) the
/// `pii-redact` policy.
async fn books(with_policy: bool) -> Books {
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
    cfg.auth.admin_key = Some(Secret::new(ADMIN));
    cfg.auth.mode = Some(AuthMode::Keys);
    if with_policy {
        let policies: PathBuf = dir.path().join("policies");
        install_pii_redact(&policies);
        cfg.policies.dir = Some(policies.clone());
        cfg.policies.cache_dir = Some(policies.join(".cache"));
        cfg.policies.watch = false;
    } else {
        cfg.policies.dir = None;
    }
    let gw = Gateway::connect(cfg).await.unwrap();
    Books {
        _sim: sim,
        gw,
        url,
        _dir: dir,
    }
}

async fn admin(gw: &Arc<Gateway>, method: Method, path: &str, body: Option<Value>) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let (s, _, b) = send(gw, req).await;
    assert!(s.is_success(), "{s}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

/// A key with this budget (total); returns (id, secret).
async fn key(gw: &Arc<Gateway>, budget_usd: f64) -> (String, String) {
    let v = admin(
        gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "doors", "budget_usd": budget_usd, "budget_period": "total"})),
    )
    .await;
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

/// POST `body` to a door as Anthropic's SDKs authenticate (`x-api-key`) on `/v1/messages`,
/// with a Bearer key elsewhere.
async fn door(
    gw: &Arc<Gateway>,
    path: &str,
    key: &str,
    id: &str,
    body: &Value,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::post(path)
        .header("content-type", "application/json")
        .header("x-request-id", id);
    req = if path.starts_with("/v1/messages") {
        req.header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    } else {
        req.header("authorization", format!("Bearer {key}"))
    };
    let (s, h, b) = send(gw, req.body(Body::from(body.to_string())).unwrap()).await;
    let v = serde_json::from_slice(&b)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&b)));
    (s, h, v)
}

/// An Anthropic `usage` as the hub's: input is every prompt token, cache reads and writes
/// included.
fn hub_usage(u: &Value) -> Usage {
    let n = |k: &str| u32::try_from(u[k].as_u64().unwrap()).unwrap();
    let (read, written) = (
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    let mut usage = Usage::new(n("input_tokens") + read + written, n("output_tokens"));
    usage.prompt_tokens_details = Some(PromptTokensDetails {
        cached_tokens: read,
        cache_write_tokens: written,
    });
    usage
}

async fn metrics(gw: &Arc<Gateway>) -> String {
    let req = Request::get("/metrics")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let (_, _, body) = send(gw, req).await;
    String::from_utf8(body).unwrap()
}

#[tokio::test]
async fn every_door_is_logged_priced_charged_and_counted() {
    let b = books(false).await;
    let (id, secret) = key(&b.gw, 10.0).await;
    // Messages: a cached system prefix, written by the first call and read by the second.
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    let msg = json!({"model": "claude-3-5-haiku", "max_tokens": 20,
        "system": [{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Summarise."}]});
    let (s1, _, m1) = door(&b.gw, "/v1/messages", &secret, "doors-msg-1", &msg).await;
    let (s2, _, m2) = door(&b.gw, "/v1/messages", &secret, "doors-msg-2", &msg).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{m1} {m2}");
    let (u1, u2) = (hub_usage(&m1["usage"]), hub_usage(&m2["usage"]));
    let read = u2.prompt_tokens_details.unwrap().cached_tokens;
    assert!(
        u1.prompt_tokens_details.unwrap().cache_write_tokens > 500,
        "{m1}"
    );
    assert!(read > 500, "{m2}");

    let resp = json!({"model": "gpt-4o-mini", "input": "Say hello.", "max_output_tokens": 20});
    let (s3, _, r) = door(&b.gw, "/v1/responses", &secret, "doors-resp", &resp).await;
    assert_eq!(s3, StatusCode::OK, "{r}");
    let ru = Usage::new(
        u32::try_from(r["usage"]["input_tokens"].as_u64().unwrap()).unwrap(),
        u32::try_from(r["usage"]["output_tokens"].as_u64().unwrap()).unwrap(),
    );

    let emb = json!({"model": "text-embedding-3-small", "input": ["alpha beta", "gamma"]});
    let (s4, _, e) = door(&b.gw, "/v1/embeddings", &secret, "doors-emb", &emb).await;
    assert_eq!(s4, StatusCode::OK, "{e}");
    let eu = Usage::new(
        u32::try_from(e["usage"]["prompt_tokens"].as_u64().unwrap()).unwrap(),
        0,
    );

    // /metrics: a series per door.
    let m = metrics(&b.gw).await;
    for endpoint in ["/v1/messages", "/v1/responses", "/v1/embeddings"] {
        let series = format!("endpoint=\"{endpoint}\"");
        assert!(
            m.lines()
                .any(|l| l.starts_with("switchyard_requests_total") && l.contains(&series)),
            "no switchyard_requests_total for {endpoint}:\n{m}"
        );
    }
    let spend = admin(&b.gw, Method::GET, &format!("/admin/keys/{id}/spend"), None).await;
    let spent = spend["spent_picousd"].as_i64().unwrap();

    let logged = logged_rows(
        &b.gw,
        &b.url,
        &["doors-msg-1", "doors-msg-2", "doors-resp", "doors-emb"],
    )
    .await;
    let expect = [
        ("/v1/messages", "claude-3-5-haiku", u1),
        ("/v1/messages", "claude-3-5-haiku", u2),
        ("/v1/responses", "gpt-4o-mini", ru),
        ("/v1/embeddings", "text-embedding-3-small", eu),
    ];
    let mut total = 0;
    for (row, (endpoint, model, usage)) in logged.iter().zip(expect) {
        assert_eq!(row.endpoint, endpoint, "{row:?}");
        assert_eq!(row.model.as_deref(), Some(model), "{row:?}");
        assert_eq!(row.key_id.as_deref(), Some(id.as_str()), "{row:?}");
        assert_eq!(row.status, 200);
        assert_eq!(row.prompt_tokens, usage.prompt_tokens, "{row:?}");
        assert_eq!(row.completion_tokens, usage.completion_tokens, "{row:?}");
        let cached = usage.prompt_tokens_details.map_or(0, |d| d.cached_tokens);
        assert_eq!(row.cached_tokens, cached, "{row:?}");
        let cost = price(&b.gw, model, &usage);
        assert!(cost > 0, "{row:?}");
        assert_eq!(row.cost_picousd, cost, "{endpoint}: {row:?}");
        total += cost;
    }
    // Reads are cheaper than writes: the logged costs differ as the usage says.
    assert!(logged[1].cost_picousd < logged[0].cost_picousd / 3);
    // The key was charged exactly what the rows cost.
    assert_eq!(spent, total);
}

/// The i-th request of one door (each distinct: no cache hit spends nothing).
type Ask = fn(usize) -> Value;

#[tokio::test]
async fn a_spent_key_is_refused_in_each_doors_own_shape() {
    let b = books(false).await;
    let asks: [(&str, Ask); 3] = [
        ("/v1/messages", |i| {
            json!({"model": "claude-3-5-haiku", "max_tokens": 50,
                   "messages": [{"role": "user", "content": format!("story {i}")}]})
        }),
        (
            "/v1/responses",
            |i| json!({"model": "gpt-4o", "input": format!("story {i}"), "max_output_tokens": 50}),
        ),
        ("/v1/embeddings", |i| {
            json!({"model": "text-embedding-3-small",
                   "input": format!("{i} {}", "many words to embed ".repeat(50))})
        }),
    ];
    for (path, ask) in asks {
        // Less than any one request costs: the first answer spends it all.
        let (_, secret) = key(&b.gw, 0.000_000_01).await;
        let mut refused = None;
        for i in 0..3 {
            let (s, _, v) = door(&b.gw, path, &secret, &format!("{path}-{i}"), &ask(i)).await;
            match s {
                StatusCode::OK => {}
                StatusCode::PAYMENT_REQUIRED if i > 0 => {
                    refused = Some(v);
                    break;
                }
                other => panic!("{path}: {other} {v}"),
            }
        }
        let v = refused.unwrap_or_else(|| panic!("{path}: a spent key was not refused"));
        if path == "/v1/messages" {
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], "billing_error", "{v}");
            assert!(v["error"]["code"].is_null(), "{v}");
        } else {
            assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
            assert_eq!(v["error"]["code"], "budget_exceeded", "{v}");
        }
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("has spent its budget"), "{message}");
    }
}

#[tokio::test]
async fn a_routing_policy_runs_on_messages_and_is_logged_with_them() {
    let b = books(true).await;
    let (_, secret) = key(&b.gw, 10.0).await;
    let body = json!({"model": "claude-3-5-haiku", "max_tokens": 20,
        "messages": [{"role": "user", "content": "Mail me at jane.doe@example.com please."}]});
    let (s, _, v) = door(&b.gw, "/v1/messages", &secret, "doors-policy", &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["type"], "message");
    let sent: Vec<String> = b
        ._sim
        .sim
        .recent_requests()
        .into_iter()
        .filter(|r| r.path.contains("/anthropic/v1/messages"))
        .map(|r| r.body)
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].contains("jane.doe@example.com"), "{}", sent[0]);
    let row = logged_rows(&b.gw, &b.url, &["doors-policy"])
        .await
        .pop()
        .unwrap();
    assert_eq!(row.endpoint, "/v1/messages");
    let run = row
        .policies
        .iter()
        .find(|p| p.policy.starts_with("pii-redact@"))
        .unwrap_or_else(|| panic!("pii-redact is not logged: {:?}", row.policies));
    assert_eq!(run.outcome, "applied", "{run:?}");
}
