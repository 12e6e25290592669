//! In-process tests of the embeddings formats (OpenAI, Ollama, Gemini embedContent and
//! batchEmbedContents: shape, deterministic unit vectors, lengths, base64, usage, validation),
//! of faults and latency applied to them, and of Anthropic's prompt-cache accounting over HTTP
//! (complete and streamed).

use std::sync::Arc;

use base64::Engine as _;
use http::StatusCode;
use serde_json::{Value, json};

use super::tests::{Got, anthropic, events, send};
use super::{FaultMode, LatencyDist, Profile, Sim, SimConfig};

async fn openai_embed(sim: &Arc<Sim>, body: Value, extra: &[(&str, &str)]) -> Got {
    let mut h = vec![("authorization", "Bearer sk-test")];
    h.extend_from_slice(extra);
    send(sim, "POST", "/openai/v1/embeddings", &h, body).await
}

async fn gemini_embed(sim: &Arc<Sim>, model: &str, method: &str, body: Value) -> Got {
    let uri = format!("/gemini/v1beta/models/{model}:{method}");
    send(sim, "POST", &uri, &[("x-goog-api-key", "AIza-test")], body).await
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
}

#[tokio::test]
async fn openai_embeddings_are_deterministic_unit_vectors() {
    let sim = Sim::new(SimConfig::default());
    let body = json!({"model": "text-embedding-3-small", "input": ["alpha", "beta gamma delta"]});
    let got = openai_embed(&sim, body.clone(), &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.header("x-request-id").starts_with("req_"));
    // Floats print as f32s (about 11 characters), not as their f64 expansions (about 20).
    assert!(
        got.partial.len() < 2 * 1536 * 14,
        "{} bytes",
        got.partial.len()
    );
    let v = got.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["data"][1]["object"], "embedding");
    assert_eq!(v["data"][1]["index"], 1);
    let a = floats(&v["data"][0]["embedding"]);
    let b = floats(&v["data"][1]["embedding"]);
    assert_eq!((a.len(), b.len()), (1536, 1536));
    assert!((norm(&a) - 1.0).abs() < 1e-4 && (norm(&b) - 1.0).abs() < 1e-4);
    assert_ne!(a, b);
    // ceil(5/4) + ceil(16/4)
    assert_eq!(v["usage"], json!({"prompt_tokens": 6, "total_tokens": 6}));
    // The same text under the same model is the same vector, in any sim, at any position.
    let other = Sim::new(SimConfig {
        seed: 99,
        ..SimConfig::default()
    });
    let one = json!({"model": "text-embedding-3-small", "input": "alpha"});
    let again = openai_embed(&other, one, &[]).await.json();
    assert_eq!(floats(&again["data"][0]["embedding"]), a);
    let large = json!({"model": "text-embedding-3-large", "input": "alpha"});
    let large = openai_embed(&sim, large, &[]).await.json();
    assert_eq!(
        large["data"][0]["embedding"].as_array().unwrap().len(),
        3072
    );

    // Shortened: the prefix of the full vector, renormalised.
    let short = json!({"model": "text-embedding-3-small", "input": "alpha", "dimensions": 256});
    let s = floats(&openai_embed(&sim, short, &[]).await.json()["data"][0]["embedding"]);
    assert_eq!(s.len(), 256);
    assert!((norm(&s) - 1.0).abs() < 1e-4);
    let scale = norm(&a[..256]);
    for (x, y) in s.iter().zip(&a[..256]) {
        assert!((f64::from(*x) * scale - f64::from(*y)).abs() < 1e-5);
    }

    // base64 of little-endian f32s, the same numbers.
    let b64 = json!({"model": "text-embedding-3-small", "input": "alpha",
                     "encoding_format": "base64"});
    let v = openai_embed(&sim, b64, &[]).await.json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, a);

    // Token inputs: one token each.
    let tokens = json!({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4]]});
    let v = openai_embed(&sim, tokens, &[]).await.json();
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let flat = json!({"model": "text-embedding-3-small", "input": [5, 6]});
    let v = openai_embed(&sim, flat, &[]).await.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn openai_embeddings_validate_like_the_api() {
    let sim = Sim::new(SimConfig::default());
    let model = "text-embedding-3-small";
    let cases = [
        (
            json!({"model": model}),
            "input",
            "'input' is a required property",
        ),
        (
            json!({"model": model, "input": ""}),
            "input",
            "'$.input' is invalid",
        ),
        (
            json!({"model": model, "input": []}),
            "input",
            "'$.input' is invalid",
        ),
        (
            json!({"model": model, "input": [1, "a"]}),
            "input",
            "'$.input' is invalid",
        ),
        (
            json!({"model": model, "input": vec!["a"; 2049]}),
            "input",
            "'$.input' is invalid",
        ),
        (
            json!({"model": model, "input": [{"t": 1}]}),
            "input",
            "'$.input' is invalid",
        ),
        (
            json!({"model": model, "input": "a", "dimensions": 0}),
            "dimensions",
            "below minimum",
        ),
        (
            json!({"model": model, "input": "a", "dimensions": 2000}),
            "dimensions",
            "Expected a value <= 1536",
        ),
        (
            json!({"model": "text-embedding-ada-002", "input": "a", "dimensions": 256}),
            "dimensions",
            "does not support specifying dimensions",
        ),
        (
            json!({"model": model, "input": "a", "encoding_format": "int8"}),
            "encoding_format",
            "Supported values are: 'float' and 'base64'",
        ),
    ];
    for (body, param, want) in cases {
        let got = openai_embed(&sim, body.clone(), &[]).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{body}");
        let v = got.json();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(v["error"]["param"], param, "{body}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{body}: {message}");
    }
    let got = send(
        &sim,
        "POST",
        "/openai/v1/embeddings",
        &[],
        json!({"model": model, "input": "a"}),
    )
    .await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    // Refused requests are counted, like chat ones.
    assert_eq!(sim.stats().model(model).requests, 9);
}

