//! What goes on the wire: `[server.compression]` (gzip or brotli of large complete JSON answers,
//! never of streams) and `[providers.X] http2` (HTTP/2 to upstreams, h2c with prior knowledge
//! against the simulator).

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::json;
use switchyard::config::{self, Config, Vars};
use switchyard::server;
use switchyard_providers::Http2;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower::ServiceExt;

use crate::common::{self, post_request, send, setup_with};

fn compressing(c: &mut Config) {
    c.server.compression.enabled = true;
}

fn get(path: &str, accept_encoding: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path);
    if let Some(a) = accept_encoding {
        req = req.header("accept-encoding", a);
    }
    req.body(Body::empty()).unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli_decompressor::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn encoding(headers: &HeaderMap) -> Option<&str> {
    headers.get("content-encoding").map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_large_json_answer_is_compressed_and_decodes_to_the_same_bytes() {
    let t = setup_with(compressing).await;
    let (s, h, plain) = send(&t.gw, get("/openapi.json", None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(encoding(&h), None, "no accept-encoding: sent as it is");
    assert!(plain.len() > 1024, "the document is large: {}", plain.len());

    let (s, h, gz) = send(&t.gw, get("/openapi.json", Some("gzip"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(encoding(&h), Some("gzip"));
    assert!(
        h.get("content-length").is_none(),
        "the plain length is gone"
    );
    assert!(
        h.get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().contains("accept-encoding")),
        "{h:?}"
    );
    assert_eq!(gunzip(&gz), plain);

    // Both accepted equally: brotli.
    let (s, h, br) = send(&t.gw, get("/openapi.json", Some("gzip, deflate, br"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(encoding(&h), Some("br"));
    assert_eq!(unbrotli(&br), plain);
    // The client's q-values decide over the preference.
    let (_, h, gz2) = send(&t.gw, get("/openapi.json", Some("br;q=0.5, gzip"))).await;
    assert_eq!(encoding(&h), Some("gzip"));
    assert_eq!(gunzip(&gz2), plain);
    eprintln!(
        "/openapi.json: {} bytes, gzip {} ({:.1}x), br {} ({:.1}x)",
        plain.len(),
        gz.len(),
        plain.len() as f64 / gz.len() as f64,
        br.len(),
        plain.len() as f64 / br.len() as f64
    );

    // The models list too: any JSON answer over the threshold.
    let (_, h, plain) = send(&t.gw, get("/v1/models", None)).await;
    let (_, hz, gz) = send(&t.gw, get("/v1/models", Some("gzip"))).await;
    if plain.len() >= 1024 {
        assert_eq!(encoding(&hz), Some("gzip"));
        assert_eq!(gunzip(&gz), plain);
    } else {
        assert_eq!(encoding(&hz), None, "{h:?}");
    }
}

#[tokio::test]
async fn small_answers_and_offered_encodings_only() {
    let t = setup_with(|c| {
        compressing(c);
        c.server.compression.br = false;
    })
    .await;
    // `/health` is a few bytes: under `min_bytes`.
    let (s, h, body) = send(&t.gw, get("/health", Some("gzip, br"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(encoding(&h), None);
    assert!(body.len() < 1024);
    // Brotli is not offered: gzip even though the client prefers br.
    let (_, h, _) = send(&t.gw, get("/openapi.json", Some("br, gzip;q=0.1"))).await;
    assert_eq!(encoding(&h), Some("gzip"));
    let (_, h, _) = send(&t.gw, get("/openapi.json", Some("br"))).await;
    assert_eq!(encoding(&h), None, "nothing acceptable: as it is");

    // `min_bytes` above the document: not compressed.
    let t = setup_with(|c| {
        compressing(c);
        c.server.compression.min_bytes = 10 << 20;
    })
    .await;
    let (_, h, _) = send(&t.gw, get("/openapi.json", Some("gzip"))).await;
    assert_eq!(encoding(&h), None);
}

#[tokio::test]
async fn nothing_is_compressed_when_compression_is_off() {
    let t = common::setup().await;
    assert!(!t.gw.config.server.compression.enabled, "off by default");
    let (s, h, body) = send(&t.gw, get("/openapi.json", Some("gzip, br"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(encoding(&h), None);
    serde_json::from_slice::<serde_json::Value>(&body).unwrap();
}

#[tokio::test]
async fn a_streamed_answer_is_never_compressed() {
    let t = setup_with(compressing).await;
    let mut req = post_request(
        "/v1/chat/completions",
        &json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "max_tokens": 400,
            "messages": [{"role": "user", "content": "Tell me a long story."}]
        }),
    );
    req.headers_mut()
        .insert("accept-encoding", "br, gzip".parse().unwrap());
    let (s, h, body) = send(&t.gw, req).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(encoding(&h), None);
    let text = String::from_utf8(body).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    // A complete chat answer is JSON: compressed when large enough, intact either way.
    let mut req = post_request(
        "/v1/chat/completions",
        &json!({
            "model": "gpt-4o-mini",
            "max_tokens": 400,
            "messages": [{"role": "user", "content": "Tell me a long story."}]
        }),
    );
    req.headers_mut()
        .insert("accept-encoding", "gzip".parse().unwrap());
    let (s, h, body) = send(&t.gw, req).await;
    assert_eq!(s, StatusCode::OK);
    let body = match encoding(&h) {
        Some("gzip") => gunzip(&body),
        None => body,
        other => panic!("{other:?}"),
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["object"], "chat.completion", "{v}");
}

#[tokio::test]
async fn a_hostile_accept_encoding_gets_a_normal_answer() {
    let t = setup_with(compressing).await;
    let (_, _, plain) = send(&t.gw, get("/openapi.json", None)).await;
    let huge = "x-nothing;q=0.5, ".repeat(4000) + "gzip;q=0";
    let hostile = [
        ";;;q=zz,,,  ,;\t=,",
        "gzip;q=abc, br;q=-1, gzip;q=1.0000",
        "*",
        "identity",
        "gzip;q=0, br;q=0",
        huge.as_str(),
    ];
    for a in hostile {
        let (s, h, body) = send(&t.gw, get("/openapi.json", Some(a))).await;
        assert_eq!(s, StatusCode::OK, "{a:.40}");
        let body = match encoding(&h) {
            None => body,
            Some("gzip") => gunzip(&body),
            Some("br") => unbrotli(&body),
            other => panic!("{a:.40}: {other:?}"),
        };
        assert_eq!(body, plain, "{a:.40}");
    }
    // Refused encodings (q=0) and unknown ones are never used.
    for a in [
        "gzip;q=0, br;q=0",
        huge.as_str(),
        "identity",
        "zstd, deflate",
    ] {
        let (_, h, _) = send(&t.gw, get("/openapi.json", Some(a))).await;
        assert_eq!(encoding(&h), None, "{a:.40}");
    }
    // Not UTF-8 at all.
    let mut req = get("/openapi.json", None);
    req.headers_mut().insert(
        "accept-encoding",
        axum::http::HeaderValue::from_bytes(b"gz\xffip").unwrap(),
    );
    let (s, h, body) = send(&t.gw, req).await;
    assert_eq!((s, encoding(&h)), (StatusCode::OK, None));
    assert_eq!(body, plain);
}

/// The gateway served on loopback through its own connection handling (`server::serve`).
async fn serve(edit: impl FnOnce(&mut Config)) -> (common::Setup, SocketAddr) {
    let t = setup_with(edit).await;
    let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let timeouts = server::Timeouts::from(&t.gw.config.server);
    tokio::spawn(server::serve(
        listener,
        switchyard::app(t.gw.clone()),
        timeouts,
        t.gw.abort.clone(),
        std::future::pending(),
    ));
    (t, addr)
}

#[tokio::test]
async fn compressed_answers_over_a_real_connection_keep_it_usable() {
    let (_t, addr) = serve(compressing).await;
    // One connection (a pool of one idle socket), several compressed answers in turn: each
    // answer's end is seen, so the connection goes back to idle and serves the next.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("http://{addr}/openapi.json");
    let plain = client
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    for accept in ["gzip", "br", "gzip", "br"] {
        let resp = client
            .get(&url)
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(encoding(resp.headers()), Some(accept));
        let body = resp.bytes().await.unwrap();
        let decoded = if accept == "gzip" {
            gunzip(&body)
        } else {
            unbrotli(&body)
        };
        assert_eq!(decoded, plain);
    }
}

#[tokio::test]
async fn the_websocket_upgrade_is_never_compressed() {
    let (_t, addr) = serve(|c| {
        compressing(c);
        c.auth.mode = Some(config::AuthMode::Open);
    })
    .await;
    let mut req = format!("ws://{addr}/ai/stream")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("accept-encoding", "gzip, br".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().get("content-encoding").is_none());
    // The feed's first frame is plain JSON text.
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = frame.into_text().unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap();
}

#[tokio::test]
async fn bad_compression_and_connection_settings_are_named() {
    let text = r#"
[server.compression]
enabled = true
min_bytes = 0
algorithms = ["gzip", "zstd", "gzip"]

[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:11434/v1"
http2 = "sometimes"

[providers.other]
kind = "openai-compatible"
base_url = "http://127.0.0.1:11435/v1"
pool_max_idle = 1000000

[models.llama]
provider = "local"
catalog = "llama3.2"
"#;
    let errors = config::load_str(text, &Vars::only(&[]))
        .unwrap_err()
        .to_string();
    for needle in [
        "server.compression.min_bytes: must be 1 to",
        "server.compression.algorithms[1]: 'zstd' is not one of",
        "server.compression.algorithms[2]: 'gzip' is listed twice",
        "providers.local.http2: unknown variant `sometimes`",
        "providers.other.pool_max_idle: must be at most 10000",
    ] {
        assert!(errors.contains(needle), "{needle}\n{errors}");
    }
    let empty = text.replace(r#"["gzip", "zstd", "gzip"]"#, "[]");
    let errors = config::load_str(&empty, &Vars::only(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("server.compression.algorithms: must name at least one"),
        "{errors}"
    );
    let unknown = "[server.compression]\nlevel = 9\n";
    let errors = config::load_str(unknown, &Vars::only(&[]))
        .unwrap_err()
        .to_string();
    assert!(errors.contains("server.compression"), "{errors}");
    assert!(errors.contains("level"), "{errors}");

    let good = r#"
[server]
compression = { enabled = true, min_bytes = 2048, algorithms = ["gzip"] }

[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:11434/v1"
http2 = "always"
pool_max_idle = 8

[models.llama]
provider = "local"
catalog = "llama3.2"
"#;
    let c = config::load_str(good, &Vars::only(&[])).unwrap();
    let z = c.server.compression;
    assert_eq!(
        (z.enabled, z.min_bytes, z.gzip, z.br),
        (true, 2048, true, false)
    );
    let local = c.providers.values().next().unwrap();
    assert_eq!(local.connection.http2, Http2::Always);
    assert_eq!(local.connection.pool_max_idle, 8);
}

/// Every provider of the demo config with `http2`.
fn upstream_http2(mode: Http2) -> impl FnOnce(&mut Config) {
    move |c| {
        for p in c.providers.values_mut() {
            p.connection.http2 = mode;
        }
    }
}

/// The HTTP version of the last call the simulator received.
fn last_version(t: &common::Setup) -> String {
    let recent = t.sim.sim.recent_requests();
    let last = recent.last().expect("the simulator saw a call");
    assert!(last.path.ends_with("/chat/completions"), "{}", last.path);
    last.http_version.clone()
}

async fn chat(t: &common::Setup, stream: bool) -> (StatusCode, String) {
    let req = post_request(
        "/v1/chat/completions",
        &json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": "Hello."}]
        }),
    );
    let resp = switchyard::app(t.gw.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn http2_always_speaks_h2c_to_the_upstream_for_answers_and_streams() {
    let t = setup_with(upstream_http2(Http2::Always)).await;
    let (s, body) = chat(&t, false).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(last_version(&t), "HTTP/2.0");

    let (s, body) = chat(&t, true).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert_eq!(last_version(&t), "HTTP/2.0");
    assert_eq!(t.sim.sim.stats().model("gpt-4o-mini").streams_completed, 1);
}

#[tokio::test]
async fn http2_auto_and_never_speak_http1_over_plain_http() {
    for mode in [Http2::Auto, Http2::Never] {
        let t = setup_with(upstream_http2(mode)).await;
        for stream in [false, true] {
            let (s, body) = chat(&t, stream).await;
            assert_eq!(s, StatusCode::OK, "{mode:?}: {body}");
            assert_eq!(last_version(&t), "HTTP/1.1", "{mode:?}");
        }
    }
}

/// 300 clients connect at once to a listener that has not accepted yet: every connection
/// completes at once. With the 128-deep queue `TcpListener::bind` asks for, the kernel dropped
/// the SYNs past it and those clients waited a second for the retransmit.
#[tokio::test]
async fn a_burst_of_connections_fits_the_listen_queue() {
    let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    // The kernel caps the backlog at somaxconn; a machine with a smaller one cannot show this.
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096);
    let clients = 300.min(somaxconn);
    let connects = (0..clients).map(|_| {
        tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr),
        )
    });
    let results = futures::future::join_all(connects).await;
    let connected = results
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(_))))
        .count();
    assert_eq!(connected, clients, "connections completed within 500 ms");
    drop(listener);
}
