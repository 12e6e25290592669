//! Limits and timeouts at the edge, against the real binary over real sockets: slowloris
//! clients (headers or body dribbled) and idle connections are cut after the configured time
//! while normal requests are served; requests beyond `server.max_in_flight` are shed at once
//! with 503 and `retry-after`, counting against no key; SIGTERM with a stuck stream exits
//! within `server.drain_ms` and leaves a row for every answer.
//!
//! Each test runs its own simulator (`switchyard sim`, slowed through its `[sim]` table) and
//! gateway (`switchyard serve`) from one config file with small timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::{Running, binary, random_hex, repo_root};
use switchyard_store::{RequestLog, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `header_read_ms` and `body_read_ms` of the timeout tests.
const SLOW_MS: u64 = 500;
/// `idle_ms` of the timeout tests: longer than the header time, so the two are told apart.
const IDLE_MS: u64 = 1500;
/// Slack for a loaded machine when asserting that something happened "by" a deadline.
const MARGIN: Duration = Duration::from_millis(2500);

/// The simulator's per-token delay for the `slow` model, and the `stuck` model's.
const SLOW_TPOT_MS: u64 = 400;
const STUCK_TPOT_MS: u64 = 120_000;

/// A gateway config: `server` lines, one fast model, one slow, one stuck, all on the simulator.
fn config(dir: &Path, server: &str) -> PathBuf {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}

[providers.sim]
kind = "openai"
base_url = "${{SWITCHYARD_SIM_URL:-http://127.0.0.1:9}}/openai/v1"
api_key = "sim-not-a-secret"

[models.fast]
provider = "sim"
catalog = "gpt-4o-mini"
upstream = "gpt-4o-mini"

[models.slow]
provider = "sim"
catalog = "gpt-4o"
upstream = "gpt-4o"

[models.stuck]
provider = "sim"
catalog = "gpt-4o"
upstream = "gpt-4o-stuck"

[store]
url = "${{SWITCHYARD_STORE_URL:-none}}"

[cache]
enabled = false

[sim.models."gpt-4o"]
ttft_ms = {{ mean = 20 }}
tpot_ms = {{ mean = {SLOW_TPOT_MS} }}
output_tokens = 6

[sim.models."gpt-4o-stuck"]
ttft_ms = {{ mean = 20 }}
tpot_ms = {{ mean = {STUCK_TPOT_MS} }}
output_tokens = 4
"#
    );
    let path = dir.join("edge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `switchyard sim` on an ephemeral port, killed on drop.
struct Sim {
    child: Child,
    url: String,
}

impl Sim {
    fn start(config: &Path) -> Sim {
        let mut child = Command::new(binary())
            .args(["sim", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("SWITCHYARD_SIM_URL")
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Keep reading to the end so the simulator never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v["message"] == "simulator listening"
                    && let (Some(addr), Some(tx)) = (v["addr"].as_str(), tx.take())
                {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the simulator logs its address");
        Sim {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A simulator and a gateway serving `server` settings; the directory holds the config.
struct Edge {
    gw: Running,
    _sim: Sim,
    _dir: tempfile::TempDir,
}

fn start(server: &str, env: &[(&str, &str)]) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), server);
    let sim = Sim::start(&cfg);
    let mut builder = Running::builder().env("SWITCHYARD_SIM_URL", &sim.url);
    for (k, v) in env {
        builder = builder.env(*k, *v);
    }
    let gw = builder.start(&["serve", "--config", cfg.to_str().unwrap()]);
    Edge {
        gw,
        _sim: sim,
        _dir: dir,
    }
}

fn timeouts() -> String {
    format!("header_read_ms = {SLOW_MS}\nbody_read_ms = {SLOW_MS}\nidle_ms = {IDLE_MS}")
}

fn addr(gw: &Running) -> String {
    gw.base_url.trim_start_matches("http://").to_owned()
}

fn chat(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": 6,
        "stream": stream,
    })
}

/// A normal request: a complete answer from the fast model.
async fn normal_request(http: &reqwest::Client, gw: &Running) -> u16 {
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(&chat("fast", false))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert!(
        status != 200 || body["choices"].is_array(),
        "status {status}: {body}"
    );
    status
}

/// Read until the server closes the connection (EOF or reset), at most `limit`. Returns what
/// was read and when the connection ended, or `None` if it was still open at `limit`.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Instant>) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return (got, None),
            Ok(Ok(0) | Err(_)) => return (got, Some(Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Connect, then send `head` one byte a second (never finishing it). Returns how long the
/// server kept the connection open, or `None` if it was still open after `limit`.
async fn dribble_head(addr: String, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        for b in b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".iter() {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let ended = loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rd.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0) | Err(_)) => break Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    };
    writer.abort();
    ended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dribbled_headers_are_cut_at_header_read_and_others_are_served() {
    let edge = start(&timeouts(), &[]);
    let http = reqwest::Client::new();
    let limit = Duration::from_millis(SLOW_MS) + MARGIN;
    let slow: Vec<_> = (0..4)
        .map(|_| tokio::spawn(dribble_head(addr(&edge.gw), limit + MARGIN)))
        .collect();
    // Served while the slow clients hold their connections.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(normal_request(&http, &edge.gw).await, 200);
    for s in slow {
        let held = s
            .await
            .unwrap()
            .expect("a slowloris connection was never closed");
        assert!(
            held >= Duration::from_millis(SLOW_MS - 50) && held <= limit,
            "closed after {held:?}; header_read_ms = {SLOW_MS}"
        );
    }
    assert_eq!(normal_request(&http, &edge.gw).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dribbled_body_gets_408_at_body_read_and_the_connection_closes() {
    let edge = start(&timeouts(), &[]);
    let http = reqwest::Client::new();
    let id = format!("slow-body-{}", random_hex(6));
    let started = Instant::now();
    let tcp = TcpStream::connect(addr(&edge.gw)).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: {id}\r\n\
         Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    );
    wr.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..4000 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Served while the body is being dribbled.
    assert_eq!(normal_request(&http, &edge.gw).await, 200);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let limit = Duration::from_millis(SLOW_MS) + MARGIN;
    let ended = loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rd.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0) | Err(_)) => break Some(started.elapsed()),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    };
    writer.abort();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let held = ended.unwrap_or_else(|| panic!("the connection stayed open; read: {answer}"));
    assert!(
        held >= Duration::from_millis(SLOW_MS - 50),
        "closed after {held:?}, before body_read_ms = {SLOW_MS}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(normal_request(&http, &edge.gw).await, 200);

    // The log row says what the client saw.
    let Edge { gw, _sim, _dir } = edge;
    let gw = tokio::task::spawn_blocking(move || {
        let mut gw = gw;
        assert!(gw.terminate().success());
        gw
    })
    .await
    .unwrap();
    let store = Store::connect(gw.store_url()).await.unwrap();
    let rows = RequestLog::requests_by_client_id(&store, &id)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, 408, "{:?}", rows[0]);
    assert_eq!(
        rows[0].error_code.as_deref(),
        Some("request_timeout"),
        "{:?}",
        rows[0]
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_keep_alive_connection_is_closed_after_idle_ms() {
    let edge = start(&timeouts(), &[]);
    let mut tcp = TcpStream::connect(addr(&edge.gw)).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // The answer is small: read until its JSON body has arrived.
    while !got.ends_with(b"}") {
        let n = tokio::time::timeout(MARGIN, tcp.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    let (rest, ended) = read_until_closed(&mut tcp, Duration::from_millis(IDLE_MS) + MARGIN).await;
    assert!(rest.is_empty(), "{rest:?}");
    let held = ended.expect("the idle connection was never closed") - answered;
    // Not at the header time: idle keep-alive has its own, longer allowance.
    assert!(
        held >= Duration::from_millis(IDLE_MS - 100),
        "closed after {held:?}; idle_ms = {IDLE_MS}, header_read_ms = {SLOW_MS}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_idle_connections_do_not_stop_a_request() {
    let edge = start(&timeouts(), &[]);
    let http = reqwest::Client::new();
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(addr(&edge.gw)).await.unwrap());
    }
    let t = Instant::now();
    assert_eq!(normal_request(&http, &edge.gw).await, 200);
    assert!(t.elapsed() < MARGIN, "took {:?}", t.elapsed());
    // Connections that never send a byte are closed at the header time.
    let limit = Duration::from_millis(SLOW_MS) + MARGIN;
    let closers: Vec<_> = idle
        .into_iter()
        .map(|mut tcp| tokio::spawn(async move { read_until_closed(&mut tcp, limit).await.1 }))
        .collect();
    let mut open = 0;
    for c in closers {
        if c.await.unwrap().is_none() {
            open += 1;
        }
    }
    assert_eq!(open, 0, "idle connections still open after {limit:?}");
    assert_eq!(normal_request(&http, &edge.gw).await, 200);
}

/// The value of a sample line `name value` (no labels) in a Prometheus exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beyond_max_in_flight_requests_are_shed_at_once_and_cost_the_key_nothing() {
    let admin = format!("sk-admin-{}", random_hex(12));
    let edge = start("max_in_flight = 2", &[("SWITCHYARD_ADMIN_KEY", &admin)]);
    let base = edge.gw.base_url.clone();
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/admin/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "edge", "rpm": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (key, key_id) = (
        created["key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    let call = |model: &str, stream: bool| {
        http.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat(model, stream))
    };

    // Two slow streams, held open: their headers and first chunk have arrived.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let resp = call("slow", true).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.bytes_stream();
        let first = body.next().await.unwrap().unwrap();
        assert!(first.starts_with(b"data: "), "{first:?}");
        streams.push(body);
    }

    // A third request (then more) is refused at once, in OpenAI's shape, with retry-after.
    for _ in 0..5 {
        let t = Instant::now();
        let resp = call("fast", false).send().await.unwrap();
        let took = t.elapsed();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "too_many_requests_in_flight",
            "{body}"
        );
        assert_eq!(body["error"]["type"], "overloaded", "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
        assert!(
            took < Duration::from_secs(2),
            "shed after {took:?}: queued?"
        );
    }

    // Health and metrics are not shed.
    for path in ["/health", "/health/ready"] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert_eq!(
        sample(&text, "switchyard_requests_shed_total"),
        Some(5.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE switchyard_requests_shed_total counter"),
        "{text}"
    );

    // When the streams end, their slots are free.
    for mut s in streams {
        let mut tail = Vec::new();
        while let Some(chunk) = s.next().await {
            tail.extend_from_slice(&chunk.unwrap());
        }
        assert!(
            String::from_utf8_lossy(&tail).contains("[DONE]"),
            "{}",
            String::from_utf8_lossy(&tail)
        );
    }
    // The shed requests did not count against the key: only the two streams did (the admin
    // API is not exempt from shedding, so it is asked now).
    let info: Value = http
        .get(format!("{base}/admin/keys/{key_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["usage"]["requests_last_minute"], 2, "{info}");

    // A request is served: the key's third of its four a minute (had the five shed requests
    // counted, it would get 429).
    let resp = call("fast", false).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["choices"].is_array(), "{body}");
}

/// Read an SSE body to its end (or the connection's): what arrived and whether it ended with
/// an error rather than `[DONE]`.
async fn read_stream(resp: reqwest::Response) -> (String, bool) {
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let mut broken = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    (text, broken)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_stuck_stream_exits_within_drain_and_logs_every_answer() {
    const DRAIN_MS: u64 = 1000;
    // A long header time, so that the half-sent readiness probe below is not cut.
    let server = format!("drain_ms = {DRAIN_MS}\nheader_read_ms = 20000");
    let edge = start(&server, &[]);
    let Edge { gw, _sim, _dir } = edge;
    let base = gw.base_url.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let run = random_hex(6);
    let id = |n: &str| format!("edge-{run}-{n}");
    let post = |n: &str, model: &str, stream: bool| {
        http.post(format!("{base}/v1/chat/completions"))
            .header("x-request-id", id(n))
            .json(&chat(model, stream))
    };

    // Answers completed before the signal.
    let mut answered = Vec::new();
    for n in ["done-1", "done-2"] {
        let resp = post(n, "fast", false).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.unwrap();
        answered.push((id(n), 200));
    }
    // A stream stuck after its first token.
    let stuck = post("stream", "stuck", true).send().await.unwrap();
    assert_eq!(stuck.status(), 200);
    answered.push((id("stream"), 200));
    let stuck_stream = tokio::spawn(read_stream(stuck));
    // A complete answer that will not come in time.
    let complete = tokio::spawn(post("complete", "stuck", false).send());
    // A readiness probe whose head is half sent.
    let mut probe = TcpStream::connect(addr(&gw)).await.unwrap();
    probe
        .write_all(b"GET /health/ready HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    gw.sigterm();
    // Stop accepting: new connections are refused once shutdown has begun.
    let refused = loop {
        match TcpStream::connect(addr(&gw)).await {
            Err(_) => break true,
            Ok(_) if signalled.elapsed() > MARGIN => break false,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert!(refused, "still accepting {MARGIN:?} after SIGTERM");
    // While draining, readiness says not ready.
    probe.write_all(b"Host: 127.0.0.1\r\n\r\n").await.unwrap();
    let (probe_answer, _) = read_until_closed(&mut probe, MARGIN).await;
    let probe_answer = String::from_utf8_lossy(&probe_answer).into_owned();
    assert!(probe_answer.starts_with("HTTP/1.1 503"), "{probe_answer}");
    assert!(probe_answer.contains("draining"), "{probe_answer}");

    // The complete request is ended with 503 server_shutdown once the drain time is over.
    let resp = complete.await.unwrap().unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "server_shutdown", "{body}");
    answered.push((id("complete"), 503));
    // The stuck stream ends: with an error event, or closed, and never with [DONE].
    let (text, broken) = stuck_stream.await.unwrap();
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(
        broken || text.contains("\"error\""),
        "the stream ended cleanly without an error event: {text}"
    );

    let gw = tokio::task::spawn_blocking(move || {
        let mut gw = gw;
        let status = gw.wait_exit();
        assert!(
            status.success(),
            "{status}; log:\n{}",
            gw.log_lines().join("\n")
        );
        gw
    })
    .await
    .unwrap();
    let took = signalled.elapsed();
    // The stuck stream held the drain for all of drain_ms; then abort, a short grace, exit.
    assert!(
        took >= Duration::from_millis(DRAIN_MS - 100),
        "exited after {took:?}, before drain_ms = {DRAIN_MS}"
    );
    assert!(
        took <= Duration::from_millis(DRAIN_MS) + Duration::from_secs(2) + MARGIN,
        "exited after {took:?}; drain_ms = {DRAIN_MS}"
    );
    assert!(
        gw.log_event("drain time over: ending the requests still in flight")
            .is_some(),
        "{}",
        gw.log_lines().join("\n")
    );

    // Every answer a client received is one row, with the status it saw.
    let store = Store::connect(gw.store_url()).await.unwrap();
    for (id, status) in &answered {
        let rows = RequestLog::requests_by_client_id(&store, id).await.unwrap();
        assert_eq!(rows.len(), 1, "rows for {id}: {rows:?}");
        assert_eq!(rows[0].status, *status, "{id}: {:?}", rows[0]);
    }
    assert_eq!(
        RequestLog::count(&store).await.unwrap(),
        i64::try_from(answered.len()).unwrap()
    );
    store.close().await;
}
