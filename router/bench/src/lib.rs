//! The whole request path in one process, for benchmarks and profiles: `switchyard::app` driven
//! with `oneshot` (no ingress socket), in front of a stub upstream that answers every call with
//! the shared harness's fixed `chat.completion` (../shared/bench/nginx-mock.conf), and a
//! criterion measurement of process CPU time, so that work the request leaves to other threads
//! (the request log's writer, the policy engine) is counted too.
//!
//! The stub listens on loopback: reqwest 0.13 offers no seam for an in-memory connection (its
//! connector layer must return reqwest's own private connection type). Its cost, one loopback
//! round trip and a fixed answer, is measured on its own (`Stub::direct`) so it can be taken
//! off every figure.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use switchyard::{Gateway, app, config};
use tower::ServiceExt;

/// The body every request sends: ../shared/bench/body.json (temperature 0, so cacheable).
pub const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":32,"temperature":0}"#;

/// The stub's answer: the nginx mock's.
const ANSWER: &str = r#"{"id":"chatcmpl-mock0001","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","system_fingerprint":"fp_mock","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the mock upstream."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"#;

const ADMIN_KEY: &str = "bench-admin-key-0123456789";

/// A stub upstream on an ephemeral loopback port.
pub struct Stub {
    pub addr: SocketAddr,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Stub {
    pub async fn start() -> std::io::Result<Stub> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                        // Read the request whole, as a real upstream does.
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(ANSWER.as_bytes())))
                                .unwrap_or_default(),
                        )
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor)
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        Ok(Stub { addr, client })
    }

    /// One call straight to the stub, with the gateway's body: what the stub and loopback cost
    /// on their own.
    pub async fn direct(&self) -> Result<(), String> {
        let req = Request::post(format!("http://{}/v1/chat/completions", self.addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        if resp.status() != StatusCode::OK {
            return Err(format!("stub answered {}", resp.status()));
        }
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct TokioExecutor;

impl<F> hyper::rt::Executor<F> for TokioExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// What is switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// One model, no policies, no store, no keys, no cache.
    Bare,
    /// The four shipped policies.
    Policies,
    /// The four policies, the SQLite request log, and a virtual key with a budget.
    Everything,
    /// Everything, and the cache on: every measured request is a hit.
    CacheHit,
}

impl Setup {
    pub const ALL: [Setup; 4] = [
        Setup::Bare,
        Setup::Policies,
        Setup::Everything,
        Setup::CacheHit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Setup::Bare => "bare",
            Setup::Policies => "policies",
            Setup::Everything => "everything",
            Setup::CacheHit => "cache-hit",
        }
    }

    fn config(self, upstream: SocketAddr, dir: &std::path::Path) -> String {
        // Another policy folder to compare builds of the same policies (wasip2 against
        // unknown-unknown, say): SWITCHYARD_BENCH_POLICIES.
        let policies = std::env::var("SWITCHYARD_BENCH_POLICIES")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies").to_owned());
        let mut text = format!(
            r#"
[server]
listen = "127.0.0.1:0"

[providers.mock]
kind = "openai"
base_url = "http://{upstream}/v1"
api_key = "bench"

[models."gpt-4o-mini"]
provider = "mock"

[models."gpt-4o"]
provider = "mock"

[routes.auto]
models = ["gpt-4o-mini", "gpt-4o"]
token_budget = 8000
cost_budget_usd = 0.002
"#
        );
        let (policies_on, store_on, cache_on) = match self {
            Setup::Bare => (false, false, false),
            Setup::Policies => (true, false, false),
            Setup::Everything => (true, true, false),
            Setup::CacheHit => (true, true, true),
        };
        if policies_on {
            text.push_str(&format!("\n[policies]\ndir = \"{policies}\"\n"));
        }
        if store_on {
            text.push_str(&format!(
                "\n[store]\nurl = \"sqlite://{}/requests.db\"\n\n[auth]\nadmin_key = \"{ADMIN_KEY}\"\nmode = \"keys\"\n",
                dir.display()
            ));
        } else {
            text.push_str("\n[store]\nurl = \"none\"\n");
        }
        text.push_str(&format!("\n[cache]\nenabled = {cache_on}\n"));
        text
    }
}

/// A gateway with one setup, ready to take requests.
pub struct Bench {
    pub setup: Setup,
    pub gw: Arc<Gateway>,
    router: Router,
    key: Option<String>,
    _dir: tempfile::TempDir,
}

impl Bench {
    pub async fn new(setup: Setup, upstream: SocketAddr) -> Result<Bench, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let text = setup.config(upstream, dir.path());
        let cfg = config::load_str(&text, &config::Vars::default()).map_err(|e| e.to_string())?;
        let gw = Gateway::connect(cfg).await?;
        let policies = gw
            .policies
            .as_ref()
            .map_or(0, |p| p.current().policies.len());
        if setup != Setup::Bare && policies < 4 {
            return Err(format!(
                "{}: the four policies did not load: run `bash policies/build.sh`",
                setup.name()
            ));
        }
        let router = app(gw.clone());
        let mut bench = Bench {
            setup,
            gw,
            router,
            key: None,
            _dir: dir,
        };
        if matches!(setup, Setup::Everything | Setup::CacheHit) {
            bench.key = Some(bench.new_key().await?);
        }
        // The first request fills the cache (and warms every path).
        bench.chat(false).await?;
        Ok(bench)
    }

    async fn new_key(&self) -> Result<String, String> {
        let req = Request::post("/admin/keys")
            .header("authorization", format!("Bearer {ADMIN_KEY}"))
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"name":"bench","budget_usd":100000,"budget_period":"month"}"#,
            ))
            .map_err(|e| e.to_string())?;
        let (status, _, body) = self.send(req).await?;
        if status != StatusCode::CREATED {
            return Err(format!("creating the key: {status} {body}"));
        }
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        v["key"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no key in {body}"))
    }

    /// Status, the `x-switchyard-cache` header, and the body of one request.
    async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<(StatusCode, Option<String>, String), String> {
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let cache = resp
            .headers()
            .get("x-switchyard-cache")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, cache, String::from_utf8_lossy(&body).into_owned()))
    }

    /// One chat completion through the whole path; an error unless it is a 200 (and, with
    /// the cache on, a hit).
    pub async fn one(&self) -> Result<(), String> {
        self.chat(self.setup == Setup::CacheHit).await
    }

    async fn chat(&self, hit: bool) -> Result<(), String> {
        let mut req =
            Request::post("/v1/chat/completions").header("content-type", "application/json");
        if let Some(key) = &self.key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let req = req.body(Body::from(BODY)).map_err(|e| e.to_string())?;
        let (status, cache, body) = self.send(req).await?;
        if status != StatusCode::OK {
            return Err(format!("{status}: {body}"));
        }
        if hit && cache.as_deref() != Some("hit") {
            return Err("a cache miss in the cache-hit setup".to_owned());
        }
        Ok(())
    }

    /// The request log writer's counters (written, dropped, …); `None` without a store.
    pub fn log_stats(&self) -> Option<switchyard_store::WriterStats> {
        self.gw.sinks.writer.as_ref().map(|w| w.stats())
    }
}

/// The process's CPU time so far: every thread (the runtime's workers, the request log's
/// writer, the policy engine), not only the one that waits for the answer.
pub fn process_cpu() -> Duration {
    cpu_time::ProcessTime::try_now()
        .map(|t| t.as_duration())
        .unwrap_or_default()
}
