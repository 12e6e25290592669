//! OpenTelemetry traces end to end: the gateway exports over OTLP/HTTP to a receiver in the
//! test (axum on loopback, `POST /v1/traces`), which decodes the protobuf with the
//! `opentelemetry-proto` types. Checked: the span tree (request → routing, policy, cache and
//! one span per upstream attempt, retries included), the incoming `traceparent` as the request
//! span's parent, the `traceparent` the simulator received naming the attempt span, the GenAI
//! attributes, no prompt text anywhere by default and the text with `content = true`, the
//! sampling rules, and nothing at all when traces are off.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode as Code};
use prost::Message;
use serde_json::{Value, json};
use switchyard::Gateway;
use switchyard::config::{Config, TracesConfig};
use switchyard_sim::FaultMode;
use switchyard_types::ids::Secret;

use crate::common::{Setup, send, setup, setup_with};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
/// In every prompt: it must never be exported unless `content = true`.
const SECRET: &str = "PLUMTREE-4471";

/// An OTLP/HTTP receiver: every export request, decoded, with its content type.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<(HeaderMap, ExportTraceServiceRequest)>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<(HeaderMap, ExportTraceServiceRequest)>>> = Arc::default();
        let seen = got.clone();
        let handler = move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return (StatusCode::BAD_REQUEST, Vec::new());
                };
                seen.lock().unwrap().push((headers, request));
                let answer = ExportTraceServiceResponse::default().encode_to_vec();
                (StatusCode::OK, answer)
            }
        };
        let app = axum::Router::new().route("/v1/traces", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, got }
    }

    /// Every span received so far, with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let got = self.got.lock().unwrap();
        let mut out = Vec::new();
        for (headers, request) in got.iter() {
            assert_eq!(headers["content-type"], "application/x-protobuf");
            for rs in &request.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| attr(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push((service.clone(), s.clone()));
                    }
                }
            }
        }
        out
    }
}

fn traces(receiver: &Receiver, ratio: f64, content: bool) -> TracesConfig {
    TracesConfig {
        endpoint: format!("http://{}/v1/traces", receiver.addr),
        sample_ratio: ratio,
        service_name: "switchyard-test".to_owned(),
        content,
        max_content_bytes: 4096,
        // Short, as the brief's tests want; `flush` below makes the tests exact anyway.
        batch_delay: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        headers: Vec::new(),
    }
}

/// Copies the shipped cost-cap policy (every route, no content capability) into `into`.
fn install_cost_cap(into: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/cost-cap");
    let to = into.join("cost-cap");
    std::fs::create_dir_all(to.join("tests")).unwrap();
    let manifest = std::fs::read_to_string(from.join("policy.toml")).unwrap();
    assert!(
        from.join("cost_cap.wasm").is_file(),
        "build the policies first (bash policies/build.sh)"
    );
    let manifest = manifest.replace("timeout_ms = 5\n", "timeout_ms = 50\n");
    std::fs::write(to.join("policy.toml"), manifest).unwrap();
    std::fs::copy(from.join("cost_cap.wasm"), to.join("cost_cap.wasm")).unwrap();
    for f in std::fs::read_dir(from.join("tests")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join("tests").join(f.file_name())).unwrap();
    }
}

async fn traced(receiver: &Receiver, ratio: f64, content: bool, policies: Option<&Path>) -> Setup {
    let cfg = traces(receiver, ratio, content);
    setup_with(|c: &mut Config| {
        c.telemetry.traces = Some(cfg);
        if let Some(dir) = policies {
            c.policies.dir = Some(dir.to_path_buf());
            c.policies.cache_dir = Some(dir.join(".cache"));
            c.policies.watch = false;
        }
    })
    .await
}

async fn flush(gw: &Arc<Gateway>) {
    gw.sinks.traces.as_ref().unwrap().flush().await.unwrap();
}

