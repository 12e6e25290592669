//! Fault-injection tests: every HTTP fault class on every format (status, body shape, headers),
//! the stream faults (reset, cut:N, malformed, stream-error), hang and cancellation counting,
//! and the loopback server (`spawn`) noticing clients that go away.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use super::tests::{anthropic, events, gemini, ollama, openai, send, sse_data, user};
use super::{ModelStats, Sim, SimConfig, WireFormat};

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "messages": user("hello"), "stream": stream})
}

fn claude(stream: bool) -> Value {
    json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 100, "messages": user("hello"),
        "stream": stream})
}

fn contents() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]})
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[tokio::test]
async fn http_faults_have_each_providers_shape() {
    let sim = Sim::new(SimConfig::default());
    let four: BTreeSet<&str> = ["message", "type", "param", "code"].into();
    for (spec, oa, an) in [
        ("400", 400, 400),
        ("401", 401, 401),
        ("403", 403, 403),
        ("404", 404, 404),
        ("500", 500, 500),
        ("502", 502, 502),
        ("503", 503, 503),
        ("504", 504, 504),
        ("529", 503, 529),
        ("429", 429, 429),
        ("quota", 429, 429),
        ("context", 400, 400),
    ] {
        let h = [("x-sim-fault", spec)];
        let got = openai(&sim, chat(false), &h).await;
        assert_eq!(got.status.as_u16(), oa, "openai {spec}");
        assert_eq!(keys(&got.json()["error"]), four, "openai {spec}");
        assert!(got.header("x-request-id").starts_with("req_"));

        let got = ollama(&sim, chat(false), &h).await;
        assert_eq!(got.status.as_u16(), oa, "ollama {spec}");
        let err = got.json()["error"].clone();
        assert_eq!(keys(&err), four, "ollama {spec}");
        let ty = match oa {
            400 => "invalid_request_error",
            404 => "not_found_error",
            _ => "api_error",
        };
        assert_eq!(err["type"], ty, "ollama {spec}");

        let got = anthropic(&sim, claude(false), &h).await;
        assert_eq!(got.status.as_u16(), an, "anthropic {spec}");
        let v = got.json();
        assert_eq!(v["type"], "error");
        assert!(v["error"]["type"].is_string() && v["error"]["message"].is_string());
        assert_eq!(v["request_id"], got.header("request-id"));

        let got = gemini(&sim, "gemini-2.0-flash", false, contents(), &h).await;
        assert_eq!(got.status.as_u16(), oa, "gemini {spec}");
        let v = got.json();
        assert_eq!(v["error"]["code"], oa);
        assert!(v["error"]["status"].is_string() && v["error"]["details"].is_array());
    }
    assert_eq!(sim.stats().model("gpt-4o-mini").faults_injected, 24);
}

#[tokio::test]
async fn fault_details_match_real_wording() {
    let sim = Sim::new(SimConfig::default());
    let f = |spec| [("x-sim-fault", spec)];
    let got = openai(&sim, chat(false), &f("429:7")).await;
    assert_eq!(
        (got.header("retry-after"), got.header("retry-after-ms")),
        ("7", "7000")
    );
    assert_eq!(got.json()["error"]["code"], "rate_limit_exceeded");
    let got = anthropic(&sim, claude(false), &f("429:7")).await;
    assert_eq!(got.header("retry-after"), "7");
    assert_eq!(got.json()["error"]["type"], "rate_limit_error");
    let v = gemini(&sim, "gemini-2.0-flash", false, contents(), &f("429:7"))
        .await
        .json();
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(
        v["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["retryDelay"] == "7s")
    );

    assert_eq!(
        anthropic(&sim, claude(false), &f("529")).await.json()["error"]["type"],
        "overloaded_error"
    );
    assert_eq!(
        openai(&sim, chat(false), &f("529")).await.json()["error"]["code"],
        "server_is_overloaded"
    );
    assert_eq!(
        gemini(&sim, "g", false, contents(), &f("529")).await.json()["error"]["status"],
        "UNAVAILABLE"
    );

    let v = openai(&sim, chat(false), &f("quota")).await.json();
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["type"].as_str()),
        (Some("insufficient_quota"), Some("insufficient_quota"))
    );
    let v = anthropic(&sim, claude(false), &f("quota")).await.json();
    assert_eq!(
        v["error"]["details"]["error_code"],
        "enforced_spend_limit_reached"
    );
    let v = gemini(&sim, "gemini-2.0-flash", false, contents(), &f("quota"))
        .await
        .json();
    let quota_id = v["error"]["details"][0]["violations"][0]["quotaId"]
        .as_str()
        .unwrap();
    assert!(quota_id.contains("PerDay"));

    let v = openai(&sim, chat(false), &f("context")).await.json();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("This model's maximum context length is 128000 tokens.")
    );
    let v = anthropic(&sim, claude(false), &f("context")).await.json();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("prompt is too long: ") && msg.ends_with(" tokens > 200000 maximum"),
        "{msg}"
    );
    let v = gemini(&sim, "gemini-2.0-flash", false, contents(), &f("context"))
        .await
        .json();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("The input token count (")
    );

    let got = openai(&sim, chat(false), &f("bogus")).await;
    assert_eq!(
        got.status,
        StatusCode::BAD_REQUEST,
        "an unknown x-sim-fault is refused loudly"
    );
}

