//! Embeddings egress against a loopback upstream that answers what each test scripts: the
//! request bodies each wire format sends, vectors put back in input order, and a hostile
//! upstream's answers (wrong count, repeated or stray indices, unequal or wrong lengths, empty
//! vectors, numbers beyond f32, oversized bodies), each refused as a failed attempt.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{
    Call, Dialect, ErrorKind, Limits, Provider, ProviderError, ProviderKind, ProviderSettings,
    http_client,
};
use switchyard_types::ids::{ProviderId, Secret};
use switchyard_types::{ChatRequest, EmbedSpec, Message, Role};

/// A scripted answer: status, extra header lines, body.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: &'static str,
    body: String,
}

fn ok(body: Value) -> Canned {
    Canned {
        status: 200,
        headers: "",
        body: body.to_string(),
    }
}

/// What the upstream received: (request line, body).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A loopback upstream answering the scripted answers in order (the last one from then on).
async fn upstream(answers: Vec<Canned>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((socket, _)) = listener.accept().await {
            let answer = answers[n.min(answers.len() - 1)].clone();
            n += 1;
            answer_one(socket, answer, log.clone()).await;
        }
    });
    (url, seen)
}

async fn answer_one(mut socket: TcpStream, answer: Canned, seen: Seen) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let (head, body) = loop {
        let Ok(n) = socket.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            break (head, buf[end + 4..end + 4 + length].to_vec());
        }
    };
    let line = head.lines().next().unwrap_or("").to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((line, body));
    let reply = format!(
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}connection: close\r\n\r\n{}",
        answer.status,
        answer.body.len(),
        answer.headers,
        answer.body
    );
    let _ = socket.write_all(reply.as_bytes()).await;
}

fn provider(url: &str, kind: ProviderKind, dialect: Dialect, limits: Limits) -> Provider {
    let settings = ProviderSettings {
        id: ProviderId::new("under-test"),
        kind,
        dialect,
        base_url: url.to_owned(),
        api_key: Some(Secret::new("k")),
        headers: Vec::new(),
        limits,
        connection: Default::default(),
    };
    Provider::new(settings, http_client().unwrap())
}

fn openai(url: &str) -> Provider {
    provider(
        url,
        ProviderKind::OpenAi,
        Dialect::Generic,
        Limits::default(),
    )
}

fn request(inputs: &[&str], dimensions: Option<u32>) -> ChatRequest {
    let messages = inputs
        .iter()
        .map(|t| Message::new(Role::User, *t))
        .collect();
    let mut r = ChatRequest::new("ignored", messages);
    r.embed = Some(EmbedSpec {
        dimensions,
        base64: true,
    });
    r
}

async fn embed(
    p: &Provider,
    model: &str,
    r: &ChatRequest,
) -> Result<switchyard_types::ChatResponse, ProviderError> {
    p.chat(Call {
        request: r,
        upstream_model: model,
        default_max_tokens: 0,
        traceparent: None,
    })
    .await
}

fn list(data: Value) -> Value {
    json!({"object": "list", "data": data, "model": "text-embedding-3-small",
           "usage": {"prompt_tokens": 7, "total_tokens": 7}})
}

fn item(index: Value, embedding: Value) -> Value {
    json!({"object": "embedding", "index": index, "embedding": embedding})
}

#[tokio::test]
async fn openai_asks_for_floats_and_puts_vectors_in_input_order() {
    let data = json!([
        item(json!(1), json!([0.0, 1.0])),
        item(json!(0), json!([0.6, 0.8]))
    ]);
    let (url, seen) = upstream(vec![ok(list(data))]).await;
    let mut r = request(&["alpha", "beta"], Some(2));
    r.user = Some("u-1".into());
    let answer = embed(&openai(&url), "text-embedding-3-small", &r)
        .await
        .unwrap();
    assert_eq!(answer.object, "list");
    assert!(answer.choices.is_empty());
    assert_eq!(answer.model, "text-embedding-3-small");
    assert_eq!(
        answer.embeddings,
        Some(vec![vec![0.6, 0.8], vec![0.0, 1.0]])
    );
    assert_eq!(
        (answer.usage.prompt_tokens, answer.usage.completion_tokens),
        (7, 0)
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "POST /v1/embeddings HTTP/1.1");
    assert_eq!(
        seen[0].1,
        json!({"model": "text-embedding-3-small", "input": ["alpha", "beta"],
               "encoding_format": "float", "dimensions": 2, "user": "u-1"})
    );
}