fn post(path: &str, body: &Value, traceparent: Option<&str>) -> Request<Body> {
    let mut r = Request::post(path).header("content-type", "application/json");
    if let Some(t) = traceparent {
        r = r.header("traceparent", t);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(text).collect();
            items.join("\u{1f}")
        }
        Some(any_value::Value::KvlistValue(kv)) => kv
            .values
            .iter()
            .map(|kv| {
                format!(
                    "{}={}",
                    kv.key,
                    kv.value.as_ref().map(text).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\u{1f}"),
        Some(any_value::Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(text)
}

fn int(s: &Span, key: &str) -> i64 {
    attr(&s.attributes, key)
        .unwrap_or_else(|| panic!("{} has no {key}", s.name))
        .parse()
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every attribute and event text of every span (and resource), for the prompt search.
fn everything(receiver: &Receiver) -> String {
    let mut all = String::new();
    for (_, request) in receiver.got.lock().unwrap().iter() {
        for rs in &request.resource_spans {
            for kv in rs.resource.iter().flat_map(|r| &r.attributes) {
                all.push_str(&format!(
                    "{}={}\n",
                    kv.key,
                    kv.value.as_ref().map(text).unwrap_or_default()
                ));
            }
            for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                all.push_str(&s.name);
                let events = s.events.iter().flat_map(|e| {
                    std::iter::once(&e.name).chain(e.attributes.iter().map(|kv| &kv.key))
                });
                all.extend(events.map(|e| format!("{e}\n")));
                let kvs = s
                    .attributes
                    .iter()
                    .chain(s.events.iter().flat_map(|e| &e.attributes))
                    .chain(s.links.iter().flat_map(|l| &l.attributes));
                for kv in kvs {
                    all.push_str(&format!(
                        "{}={}\n",
                        kv.key,
                        kv.value.as_ref().map(text).unwrap_or_default()
                    ));
                }
                if let Some(st) = &s.status {
                    all.push_str(&st.message);
                }
            }
        }
    }
    all
}

fn children<'a>(spans: &'a [(String, Span)], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == parent.span_id)
        .collect()
}

fn request_span<'a>(spans: &'a [(String, Span)], name: &str) -> &'a Span {
    spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == name && s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| {
            let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
            panic!("no {name} span in {names:?}")
        })
}

