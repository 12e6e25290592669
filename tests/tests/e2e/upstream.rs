//! A hostile or stuck upstream, and a client that stops reading, against the real binary over
//! HTTP (`switchyard demo` with overrides; its simulator plays the upstreams).
//!
//! - Each hostile fault (a tool call at index 4294967295, a body that never ends, an event
//!   over the bound, a redirect to another host) is one failed attempt, then a fallback that
//!   answers 200; the redirect is never followed. The test finishing promptly is the evidence
//!   that no bound was read past (an endless body is endless).
//! - A raw TCP client with a tiny receive buffer that never reads past the headers: the gateway
//!   closes its connection after `write_stall_ms`, drops the upstream call (the simulator sees
//!   it cancelled), leaves the model's health as it was, and says so in the request's row.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_e2e::{Running, row_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WRITE_STALL_MS: u64 = 1000;

/// One hostile provider per fault, each with a free model (so cost-first routing always tries
/// it first, whatever the history), falling back to gpt-4o. `roomy` sends the same oversized
/// event as `big-event` but allows it: the bound is the provider's to set.
fn overrides() -> String {
    let mut toml = format!(
        r#"
[server]
write_stall_ms = {WRITE_STALL_MS}

[providers.firehose]
kind = "openai"
base_url = "${{SWITCHYARD_SIM_URL}}/openai/v1"
api_key = "sim-not-a-secret"
headers = {{ "x-sim-tokens" = "3000", "x-sim-tpot-ms" = "5", "x-sim-ttft-ms" = "0", "x-sim-pad-bytes" = "4096" }}

[models.firehose]
provider = "firehose"
catalog = "gpt-4o-mini"
upstream = "firehose"

[providers.roomy]
kind = "openai"
base_url = "${{SWITCHYARD_SIM_URL}}/openai/v1"
api_key = "sim-not-a-secret"
headers = {{ "x-sim-fault" = "big-event:2048" }}
max_event_bytes = 4194304

[models.roomy]
provider = "roomy"
catalog = "llama3.2"
upstream = "roomy"

[routes.r-roomy]
models = ["roomy", "gpt-4o"]
weights = {{ cost = 1.0, latency = 0.0, reliability = 0.0 }}
"#
    );
    for (name, fault, extra) in FAULTS {
        toml.push_str(&format!(
            r#"
[providers.hostile-{name}]
kind = "openai"
base_url = "${{SWITCHYARD_SIM_URL}}/openai/v1"
api_key = "sim-not-a-secret"
headers = {{ "x-sim-fault" = "{fault}" }}
{extra}

[models.h-{name}]
provider = "hostile-{name}"
catalog = "llama3.2"
upstream = "hostile-{name}"

[routes.r-{name}]
models = ["h-{name}", "gpt-4o"]
weights = {{ cost = 1.0, latency = 0.0, reliability = 0.0 }}
"#
        ));
    }
    toml
}

/// (name, simulator fault, provider settings). `big-event` sends 2 MiB: over the default
/// 1 MiB event bound, and over this provider's 1 MiB body bound for a complete answer.
const FAULTS: [(&str, &str, &str); 4] = [
    ("tool-index", "tool-index", ""),
    ("endless", "endless", ""),
    (
        "big-event",
        "big-event:2048",
        "max_response_bytes = 1048576",
    ),
    ("redirect", "redirect", ""),
];

