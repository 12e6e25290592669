//! What the store keeps survives a restart: per-model history (`/ai/performance`,
//! `/ai/models`), virtual keys and their spend — while the live windows start empty.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_e2e::{Running, random_hex, sqlite_url};

const MODEL: &str = "gpt-4o-mini";
const REQUESTS: usize = 10;

async fn get_json(http: &reqwest::Client, url: String, bearer: &str) -> Value {
    let resp = http.get(&url).bearer_auth(bearer).send().await.unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert!(status.is_success(), "GET {url}: {status} {body}");
    serde_json::from_str(&body).unwrap()
}

/// The key's spend, once no request of it holds a reservation (every answer settled).
async fn settled_spend(http: &reqwest::Client, gw: &Running, admin: &str, id: &str) -> Value {
    let url = format!("{}/admin/keys/{id}/spend", gw.base_url);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = get_json(http, url.clone(), admin).await;
        if v["reserved_usd"].as_f64() == Some(0.0) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn terminate(mut gw: Running) -> Running {
    let status = gw.terminate();
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        gw.log_lines().join("\n")
    );
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keys_and_spend_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("demo.db"));
    let admin = random_hex(16);
    let http = reqwest::Client::new();

    // First life: a key, ten answers from one model (two of them streamed), billed to the key.
    let first = Running::builder()
        .env("SWITCHYARD_ADMIN_KEY", &admin)
        .store_url(&url)
        .demo();
    let (key, key_id) = first.create_key(&http, &admin, "survivor").await;
    for n in 0..REQUESTS {
        let stream = n % 5 == 4;
        let mut body = json!({
            "model": MODEL,
            "messages": [{"role": "user", "content": format!("Count to {n}.")}],
            "temperature": 0.7,
            "max_tokens": 12,
        });
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        let resp = http
            .post(format!("{}/v1/chat/completions", first.base_url))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
    }
    let before = settled_spend(&http, &first, &admin, &key_id).await;
    let spent_before = before["spent_picousd"].as_i64().unwrap();
    assert!(spent_before > 0, "{before}");
    let first = tokio::task::spawn_blocking(move || terminate(first))
        .await
        .unwrap();
    let flushed = first.log_event("request log flushed").unwrap();
    assert_eq!(flushed["written"], json!(REQUESTS), "{flushed}");
    assert_eq!(flushed["dropped"], json!(0), "{flushed}");

    // Second life on the same store.
    let second = Running::builder()
        .env("SWITCHYARD_ADMIN_KEY", &admin)
        .store_url(&url)
        .demo();
    assert_eq!(second.store_url(), first.store_url());

    let perf = get_json(&http, format!("{}/ai/performance", second.base_url), &key).await;
    let m = &perf["models"][MODEL];
    assert_eq!(m["requests"], json!(0), "the live window starts empty: {m}");
    let h = &m["history"];
    assert!(h["requests"].as_i64().unwrap() >= REQUESTS as i64, "{h}");
    assert_eq!(h["requests"], json!(REQUESTS), "{h}");
    assert_eq!(h["errors"], json!(0), "{h}");
    assert!(h["cost_usd"].as_f64().unwrap() > 0.0, "{h}");
    assert!(h["prompt_tokens"].as_i64().unwrap() > 0, "{h}");
    assert!(h["completion_tokens"].as_i64().unwrap() > 0, "{h}");
    assert!(h["avg_latency_ms"].as_f64().unwrap() > 0.0, "{h}");
    assert!(
        h["avg_ttft_ms"].as_f64().is_some(),
        "streams have a TTFT: {h}"
    );
    // No other model answered.
    for (model, v) in perf["models"].as_object().unwrap() {
        if model != MODEL {
            assert!(v["history"].is_null(), "{model}: {v}");
        }
    }

    let models = get_json(&http, format!("{}/ai/models", second.base_url), &key).await;
    let entry = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == MODEL)
        .unwrap_or_else(|| panic!("{MODEL} missing: {models}"));
    assert_eq!(entry["history"], *h, "/ai/models and /ai/performance agree");

    // The key still exists, still authenticates, and its spend is what it was, exactly.
    let after = settled_spend(&http, &second, &admin, &key_id).await;
    assert_eq!(
        after["spent_picousd"].as_i64(),
        Some(spent_before),
        "{after}"
    );
    assert_eq!(after["spent_usd"], before["spent_usd"], "{after}");
    let past = &after["history"][0];
    assert_eq!(
        past["spent_picousd"].as_i64(),
        Some(spent_before),
        "{after}"
    );
    assert_eq!(past["requests"], json!(REQUESTS), "{after}");
    let resp = http
        .post(format!("{}/v1/chat/completions", second.base_url))
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "auth is still on: the key was loaded");
    let resp = http
        .post(format!("{}/v1/chat/completions", second.base_url))
        .bearer_auth(&key)
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    drop(first);
}