#[tokio::test]
async fn a_request_is_one_span_tree_under_its_traceparent_with_genai_attributes_and_no_prompt() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    install_cost_cap(dir.path());
    let t = traced(&receiver, 1.0, false, Some(dir.path())).await;
    // The first upstream call fails: the attempt loop retries (or falls back), so there are two
    // attempt spans and the first is an error.
    t.sim
        .sim
        .set_fault("*", "500", FaultMode::Count(1))
        .unwrap();
    let body = json!({
        "model": "cheap",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": format!("The password is {SECRET}. Say hi.")}],
    });
    let incoming = format!("00-{TRACE}-{PARENT}-01");
    let request = post("/v1/chat/completions", &body, Some(&incoming));
    let (status, headers, answer) = send(&t.gw, request).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    flush(&t.gw).await;

    let spans = receiver.spans();
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "switchyard-test")
    );
    assert!(
        spans.iter().all(|(_, s)| hex(&s.trace_id) == TRACE),
        "one trace"
    );
    let root = request_span(&spans, "POST /v1/chat/completions");
    assert_eq!(
        hex(&root.parent_span_id),
        PARENT,
        "the traceparent's span is the parent"
    );
    let kids = children(&spans, root);
    assert_eq!(
        kids.len() + 1,
        spans.len(),
        "every other span is the request's child"
    );
    for k in &kids {
        assert!(
            k.start_time_unix_nano >= root.start_time_unix_nano,
            "{}",
            k.name
        );
        assert!(
            k.end_time_unix_nano <= root.end_time_unix_nano,
            "{}",
            k.name
        );
        assert!(k.start_time_unix_nano <= k.end_time_unix_nano, "{}", k.name);
    }
    let named = |prefix: &str| kids.iter().filter(|s| s.name.starts_with(prefix)).count();
    assert_eq!(named("switchyard.routing"), 1);
    assert_eq!(named("switchyard.policy cost-cap"), 1);
    assert_eq!(named("switchyard.cache"), 1);
    let attempts: Vec<&&Span> = kids
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    assert!(
        attempts.len() >= 2,
        "a failed attempt and its retry or fallback"
    );
    assert!(attempts.iter().all(|s| s.name.starts_with("chat ")));
    let mut by_start = attempts.clone();
    by_start.sort_by_key(|s| s.start_time_unix_nano);
    let first = by_start[0];
    assert_eq!(first.status.as_ref().unwrap().code, Code::Error as i32);
    assert_eq!(
        attr(&first.attributes, "error.type").as_deref(),
        Some("server_error")
    );
    assert_eq!(int(first, "http.response.status_code"), 500);
    let last = by_start[by_start.len() - 1];
    assert_eq!(
        attr(&last.attributes, "switchyard.attempt.outcome").as_deref(),
        Some("ok")
    );

    // The routing span: candidates, eligible count, scores, the reason.
    let routing = kids
        .iter()
        .find(|s| s.name == "switchyard.routing")
        .unwrap();
    assert_eq!(
        attr(&routing.attributes, "switchyard.route").as_deref(),
        Some("cheap")
    );
    assert_eq!(int(routing, "switchyard.routing.candidate_count"), 4);
    assert!(attr(&routing.attributes, "switchyard.routing.scores").is_some());
    assert!(
        !attr(&routing.attributes, "switchyard.chosen_reason")
            .unwrap()
            .is_empty()
    );

    // GenAI attributes on the request span.
    let a = |k: &str| attr(&root.attributes, k);
    assert_eq!(a("gen_ai.operation.name").as_deref(), Some("chat"));
    assert_eq!(a("gen_ai.request.model").as_deref(), Some("cheap"));
    assert_eq!(int(root, "gen_ai.request.max_tokens"), 32);
    let model = headers["x-switchyard-model"].to_str().unwrap();
    assert_eq!(a("gen_ai.response.model").as_deref(), Some(model));
    let provider = a("gen_ai.provider.name").unwrap();
    assert!(
        ["openai", "anthropic", "gcp.gemini", "ollama"].contains(&provider.as_str()),
        "{provider}"
    );
    assert_eq!(
        int(root, "gen_ai.usage.input_tokens"),
        answer["usage"]["prompt_tokens"].as_i64().unwrap()
    );
    assert_eq!(
        int(root, "gen_ai.usage.output_tokens"),
        answer["usage"]["completion_tokens"].as_i64().unwrap()
    );
    assert!(!a("gen_ai.response.finish_reasons").unwrap().is_empty());
    assert_eq!(a("switchyard.route").as_deref(), Some("cheap"));
    assert_eq!(int(root, "switchyard.attempts"), attempts.len() as i64);
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    assert_eq!(
        int(root, "switchyard.attempts").to_string(),
        header("x-switchyard-attempts")
    );
    assert_eq!(a("switchyard.cache").unwrap(), header("x-switchyard-cache"));
    let cost: f64 = a("switchyard.cost_usd").unwrap().parse().unwrap();
    let billed: f64 = header("x-switchyard-cost-usd").parse().unwrap();
    assert!((cost - billed).abs() < 1e-7, "{cost} vs {billed}");
    assert!(!a("switchyard.chosen_reason").unwrap().is_empty());
    assert_eq!(int(root, "http.response.status_code"), 200);

    // The upstream was told which attempt span its work belongs to.
    let sent: Vec<String> = t
        .sim
        .sim
        .recent_requests()
        .into_iter()
        .filter_map(|r| r.traceparent)
        .collect();
    let expected: Vec<String> = by_start
        .iter()
        .map(|s| format!("00-{TRACE}-{}-01", hex(&s.span_id)))
        .collect();
    assert_eq!(
        sent, expected,
        "each upstream request names its attempt span, in order"
    );

    // Nothing carries the prompt: not an attribute, an event, a status or a name.
    let all = everything(&receiver);
    assert!(
        all.contains("gen_ai.request.model"),
        "the search sees attributes"
    );
    assert!(
        !all.contains(SECRET),
        "the prompt leaked into the trace:\n{all}"
    );
    assert!(!all.contains("gen_ai.input.messages"));
}