/// A gateway whose policies folder is empty: routing is the test's, not a policy's.
fn start() -> (Running, tempfile::TempDir) {
    let policies = tempfile::tempdir().unwrap();
    let gw = Running::builder()
        .env("SWITCHYARD_POLICIES", policies.path().display().to_string())
        .demo_with(&overrides());
    (gw, policies)
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream,
        "messages": [{"role": "user", "content": "Say something."}]})
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hostile_upstream_fault_is_one_failed_attempt_then_a_fallback() {
    let (gw, _policies) = start();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let url = format!("{}/v1/chat/completions", gw.base_url);
    let mut cases = Vec::new();
    for (name, _, _) in FAULTS {
        // A complete answer carries no tool-call index: only its stream is hostile.
        if name != "tool-index" {
            cases.push((name, false));
        }
        cases.push((name, true));
    }
    for (name, stream) in &cases {
        let resp = http
            .post(&url)
            .json(&chat(&format!("r-{name}"), *stream))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let header = |h: &str| {
            resp.headers()
                .get(h)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (model, attempts) = (
            header("x-switchyard-model"),
            header("x-switchyard-attempts"),
        );
        let body = resp.text().await.unwrap();
        let case = format!("{name} (stream: {stream}): {status} {body:.300}");
        assert_eq!(status, 200, "{case}");
        assert_eq!(model.as_deref(), Some("gpt-4o"), "{case}");
        assert_eq!(attempts.as_deref(), Some("2"), "{case}");
        if *stream {
            assert!(body.trim_end().ends_with("data: [DONE]"), "{case}");
        } else {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert!(v["choices"][0]["message"]["content"].is_string(), "{case}");
        }
    }

    // Each hostile model failed once per case, holds nothing in flight, and its error says why.
    let perf = get_json(&http, &format!("{}/ai/performance", gw.base_url)).await;
    for (name, _, _) in FAULTS {
        let m = &perf["models"][format!("h-{name}")];
        let expected = cases.iter().filter(|(n, _)| *n == name).count() as u64;
        assert_eq!(m["failures"].as_u64(), Some(expected), "h-{name}: {m}");
        assert_eq!(m["in_flight"].as_u64(), Some(0), "h-{name}: {m}");
    }
    let messages: Vec<String> = gw
        .log_events()
        .iter()
        .filter(|e| e["message"] == "attempt failed")
        .filter_map(|e| e["upstream_message"].as_str().map(str::to_owned))
        .collect();
    for needle in [
        "tool call index 4294967295",
        "the answer's body exceeds 33554432 bytes",
        "an SSE event exceeds 1048576 bytes",
        "the answer's body exceeds 1048576 bytes",
        "redirects are not followed",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(needle)),
            "no attempt failed with '{needle}': {messages:?}"
        );
    }

    // The simulator saw the endless bodies' connections closed, and no one follow a redirect.
    let sim = get_json(&http, &format!("{}/_sim/stats", gw.sim_url())).await;
    assert_eq!(sim["redirects_followed"], 0, "{sim}");
    let endless = &sim["models"]["hostile-endless"];
    assert_eq!(endless["streams_cancelled"], 2, "{endless}");
    assert_eq!(endless["in_flight"], 0, "{endless}");

    // The same 2 MiB event from a provider that allows 4 MiB: answered, first try.
    let resp = http
        .post(&url)
        .json(&chat("r-roomy", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-switchyard-model"], "roomy");
    assert_eq!(resp.headers()["x-switchyard-attempts"], "1");
    let body = resp.text().await.unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"));
}

/// The headers of an HTTP answer read a little at a time, and what came after them.
async fn read_head(tcp: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the headers");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(end + 4);
            return (String::from_utf8(got).unwrap(), rest);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_and_its_model_is_unharmed() {
    let (gw, _policies) = start();
    let http = reqwest::Client::new();
    let perf_url = format!("{}/ai/performance", gw.base_url);
    let before = get_json(&http, &perf_url).await["models"]["firehose"].clone();

    let addr: std::net::SocketAddr = gw.base_url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    let body = chat("firehose", true).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let (head, _) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let request_id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("the answer names its request")
        .to_owned();
    let stalled_at = Instant::now();

    // From here the client reads nothing. The upstream would stream for 15 s or more: the
    // gateway drops it once the client has not read for the write stall.
    let stats_url = format!("{}/_sim/stats", gw.sim_url());
    let margin = Duration::from_secs(15);
    loop {
        let sim = get_json(&http, &stats_url).await;
        if sim["models"]["firehose"]["streams_cancelled"] == 1 {
            assert_eq!(sim["models"]["firehose"]["in_flight"], 0);
            break;
        }
        assert!(
            stalled_at.elapsed() < Duration::from_millis(WRITE_STALL_MS) + margin,
            "the upstream is still open: {sim}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The model is as it was: no failure, nothing in flight, the breaker where it was.
    let after = get_json(&http, &perf_url).await["models"]["firehose"].clone();
    assert_eq!(after["failures"], 0, "{after}");
    assert_eq!(after["in_flight"], 0, "{after}");
    assert_eq!(after["breaker"], before["breaker"], "{after}");
    assert_eq!(after["reliability"], before["reliability"], "{after}");

    // The client's connection was closed: reading now drains what the buffers held, then the
    // end — never a complete answer.
    let mut rest = Vec::new();
    let drained = tokio::time::timeout(margin, async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the gateway left the connection open");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        !text.contains("[DONE]"),
        "a stalled stream must not end cleanly"
    );

    // The request's row says what happened.
    let store = switchyard_store::Store::connect(gw.store_url())
        .await
        .unwrap();
    let deadline = Instant::now() + margin;
    let row = loop {
        if let Some(row) = row_for(&store, &request_id).await {
            break row;
        }
        assert!(Instant::now() < deadline, "no row for {request_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(row.error_code.as_deref(), Some("client_stalled"), "{row:?}");
    assert_eq!(row.model.as_deref(), Some("firehose"));
    assert!(
        gw.log_event("the client stopped reading its stream: closed, upstream call dropped")
            .is_some()
    );
}