#[tokio::test]
async fn reset_and_cut_drop_the_connection() {
    let sim = Sim::new(SimConfig::default());
    for spec in ["reset", "cut:2"] {
        let got = openai(&sim, chat(false), &[("x-sim-fault", spec)]).await;
        assert_eq!(got.status, StatusCode::OK);
        assert!(got.body.is_err(), "{spec}: body must abort");
    }
    let got = openai(&sim, chat(true), &[("x-sim-fault", "reset")]).await;
    assert!(got.body.is_err() && got.partial.is_empty());

    let got = openai(&sim, chat(true), &[("x-sim-fault", "cut:3")]).await;
    assert!(got.body.is_err());
    let text = got.text();
    assert!(!text.contains("[DONE]") && !text.contains("finish_reason\":\"stop"));
    let data = sse_data(&text, "\n\n");
    let words = data
        .iter()
        .filter(|d| d.contains("\"content\":\"") && !d.contains("\"role\""))
        .count();
    assert_eq!(words, 3);

    let got = anthropic(&sim, claude(true), &[("x-sim-fault", "cut:2")]).await;
    assert!(got.body.is_err());
    let names: Vec<String> = events(&got.text()).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta"
        ]
    );

    let got = gemini(
        &sim,
        "gemini-2.0-flash",
        true,
        contents(),
        &[("x-sim-fault", "cut:2")],
    )
    .await;
    assert!(got.body.is_err());
    let frames = sse_data(&got.text(), "\r\n\r\n");
    assert_eq!(frames.len(), 2);
    assert!(!got.text().contains("finishReason"));
    assert_eq!(sim.stats().model("gpt-4o-mini").streams_completed, 0);
    assert_eq!(
        sim.stats().model("gpt-4o-mini").streams_cancelled,
        0,
        "sim-side aborts are not client cancellations"
    );
}

#[tokio::test]
async fn malformed_and_stream_error() {
    let sim = Sim::new(SimConfig::default());
    let got = openai(&sim, chat(false), &[("x-sim-fault", "malformed")]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(got.body.as_ref().unwrap()).is_err());
    let text = openai(&sim, chat(true), &[("x-sim-fault", "malformed")])
        .await
        .text();
    let data = sse_data(&text, "\n\n");
    assert!(serde_json::from_str::<Value>(&data[0]).is_err());
    assert!(serde_json::from_str::<Value>(&data[1]).is_ok());

    let got = openai(&sim, chat(true), &[("x-sim-fault", "stream-error")]).await;
    let data = sse_data(&got.text(), "\n\n");
    assert_eq!(data.len(), 4, "role chunk, 2 content chunks, error");
    let err: Value = serde_json::from_str(&data[3]).unwrap();
    assert_eq!(err["error"]["type"], "server_error");
    assert!(got.body.is_ok() && !got.text().contains("[DONE]"));

    let ev = events(
        &anthropic(&sim, claude(true), &[("x-sim-fault", "stream-error")])
            .await
            .text(),
    );
    let (name, data) = ev.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(
        serde_json::from_str::<Value>(data).unwrap()["error"]["type"],
        "overloaded_error"
    );
    assert!(!ev.iter().any(|(n, _)| n == "message_stop"));

    let text = gemini(
        &sim,
        "gemini-2.0-flash",
        true,
        contents(),
        &[("x-sim-fault", "stream-error")],
    )
    .await
    .text();
    let frames = sse_data(&text, "\r\n\r\n");
    assert_eq!(
        serde_json::from_str::<Value>(frames.last().unwrap()).unwrap()["error"]["code"],
        503
    );
    let text = ollama(
        &sim,
        json!({"model": "llama3.2", "messages": user("x"), "stream": true}),
        &[("x-sim-fault", "stream-error")],
    )
    .await
    .text();
    assert!(text.contains("\"error\":{") && !text.contains("[DONE]"));

    let got = anthropic(&sim, claude(false), &[("x-sim-fault", "stream-error")]).await;
    assert_eq!(
        got.status.as_u16(),
        529,
        "non-streaming stream-error is the overload it would carry"
    );
}

fn stream_request(extra: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::post("/openai/v1/chat/completions").header("authorization", "Bearer k");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.body(Body::from(chat(true).to_string())).unwrap()
}