#[tokio::test]
async fn dialects_without_dimensions_are_not_sent_it_and_their_length_is_checked() {
    let answer = list(json!([item(json!(0), json!([0.6, 0.8, 0.0]))]));
    let (url, seen) = upstream(vec![ok(answer)]).await;
    let ollama = provider(
        &url,
        ProviderKind::OpenAiCompatible,
        Dialect::Ollama,
        Limits::default(),
    );
    let mut r = request(&["alpha"], Some(3));
    r.user = Some("u-1".into());
    let got = embed(&ollama, "nomic-embed-text", &r).await.unwrap();
    assert_eq!(got.embeddings.unwrap()[0].len(), 3);
    // The server would not shorten: asking for 2 and getting 3 is refused.
    let err = embed(&ollama, "nomic-embed-text", &request(&["alpha"], Some(2)))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse);
    assert!(err.message.contains("length 3, 2 were asked"), "{err}");
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].1,
        json!({"model": "nomic-embed-text", "input": ["alpha"], "encoding_format": "float"})
    );
}

#[tokio::test]
async fn a_hostile_list_is_refused() {
    let v2 = json!([0.6, 0.8]);
    let cases: Vec<(Value, &str)> = vec![
        (
            list(json!([item(json!(0), v2.clone())])),
            "1 vectors for 2 inputs",
        ),
        (
            list(json!([
                item(json!(0), v2.clone()),
                item(json!(0), v2.clone())
            ])),
            "index 0 appears twice",
        ),
        (
            list(json!([
                item(json!(0), v2.clone()),
                item(json!(7), v2.clone())
            ])),
            "index 7 is out of range",
        ),
        (
            list(json!([
                item(json!(0), v2.clone()),
                item(json!(1), json!([1.0]))
            ])),
            "vector 1 has length 1",
        ),
        (
            list(json!([
                item(json!(0), json!([])),
                item(json!(1), json!([]))
            ])),
            "vector 0 is empty",
        ),
        (
            list(json!([
                item(json!(0), v2.clone()),
                item(json!(1), json!([1e39, 0.0]))
            ])),
            // Out of f32's range: refused by the parser or by the check, as serde_json is built.
            "non-finite number|number out of range",
        ),
        (
            list(json!([
                item(json!(0), v2.clone()),
                item(json!(-1), v2.clone())
            ])),
            "embeddings list JSON",
        ),
        (json!({"object": "list"}), "embeddings list JSON"),
        (
            list(json!([
                item(json!(0), v2.clone()),
                item(json!(1), json!("AAAA"))
            ])),
            "embeddings list JSON",
        ),
    ];
    let r = request(&["alpha", "beta"], None);
    for (body, want) in cases {
        let (url, _) = upstream(vec![ok(body.clone())]).await;
        let err = embed(&openai(&url), "m", &r).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::MalformedResponse, "{body}: {err}");
        assert!(err.kind.allows_fallback());
        assert!(
            want.split('|').any(|w| err.message.contains(w)),
            "{body}: want {want}, got {err}"
        );
    }
}

