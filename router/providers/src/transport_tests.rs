//! The transport's bounds against a real socket: a loopback server that answers with an endless
//! body, a lying `content-length`, an endless SSE event, an endless stream of content, or a
//! redirect to another listener. Each must end in a failed attempt without reading (or
//! holding) more than its bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::openai::ChunkParser;

/// What the test server sends after reading the request.
#[derive(Clone, Copy)]
enum Answer {
    /// A 200 JSON head, then spaces until the client hangs up.
    EndlessBody,
    /// A 200 head that promises 10 GB, then nothing.
    HugeLength,
    /// An SSE head, then one `data:` line that never ends.
    EndlessEvent,
    /// An SSE head, then valid content chunks until the client hangs up.
    EndlessContent,
}

/// Serve `answer` to every connection; returns the base URL and the bytes written in all.
async fn server(answer: Answer) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicUsize::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer_one(socket, answer, count.clone()));
        }
    });
    (url, written)
}

async fn answer_one(mut socket: TcpStream, answer: Answer, written: Arc<AtomicUsize>) {
    let mut buf = vec![0u8; 64 << 10];
    let _ = socket.read(&mut buf).await;
    let (head, unit): (&str, Vec<u8>) = match answer {
        Answer::EndlessBody => (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"choices\":",
            vec![b' '; 16 << 10],
        ),
        Answer::HugeLength => (
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\n\r\n",
            Vec::new(),
        ),
        Answer::EndlessEvent => (
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: {\"choices\":[",
            vec![b' '; 16 << 10],
        ),
        Answer::EndlessContent => (
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"}}]}\n\n".to_vec(),
        ),
    };
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if unit.is_empty() {
        // Hold the connection open without sending the promised body.
        let _ = socket.read(&mut buf).await;
        return;
    }
    while socket.write_all(&unit).await.is_ok() {
        written.fetch_add(unit.len(), Ordering::Relaxed);
    }
}

async fn post(url: &str) -> Result<reqwest::Response, ProviderError> {
    let client = http_client().unwrap();
    post_json(client.post(url), &serde_json::json!({}), |s, _, _| {
        ProviderError::new(ErrorKind::Server, format!("HTTP {s}"))
    })
    .await
}

fn assert_over_limit(err: &ProviderError, what: &str) {
    assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
    assert!(!err.retryable, "{err}");
    assert!(err.message.contains(what), "{err}");
}

#[tokio::test]
async fn an_endless_body_is_refused_at_the_bound() {
    let (url, written) = server(Answer::EndlessBody).await;
    let response = post(&url).await.unwrap();
    let err = read_body(response, 1 << 20).await.unwrap_err();
    assert_over_limit(&err, "exceeds 1048576 bytes");
    // The server kept writing until we hung up; what it managed to send is the bound plus the
    // socket buffers, never its endless whole.
    assert!(written.load(Ordering::Relaxed) < 64 << 20);
}

#[tokio::test]
async fn a_body_announced_too_large_is_refused_before_reading() {
    let (url, _) = server(Answer::HugeLength).await;
    let response = post(&url).await.unwrap();
    let err = read_body(response, DEFAULT_MAX_RESPONSE_BYTES)
        .await
        .unwrap_err();
    assert_over_limit(&err, "exceeds 33554432 bytes");
}

#[tokio::test]
async fn an_endless_sse_event_is_refused_at_the_bound() {
    let (url, _) = server(Answer::EndlessEvent).await;
    let response = post(&url).await.unwrap();
    let limits = Limits {
        max_event_bytes: 64 << 10,
        ..Limits::default()
    };
    let mut events = sse_stream(response, ChunkParser::default(), limits);
    let err = events.next().await.unwrap().unwrap_err();
    assert_over_limit(&err, "an SSE event exceeds 65536 bytes");
    assert!(
        events.next().await.is_none(),
        "the stream ends at its error"
    );
}

#[tokio::test]
async fn endless_streamed_content_is_refused_at_the_response_bound() {
    let (url, _) = server(Answer::EndlessContent).await;
    let response = post(&url).await.unwrap();
    let limits = Limits {
        max_response_bytes: 10_000,
        ..Limits::default()
    };
    let items: Vec<_> = sse_stream(response, ChunkParser::default(), limits)
        .collect()
        .await;
    let (last, content) = items.split_last().unwrap();
    assert_over_limit(last.as_ref().unwrap_err(), "exceeds 10000 bytes");
    // "word " is 5 bytes: exactly the events that fit were delivered.
    assert_eq!(content.len(), 2_000);
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = elsewhere.local_addr().unwrap();
    let followed = Arc::new(AtomicUsize::new(0));
    let count = followed.clone();
    // If the redirect were followed, this host would answer 200 and the call would succeed.
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = elsewhere.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            let mut buf = vec![0u8; 16 << 10];
            let _ = socket.read(&mut buf).await;
            let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
            let _ = socket.write_all(ok.as_bytes()).await;
        }
    });
    let redirector = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", redirector.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = redirector.accept().await {
            let mut buf = vec![0u8; 16 << 10];
            let _ = socket.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{target}/steal\r\n\
                 content-length: 0\r\n\r\n"
            );
            let _ = socket.write_all(head.as_bytes()).await;
        }
    });
    let client = http_client().unwrap();
    let request = client.post(&url).bearer_auth("sk-provider-secret");
    let err = post_json(request, &serde_json::json!({}), |s, _, _| {
        ProviderError::new(ErrorKind::Server, format!("HTTP {s}"))
    })
    .await
    .unwrap_err();
    assert_eq!(err.status, Some(307));
    assert_eq!(err.kind, ErrorKind::MalformedResponse);
    assert!(err.kind.allows_fallback() && !err.retryable);
    assert!(err.message.contains(&format!("host {target}")), "{err}");
    assert_eq!(
        followed.load(Ordering::Relaxed),
        0,
        "the redirect was followed"
    );
}