#[tokio::test(start_paused = true)]
async fn dropped_stream_and_abandoned_hang_count_as_cancelled() {
    let sim = Sim::new(SimConfig::default());
    let resp = sim
        .router()
        .oneshot(stream_request(&[("x-sim-tpot-ms", "1000")]))
        .await
        .unwrap();
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(sim.stats().model("gpt-4o-mini").in_flight, 1);
    drop(body);
    let s = sim.stats().model("gpt-4o-mini");
    assert_eq!(
        (s.streams_cancelled, s.streams_completed, s.in_flight),
        (1, 0, 0)
    );

    let hang = sim
        .router()
        .oneshot(stream_request(&[("x-sim-fault", "hang")]));
    assert!(
        tokio::time::timeout(Duration::from_secs(600), hang)
            .await
            .is_err()
    );
    let s = sim.stats().model("gpt-4o-mini");
    assert_eq!(
        (s.streams_cancelled, s.faults_injected, s.in_flight),
        (2, 1, 0)
    );

    // A non-streaming request abandoned during its latency counts too.
    let mut req = stream_request(&[("x-sim-ttft-ms", "5000")]);
    *req.body_mut() = Body::from(chat(false).to_string());
    let slow = sim.router().oneshot(req);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), slow)
            .await
            .is_err()
    );
    assert_eq!(sim.stats().model("gpt-4o-mini").streams_cancelled, 3);
}

async fn eventually(sim: &Arc<Sim>, what: &str, ok: impl Fn(ModelStats) -> bool) {
    for _ in 0..500 {
        if ok(sim.stats().model("gpt-4o-mini")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}: {:?}", sim.stats());
}

async fn raw_post(addr: std::net::SocketAddr, headers: &str) -> tokio::net::TcpStream {
    let body = chat(true).to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /openai/v1/chat/completions HTTP/1.1\r\nhost: sim\r\nauthorization: Bearer k\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    tcp
}

#[tokio::test]
async fn loopback_server_notices_clients_that_go_away() {
    let handle = super::spawn(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        handle.base_url(WireFormat::OpenAi),
        format!("http://{}/openai/v1", handle.addr)
    );
    assert!(
        handle
            .base_url(WireFormat::Gemini)
            .ends_with("/gemini/v1beta")
    );

    let mut tcp = raw_post(handle.addr, "x-sim-tokens: 1000\r\nx-sim-tpot-ms: 20\r\n").await;
    let mut buf = vec![0u8; 4096];
    let mut seen = String::new();
    while !seen.contains("data: ") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200 OK"));
    drop(tcp);
    eventually(&handle.sim, "stream cancelled", |s| {
        s.streams_cancelled == 1 && s.in_flight == 0
    })
    .await;

    let tcp = raw_post(handle.addr, "x-sim-fault: hang\r\n").await;
    eventually(&handle.sim, "hang in flight", |s| s.in_flight == 1).await;
    drop(tcp);
    eventually(&handle.sim, "hang cancelled", |s| {
        s.streams_cancelled == 2 && s.in_flight == 0
    })
    .await;

    let _hung = raw_post(handle.addr, "x-sim-fault: hang\r\n").await;
    eventually(&handle.sim, "second hang in flight", |s| s.in_flight == 1).await;
    let sim = Arc::clone(&handle.sim);
    tokio::time::timeout(Duration::from_secs(3), handle.shutdown())
        .await
        .expect("shutdown ends hangs promptly");
    assert_eq!(sim.stats().model("gpt-4o-mini").in_flight, 0);
}

#[tokio::test]
async fn control_api_scripts_faults_and_reports_stats() {
    let sim = Sim::new(SimConfig::default());
    let got = send(
        &sim,
        "POST",
        "/_sim/faults",
        &[],
        json!({"model": "gpt-4o-mini", "fault": "500", "count": 2}),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let ask = json!({"model": "gpt-4o-mini", "messages": user("hi")});
    assert_eq!(
        openai(&sim, ask.clone(), &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        openai(&sim, ask.clone(), &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(openai(&sim, ask.clone(), &[]).await.status, StatusCode::OK);
    let bad = send(
        &sim,
        "POST",
        "/_sim/faults",
        &[],
        json!({"model": "*", "fault": "teapot", "rate": 1.0}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    send(
        &sim,
        "POST",
        "/_sim/faults",
        &[],
        json!({"model": "*", "fault": "429", "rate": 1.0}),
    )
    .await;
    assert_eq!(
        openai(&sim, ask.clone(), &[]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&sim, "DELETE", "/_sim/faults", &[], Value::Null)
            .await
            .json()["cleared"],
        1
    );
    assert_eq!(openai(&sim, ask, &[]).await.status, StatusCode::OK);
    let stats = send(&sim, "GET", "/_sim/stats", &[], Value::Null)
        .await
        .json();
    assert_eq!(stats["models"]["gpt-4o-mini"]["requests"], 5);
    assert_eq!(stats["models"]["gpt-4o-mini"]["faults_injected"], 3);
    assert_eq!(stats["models"]["gpt-4o-mini"]["in_flight"], 0);

    let list = send(
        &sim,
        "GET",
        "/openai/v1/models",
        &[("authorization", "Bearer k")],
        Value::Null,
    )
    .await
    .json();
    assert_eq!(list["object"], "list");
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gpt-4o-mini")
    );
    let list = send(&sim, "GET", "/ollama/v1/models", &[], Value::Null)
        .await
        .json();
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "llama3.2")
    );
}