#[tokio::test]
async fn ollama_embeddings_need_no_key_and_default_per_model() {
    let sim = Sim::new(SimConfig::default());
    let got = send(
        &sim,
        "POST",
        "/ollama/v1/embeddings",
        &[],
        json!({"model": "nomic-embed-text", "input": ["a", "b"], "dimensions": 64}),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let v = got.json();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 64);
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    let got = send(
        &sim,
        "POST",
        "/ollama/v1/embeddings",
        &[],
        json!({"model": "nomic-embed-text:latest", "input": "a"}),
    )
    .await;
    assert_eq!(
        got.json()["data"][0]["embedding"].as_array().unwrap().len(),
        768
    );
    let got = send(
        &sim,
        "POST",
        "/ollama/v1/embeddings",
        &[],
        json!({"model": "nomic-embed-text", "input": "a", "dimensions": 769}),
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn gemini_embed_content_and_batches() {
    let sim = Sim::new(SimConfig::default());
    let model = "gemini-embedding-001";
    let one = json!({"content": {"parts": [{"text": "alpha"}]}});
    let got = gemini_embed(&sim, model, "embedContent", one).await;
    assert_eq!(got.status, StatusCode::OK);
    let v = got.json();
    let single = floats(&v["embedding"]["values"]);
    assert_eq!(single.len(), 3072);
    assert!((norm(&single) - 1.0).abs() < 1e-4);
    assert!(v.get("usageMetadata").is_none());

    let request = |text: &str, dims: Option<u32>| {
        let mut r = json!({"model": format!("models/{model}"),
                           "content": {"parts": [{"text": text}]}});
        if let Some(d) = dims {
            r["outputDimensionality"] = json!(d);
        }
        r
    };
    let body = json!({"requests": [request("alpha", None), request("beta", Some(768))]});
    let v = gemini_embed(&sim, model, "batchEmbedContents", body)
        .await
        .json();
    let list = v["embeddings"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(floats(&list[0]["values"]), single);
    assert_eq!(list[1]["values"].as_array().unwrap().len(), 768);

    let hundred: Vec<Value> = (0..101).map(|i| request(&i.to_string(), None)).collect();
    let bad = [
        (json!({"requests": hundred}), "at most 100 requests"),
        (json!({"requests": []}), "requests is not specified"),
        (
            json!({"requests": [{"model": "models/other", "content": {"parts": [{"text": "a"}]}}]}),
            "requests[0].model",
        ),
        (
            json!({"requests": [request("a", Some(4000))]}),
            "output_dimensionality",
        ),
        (
            json!({"requests": [{"model": format!("models/{model}"), "content": {"parts": []}}]}),
            "content is not specified",
        ),
    ];
    for (body, want) in bad {
        let got = gemini_embed(&sim, model, "batchEmbedContents", body.clone()).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{body}");
        let v = got.json();
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{want}: {message}");
    }
    let uri = format!("/gemini/v1beta/models/{model}:embedContent");
    let got = send(&sim, "POST", &uri, &[], json!({})).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
}

/// Faults and latency apply to embeddings as to chat, so a gateway can fail over on them; the
/// request bodies are remembered.
#[tokio::test(start_paused = true)]
async fn embeddings_take_faults_and_latency_and_are_remembered() {
    let slow = Profile {
        ttft_ms: Some(LatencyDist {
            mean: 80.0,
            stddev: 0.0,
            ..Default::default()
        }),
        ..Profile::default()
    };
    let sim = Sim::new(SimConfig {
        models: [("text-embedding-3-small".to_owned(), slow)].into(),
        ..SimConfig::default()
    });
    let body = json!({"model": "text-embedding-3-small", "input": "alpha"});
    let t0 = tokio::time::Instant::now();
    assert_eq!(
        openai_embed(&sim, body.clone(), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(t0.elapsed().as_millis(), 80);

    let got = openai_embed(&sim, body.clone(), &[("x-sim-fault", "429:3")]).await;
    assert_eq!(got.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(got.header("retry-after"), "3");
    assert_eq!(got.json()["error"]["code"], "rate_limit_exceeded");
    let got = openai_embed(&sim, body.clone(), &[("x-sim-fault", "malformed")]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(got.body.as_ref().unwrap()).is_err());

    sim.set_fault("gemini-embedding-001", "503", FaultMode::Count(1))
        .unwrap();
    let one = json!({"content": {"parts": [{"text": "alpha"}]}});
    let got = gemini_embed(&sim, "gemini-embedding-001", "embedContent", one.clone()).await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(got.json()["error"]["status"], "UNAVAILABLE");
    let got = gemini_embed(&sim, "gemini-embedding-001", "embedContent", one).await;
    assert_eq!(got.status, StatusCode::OK);
    let stats = sim.stats().model("gemini-embedding-001");
    assert_eq!((stats.requests, stats.faults_injected), (2, 1));

    let recent = sim.recent_requests();
    let last = recent.last().unwrap();
    assert_eq!(
        last.path,
        "/gemini/v1beta/models/gemini-embedding-001:embedContent"
    );
    assert!(last.body.contains("alpha"));
    assert!(recent.iter().any(|r| r.path == "/openai/v1/embeddings"));
}

#[tokio::test]
async fn anthropic_reports_cache_writes_then_reads() {
    let sim = Sim::new(SimConfig::default());
    let long = "x".repeat(4000);
    let body = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 10,
        "system": [{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Summarise."}]});
    let usage = |v: &Value| {
        let u = &v["usage"];
        [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ]
        .map(|k| u[k].as_u64().unwrap())
    };
    // system 1000 + 3; message ceil(10/4) + 3 = 6, + 3 for the reply.
    let first = anthropic(&sim, body.clone(), &[]).await.json();
    assert_eq!(usage(&first), [9, 1003, 0]);
    let second = anthropic(&sim, body.clone(), &[]).await.json();
    assert_eq!(usage(&second), [9, 0, 1003]);

    // A stream reports the split at message_start and again in message_delta.
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    stream["system"][0]["text"] = json!("y".repeat(4000));
    let ev = events(&anthropic(&sim, stream, &[]).await.text());
    let start: Value = serde_json::from_str(&ev[0].1).unwrap();
    assert_eq!(usage(&start["message"]), [9, 1003, 0]);
    let (_, delta) = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
    let delta: Value = serde_json::from_str(delta).unwrap();
    assert_eq!(usage(&delta), [9, 1003, 0]);
    assert_eq!(delta["usage"]["output_tokens"], 10);

    // Without cache_control nothing is cached, as before.
    let mut plain = body;
    plain["system"] = json!(long);
    let v = anthropic(&sim, plain.clone(), &[]).await.json();
    assert_eq!(usage(&v), [1012, 0, 0]);
    assert_eq!(
        usage(&anthropic(&sim, plain, &[]).await.json()),
        [1012, 0, 0]
    );
    // A failed request writes nothing.
    let marked = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 10,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "zzzz",
                      "cache_control": {"type": "ephemeral"}}]}]});
    let failed = anthropic(&sim, marked.clone(), &[("x-sim-fault", "500")]).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(usage(&anthropic(&sim, marked, &[]).await.json()), [3, 4, 0]);
}

#[tokio::test]
async fn anthropic_counts_tools_and_caches_them() {
    let sim = Sim::new(SimConfig::default());
    let tools = json!([{"name": "lookup", "description": "Look it up",
        "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}]);
    let body = json!({"model": "claude-3-5-haiku-20241022", "max_tokens": 10,
        "tools": tools, "tool_choice": {"type": "none"},
        "messages": [{"role": "user", "content": "hi"}]});
    let v = anthropic(&sim, body.clone(), &[]).await.json();
    // tool ceil(16/4) + 3 = 7 written; message 1 + 3 and the reply's 3 plain.
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 7);
    assert_eq!(v["usage"]["input_tokens"], 7);
    let v = anthropic(&sim, body, &[]).await.json();
    assert_eq!(v["usage"]["cache_read_input_tokens"], 7);
}