#[tokio::test]
async fn with_content_the_text_is_exported_and_every_door_gets_its_span() {
    let receiver = Receiver::start().await;
    let t = traced(&receiver, 1.0, true, None).await;
    let prompt = json!([{"role": "user", "content": format!("Spell {SECRET}.")}]);
    let chat = json!({"model": "gpt-4o-mini", "stream": true, "messages": prompt});
    let (status, _, body) = send(&t.gw, post("/v1/chat/completions", &chat, None)).await;
    assert_eq!(status, StatusCode::OK);
    let streamed: String = String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(!streamed.is_empty());
    let messages = json!({"model": "claude-3-5-haiku", "max_tokens": 16, "messages": prompt});
    let route = json!({"route": "cheap", "prompt": "hello", "max_tokens": 8});
    let embed = json!({"model": "embed", "input": "hello"});
    let responses = json!({"model": "gpt-4o-mini", "input": "hello", "max_output_tokens": 16});
    for (path, body) in [
        ("/v1/messages", &messages),
        ("/ai/route", &route),
        ("/v1/embeddings", &embed),
        ("/v1/responses", &responses),
    ] {
        let (status, _, answer) = send(&t.gw, post(path, body, None)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    flush(&t.gw).await;
    let spans = receiver.spans();

    let chat = request_span(&spans, "POST /v1/chat/completions");
    let input = attr(&chat.attributes, "gen_ai.input.messages").unwrap();
    let input: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(input[0]["role"], "user");
    assert!(
        input[0]["parts"][0]["content"]
            .as_str()
            .unwrap()
            .contains(SECRET)
    );
    let output = attr(&chat.attributes, "gen_ai.output.messages").unwrap();
    let output: Value = serde_json::from_str(&output).unwrap();
    assert_eq!(output[0]["parts"][0]["content"], streamed.as_str());
    assert!(
        everything(&receiver).contains(SECRET),
        "the prompt search finds exported text"
    );
    assert_eq!(
        attr(&chat.attributes, "switchyard.stream").as_deref(),
        Some("true")
    );
    // A streamed answer's attempt lasts until the stream ended, inside the request span.
    let attempt = children(&spans, chat)
        .into_iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    assert!(attempt.end_time_unix_nano <= chat.end_time_unix_nano);
    assert!(attr(&attempt.attributes, "switchyard.ttft_ms").is_some());

    let messages = request_span(&spans, "POST /v1/messages");
    assert_eq!(
        attr(&messages.attributes, "gen_ai.provider.name").as_deref(),
        Some("anthropic")
    );
    let route = request_span(&spans, "POST /ai/route");
    assert_eq!(
        attr(&route.attributes, "switchyard.route").as_deref(),
        Some("cheap")
    );
    request_span(&spans, "POST /v1/responses");
    let embed = request_span(&spans, "POST /v1/embeddings");
    assert_eq!(
        attr(&embed.attributes, "gen_ai.operation.name").as_deref(),
        Some("embeddings")
    );
    let embed_attempt = children(&spans, embed)
        .into_iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    assert!(
        embed_attempt.name.starts_with("embeddings "),
        "{}",
        embed_attempt.name
    );
    // Five requests, five traces: without a traceparent each is a root.
    let roots: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(roots.len(), 5);
    assert!(roots.iter().all(|s| s.parent_span_id.is_empty()));
}

#[tokio::test]
async fn sampling_follows_the_parent_and_the_ratio() {
    let receiver = Receiver::start().await;
    let t = traced(&receiver, 0.0, false, None).await;
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hi"}]});
    // A root at ratio 0: not exported, and the upstream is told the trace is not sampled.
    let (status, _, _) = send(&t.gw, post("/v1/chat/completions", &body, None)).await;
    assert_eq!(status, StatusCode::OK);
    // An unsampled parent: not exported either, its trace id carried on.
    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    send(&t.gw, post("/v1/chat/completions", &body, Some(&unsampled))).await;
    flush(&t.gw).await;
    assert!(receiver.spans().is_empty());
    let sent: Vec<String> = t
        .sim
        .sim
        .recent_requests()
        .into_iter()
        .filter_map(|r| r.traceparent)
        .collect();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|s| s.ends_with("-00")), "{sent:?}");
    assert!(sent[1].starts_with(&format!("00-{TRACE}-")), "{sent:?}");
    // A sampled parent is followed whatever the ratio.
    let sampled = format!("00-{TRACE}-{PARENT}-01");
    send(&t.gw, post("/v1/chat/completions", &body, Some(&sampled))).await;
    flush(&t.gw).await;
    let spans = receiver.spans();
    let root = request_span(&spans, "POST /v1/chat/completions");
    assert_eq!(hex(&root.parent_span_id), PARENT);
}

