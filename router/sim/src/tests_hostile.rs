//! The hostile-upstream faults: a tool-call index no answer could have (every format), bodies
//! that never end (complete and stream), an oversized but valid event or body, and a redirect
//! to another host name whose followers are counted.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::tests::{anthropic, events, gemini, ollama, openai, sse_data, user};
use super::{Sim, SimConfig};

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "messages": user("hello"), "stream": stream})
}

#[tokio::test]
async fn tool_index_is_hostile_on_every_format() {
    let sim = Sim::new(SimConfig::default());
    let h = [("x-sim-fault", "tool-index")];
    for got in [
        openai(&sim, chat(true), &h).await,
        ollama(&sim, chat(true), &h).await,
    ] {
        let first: Value = serde_json::from_str(&sse_data(&got.text(), "\n\n")[0]).unwrap();
        let call = &first["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["index"], u64::from(u32::MAX), "{first}");
    }
    let claude = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 100,
        "messages": user("hello"), "stream": true});
    let got = anthropic(&sim, claude, &h).await;
    let (name, data) = events(&got.text())[1].clone();
    assert_eq!(name, "content_block_start");
    let data: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["index"], u64::from(u32::MAX));
    assert_eq!(data["content_block"]["type"], "tool_use");

    let contents = json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]});
    let got = gemini(&sim, "gemini-2.0-flash", true, contents, &h).await;
    let first: Value = serde_json::from_str(&sse_data(&got.text(), "\r\n\r\n")[0]).unwrap();
    let parts = first["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap();
    assert_eq!(parts.len(), 1024);
    assert!(parts.iter().all(|p| p["functionCall"]["name"] == "hostile"));

    // A complete answer has no index on the wire: it is a normal answer.
    let got = openai(&sim, chat(false), &h).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.json()["choices"][0]["message"]["content"].is_string());
}

/// POST `body` with `fault` to the OpenAI endpoint; the response, unread.
async fn start(sim: &Arc<Sim>, body: &Value, fault: &str) -> http::Response<Body> {
    let req = Request::post("/openai/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-sim")
        .header("x-sim-fault", fault)
        .body(Body::from(body.to_string()))
        .unwrap();
    sim.router().oneshot(req).await.unwrap()
}

/// Reads at least `n` bytes of `body` (it must not end before).
async fn read_at_least(body: &mut Body, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let frame = body.frame().await.expect("the body ended").unwrap();
        got.extend_from_slice(frame.data_ref().unwrap());
    }
    got
}

#[tokio::test]
async fn endless_bodies_never_end_and_a_client_leaving_is_a_cancel() {
    let sim = Sim::new(SimConfig::default());
    for (stream, head) in [(false, "{\"choices\":["), (true, "data: {\"choices\":[")] {
        let resp = start(&sim, &chat(stream), "endless").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let got = read_at_least(&mut body, 4 << 20).await;
        assert!(got.starts_with(head.as_bytes()));
        assert!(
            got[head.len()..].iter().all(|b| *b == b' '),
            "whitespace only, no line end"
        );
        drop(body);
    }
    let stats = sim.stats().model("gpt-4o-mini");
    assert_eq!((stats.streams_cancelled, stats.in_flight), (2, 0));
}

#[tokio::test]
async fn big_events_are_large_but_valid() {
    let sim = Sim::new(SimConfig::default());
    let h = [("x-sim-fault", "big-event:64")];
    let got = openai(&sim, chat(true), &h).await;
    let data = sse_data(&got.text(), "\n\n");
    let big: Vec<&String> = data.iter().filter(|d| d.len() > 64 << 10).collect();
    assert_eq!(big.len(), 1, "one padded event");
    let chunk: Value = serde_json::from_str(big[0]).unwrap();
    assert!(chunk["choices"][0]["delta"]["content"].is_string());
    assert!(data.last().is_some_and(|d| d == "[DONE]"));

    let got = openai(&sim, chat(false), &h).await;
    assert!(got.body.as_ref().unwrap().len() > 64 << 10);
    assert!(got.json()["choices"][0]["message"]["content"].is_string());
}

#[tokio::test]
async fn redirects_cross_hosts_and_followers_are_counted() {
    let sim = Sim::new(SimConfig::default());
    let h = [("x-sim-fault", "redirect"), ("host", "127.0.0.1:4321")];
    let got = openai(&sim, chat(false), &h).await;
    assert_eq!(got.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        got.header("location"),
        "http://localhost:4321/_sim/redirected"
    );
    let h = [("x-sim-fault", "redirect"), ("host", "localhost:4321")];
    let got = openai(&sim, chat(true), &h).await;
    assert_eq!(
        got.header("location"),
        "http://127.0.0.1:4321/_sim/redirected"
    );
    assert_eq!(sim.stats().redirects_followed, 0);

    for auth in [None, Some(("x-api-key", "sk-ant"))] {
        let mut req = Request::post("/_sim/redirected");
        if let Some((k, v)) = auth {
            req = req.header(k, v);
        }
        let resp = sim
            .router()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let stats = sim.stats();
    assert_eq!(
        (stats.redirects_followed, stats.redirected_credentials),
        (2, 1)
    );
}

#[tokio::test]
async fn padded_answers_have_large_tokens() {
    let sim = Sim::new(SimConfig::default());
    let h = [("x-sim-pad-bytes", "4096"), ("x-sim-tokens", "5")];
    let got = openai(&sim, chat(true), &h).await;
    let text = got.text();
    let data = sse_data(&text, "\n\n");
    let contents: Vec<String> = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            let v: Value = serde_json::from_str(d).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(contents.len(), 5, "still one chunk per token");
    assert!(
        contents
            .iter()
            .all(|c| c.len() > 4096 && c.ends_with("...."))
    );
    let got = openai(&sim, chat(false), &h).await;
    let v = got.json();
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len()
            > 5 * 4096
    );
}