#[tokio::test]
async fn an_oversized_answer_is_refused_at_the_bound() {
    let vector: Vec<f32> = vec![0.125; 4096];
    let (url, _) = upstream(vec![ok(list(json!([item(json!(0), json!(vector))])))]).await;
    let limits = Limits {
        max_response_bytes: 10_000,
        ..Limits::default()
    };
    let p = provider(&url, ProviderKind::OpenAi, Dialect::Generic, limits);
    let err = embed(&p, "m", &request(&["alpha"], None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse);
    assert!(err.message.contains("exceeds 10000 bytes"), "{err}");
}

#[tokio::test]
async fn http_errors_go_through_each_providers_table() {
    let rate = Canned {
        status: 429,
        headers: "retry-after: 2\r\n",
        body: json!({"error": {"message": "Rate limit reached", "type": "requests",
                               "code": "rate_limit_exceeded"}})
        .to_string(),
    };
    let (url, _) = upstream(vec![rate]).await;
    let err = embed(&openai(&url), "m", &request(&["a"], None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(2)));

    let quota = Canned {
        status: 429,
        headers: "",
        body: json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "q",
            "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                         "violations": [{"quotaId": "EmbedRequestsPerDayPerProject"}]}]}})
        .to_string(),
    };
    let (url, _) = upstream(vec![quota]).await;
    let gemini = provider(
        &url,
        ProviderKind::Gemini,
        Dialect::Generic,
        Limits::default(),
    );
    let err = embed(&gemini, "gemini-embedding-001", &request(&["a"], None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::QuotaExhausted);
}

fn batch(vectors: usize, length: usize) -> Value {
    let values: Vec<f32> = vec![0.5; length];
    json!({"embeddings": vec![json!({"values": values}); vectors]})
}

#[tokio::test]
async fn gemini_batches_inputs_by_the_hundred_and_reports_no_usage() {
    let (url, seen) = upstream(vec![ok(batch(100, 4)), ok(batch(30, 4))]).await;
    let gemini = provider(
        &url,
        ProviderKind::Gemini,
        Dialect::Generic,
        Limits::default(),
    );
    let texts: Vec<String> = (0..130).map(|i| format!("input {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = embed(
        &gemini,
        "models/gemini-embedding-001",
        &request(&refs, Some(4)),
    )
    .await
    .unwrap();
    assert_eq!(got.embeddings.as_ref().unwrap().len(), 130);
    assert_eq!(got.model, "gemini-embedding-001");
    assert_eq!(got.usage.prompt_tokens, 0);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].0,
        "POST /v1/models/gemini-embedding-001:batchEmbedContents HTTP/1.1"
    );
    let requests = seen[0].1["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 100);
    assert_eq!(
        requests[3],
        json!({"model": "models/gemini-embedding-001",
               "content": {"parts": [{"text": "input 3"}]}, "outputDimensionality": 4})
    );
    assert_eq!(seen[1].1["requests"].as_array().unwrap().len(), 30);
    assert_eq!(
        seen[1].1["requests"][29]["content"]["parts"][0]["text"],
        "input 129"
    );
}

#[tokio::test]
async fn gemini_refuses_a_hostile_batch() {
    let cases: Vec<(Value, Option<u32>, &str)> = vec![
        (batch(1, 4), None, "1 vectors for 2 inputs"),
        (json!({}), None, "0 vectors for 2 inputs"),
        (batch(2, 0), None, "vector 0 is empty"),
        (batch(2, 4), Some(8), "length 4, 8 were asked"),
        (
            json!({"embeddings": [{"values": [1.0, 0.0]}, {"values": [1.0]}]}),
            None,
            "vector 1 has length 1",
        ),
        (
            json!({"embeddings": [{"values": [1.0]}, {"values": [-1e300]}]}),
            None,
            "non-finite|number out of range",
        ),
    ];
    for (body, dimensions, want) in cases {
        let (url, _) = upstream(vec![ok(body.clone())]).await;
        let gemini = provider(
            &url,
            ProviderKind::Gemini,
            Dialect::Generic,
            Limits::default(),
        );
        let err = embed(
            &gemini,
            "gemini-embedding-001",
            &request(&["a", "b"], dimensions),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::MalformedResponse, "{body}: {err}");
        assert!(
            want.split('|').any(|w| err.message.contains(w)),
            "{body}: want {want}, got {err}"
        );
    }
}

/// Each call is under the bound, but together they are not: the budget is shared.
#[tokio::test]
async fn gemini_batches_share_one_body_budget() {
    let one = batch(100, 8).to_string().len();
    let (url, _) = upstream(vec![ok(batch(100, 8))]).await;
    let limits = Limits {
        max_response_bytes: one * 2 + one / 2,
        ..Limits::default()
    };
    let gemini = provider(&url, ProviderKind::Gemini, Dialect::Generic, limits);
    let texts: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let err = embed(&gemini, "gemini-embedding-001", &request(&refs, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedResponse);
    assert!(err.message.contains("together exceed"), "{err}");
}

#[tokio::test]
async fn anthropic_and_streams_have_no_embeddings() {
    let (url, seen) = upstream(vec![ok(json!({}))]).await;
    let anthropic = provider(
        &url,
        ProviderKind::Anthropic,
        Dialect::Generic,
        Limits::default(),
    );
    let r = request(&["a"], None);
    let err = embed(&anthropic, "claude-3-5-haiku", &r).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert!(err.message.contains("no embeddings API"), "{err}");
    let call = Call {
        request: &r,
        upstream_model: "m",
        default_max_tokens: 0,
        traceparent: None,
    };
    let Err(err) = openai(&url).chat_stream(call).await else {
        panic!("an embeddings stream was opened");
    };
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    let empty = request(&[], None);
    let err = embed(&openai(&url), "m", &empty).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
}

/// Every format that has embeddings, against the simulator: vectors of the asked length in
/// input order, usage where the format reports it, faults as each format's errors.
#[tokio::test]
async fn the_simulator_speaks_every_embeddings_format() {
    use switchyard_sim::{FaultMode, SimConfig, WireFormat};
    let sim = switchyard_sim::spawn(SimConfig::default(), ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let cases = [
        (
            ProviderKind::OpenAi,
            Dialect::Generic,
            WireFormat::OpenAi,
            "text-embedding-3-small",
            Some(512),
            1536,
        ),
        (
            ProviderKind::OpenAiCompatible,
            Dialect::Ollama,
            WireFormat::Ollama,
            "nomic-embed-text",
            None,
            768,
        ),
        (
            ProviderKind::Gemini,
            Dialect::Generic,
            WireFormat::Gemini,
            "gemini-embedding-001",
            Some(768),
            3072,
        ),
    ];
    for (kind, dialect, wire, model, dims, default) in cases {
        let p = provider(&sim.base_url(wire), kind, dialect, Limits::default());
        let r = request(&["alpha", "beta", "alpha"], dims);
        let got = embed(&p, model, &r).await.unwrap();
        let vectors = got.embeddings.unwrap();
        assert_eq!(vectors.len(), 3, "{model}");
        assert!(
            vectors
                .iter()
                .all(|v| v.len() == dims.unwrap_or(default) as usize)
        );
        assert_eq!(vectors[0], vectors[2], "{model}: same text, same vector");
        assert_ne!(vectors[0], vectors[1], "{model}");
        // ceil(5/4) + ceil(4/4) + ceil(5/4); Gemini reports none.
        let expected_usage = if kind == ProviderKind::Gemini { 0 } else { 5 };
        assert_eq!(got.usage.prompt_tokens, expected_usage, "{model}");
        assert_eq!(got.model, model);

        sim.sim
            .set_fault(model, "503", FaultMode::Count(1))
            .unwrap();
        let err = embed(&p, model, &r).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Overloaded, "{model}: {err}");
        sim.sim
            .set_fault(model, "malformed", FaultMode::Count(1))
            .unwrap();
        let err = embed(&p, model, &r).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::MalformedResponse, "{model}: {err}");
    }
    sim.shutdown().await;
}