#[tokio::test]
async fn traces_are_off_by_default() {
    let t = setup().await;
    assert!(t.gw.sinks.traces.is_none());
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hi"}]});
    let incoming = format!("00-{TRACE}-{PARENT}-01");
    let (status, _, _) = send(&t.gw, post("/v1/chat/completions", &body, Some(&incoming))).await;
    assert_eq!(status, StatusCode::OK);
    let recent = t.sim.sim.recent_requests();
    assert!(!recent.is_empty());
    assert!(recent.iter().all(|r| r.traceparent.is_none()));
}

#[tokio::test]
async fn shutdown_exports_what_is_still_queued() {
    let receiver = Receiver::start().await;
    let mut cfg = traces(&receiver, 1.0, false);
    // Far beyond the test: only the shutdown's flush can export it.
    cfg.batch_delay = Duration::from_secs(60);
    cfg.headers = vec![("authorization".into(), Secret::new("Bearer otlp-token"))];
    let t = setup_with(|c: &mut Config| c.telemetry.traces = Some(cfg)).await;
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 8,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, _) = send(&t.gw, post("/v1/chat/completions", &body, None)).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        receiver.spans().is_empty(),
        "nothing exported before the batch delay"
    );
    t.gw.shutdown().await;
    let spans = receiver.spans();
    request_span(&spans, "POST /v1/chat/completions");
    assert!(spans.len() >= 3, "{}", spans.len());
    let got = receiver.got.lock().unwrap();
    assert!(
        got.iter()
            .all(|(h, _)| h["authorization"] == "Bearer otlp-token")
    );
}

#[tokio::test]
async fn a_request_no_model_can_take_shows_why_in_its_routing_span() {
    let receiver = Receiver::start().await;
    let t = traced(&receiver, 1.0, false, None).await;
    let body = json!({"model": "cheap", "max_tokens": 50_000_000,
                      "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, _) = send(&t.gw, post("/v1/chat/completions", &body, None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    flush(&t.gw).await;
    let spans = receiver.spans();
    let root = request_span(&spans, "POST /v1/chat/completions");
    assert_eq!(int(root, "http.response.status_code"), 400);
    // A client's error is not the server's: no error status, but its type.
    assert_ne!(
        root.status.as_ref().map_or(0, |s| s.code),
        Code::Error as i32
    );
    assert!(attr(&root.attributes, "error.type").is_some());
    let kids = children(&spans, root);
    let routing = kids
        .iter()
        .find(|s| s.name == "switchyard.routing")
        .unwrap();
    assert_eq!(int(routing, "switchyard.routing.eligible_count"), 0);
    let filtered = attr(&routing.attributes, "switchyard.routing.filtered").unwrap();
    assert_eq!(filtered.split('\u{1f}').count(), 4, "{filtered}");
    assert!(kids.iter().all(|s| s.kind != SpanKind::Client as i32));
}
