//! Secrets are never logged or returned: the admin key, the provider key, virtual key secrets
//! and their SHA-256 digests appear in no response and in no log line (at `RUST_LOG=debug`),
//! across a full spread of calls — except a virtual key's secret, once, in the response that
//! created it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchyard_e2e::{Running, random_hex, repo_root};

/// One request and what came back, as text to scan.
struct Exchange {
    label: String,
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: String,
}

impl Exchange {
    fn text(&self) -> String {
        let mut s = format!("{} -> {}\n", self.label, self.status);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push('\n');
        s.push_str(&self.body);
        s
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", self.label, self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    seen: Vec<Exchange>,
}

impl Client {
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> &Exchange {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(body) = &body {
            req = req.json(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned();
        // The label is what the test did, not the credential it used.
        let who = match bearer {
            None => "no key",
            Some(_) => "a key",
        };
        self.seen.push(Exchange {
            label: format!("{method} {path} ({who})"),
            status,
            headers,
            body,
        });
        self.seen.last().unwrap()
    }

    async fn expect(
        &mut self,
        want: u16,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> &Exchange {
        let ex = self.call(method, path, bearer, body).await;
        assert_eq!(ex.status.as_u16(), want, "{}", ex.text());
        ex
    }
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The provider keys the demo config gives its providers: `$SWITCHYARD_SIM_KEY` (set here)
/// where the config reads it, else the literal value it has.
fn provider_secrets(sim_key: &str) -> Vec<String> {
    let demo = std::fs::read_to_string(repo_root().join("router/data/demo.toml")).unwrap();
    let mut out: Vec<String> = demo
        .lines()
        .filter_map(|l| {
            let v = l.trim().strip_prefix("api_key")?.trim().strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_owned())
        })
        .map(|v| {
            if v.contains("SWITCHYARD_SIM_KEY") {
                sim_key.to_owned()
            } else {
                v
            }
        })
        .collect();
    out.sort();
    out.dedup();
    assert!(!out.is_empty(), "no provider api_key in demo.toml");
    out
}

fn chat(model: &str, content: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 8,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

fn occurrences(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_never_logged_or_returned() {
    let admin_key = random_hex(16); // 32 characters
    let sim_key = format!("sk-provider-{}", random_hex(12));
    let mut gw = Running::builder()
        .env("RUST_LOG", "debug")
        .env("SWITCHYARD_ADMIN_KEY", &admin_key)
        .env("SWITCHYARD_SIM_KEY", &sim_key)
        .demo();
    let mut c = Client {
        http: reqwest::Client::new(),
        base: gw.base_url.clone(),
        seen: Vec::new(),
    };
    let admin = Some(admin_key.as_str());
    let post = Method::POST;
    let get = Method::GET;

    // Two virtual keys: one without limits, one with a budget of a nano-dollar and 2 RPM.
    let created = c
        .expect(
            201,
            post.clone(),
            "/admin/keys",
            admin,
            Some(json!({"name": "main"})),
        )
        .await
        .json();
    let (main_key, main_id) = (
        created["key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    let main_created_at = c.seen.len() - 1;
    let created = c
        .expect(
            201,
            post.clone(),
            "/admin/keys",
            admin,
            Some(json!({"name": "tiny", "budget_usd": 1e-9, "budget_period": "total", "rpm": 2})),
        )
        .await
        .json();
    let (tiny_key, tiny_id) = (
        created["key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    );
    let tiny_created_at = c.seen.len() - 1;
    assert!(main_key.starts_with("sk-sy-") && tiny_key.starts_with("sk-sy-"));
    let main = Some(main_key.as_str());
    let tiny = Some(tiny_key.as_str());
    let chat_path = "/v1/chat/completions";

    // Answers: complete, cached, streamed.
    let det = chat("gpt-4o-mini", "Say hello.", json!({"temperature": 0}));
    let first = c
        .expect(200, post.clone(), chat_path, main, Some(det.clone()))
        .await;
    assert_eq!(first.header("x-switchyard-cache"), Some("miss"));
    let again = c
        .expect(200, post.clone(), chat_path, main, Some(det))
        .await;
    assert_eq!(again.header("x-switchyard-cache"), Some("hit"));
    let streamed = c
        .expect(
            200,
            post.clone(),
            chat_path,
            main,
            Some(chat(
                "claude-3-5-haiku",
                "Stream it.",
                json!({"stream": true, "stream_options": {"include_usage": true}}),
            )),
        )
        .await;
    assert!(
        streamed.body.contains("data: [DONE]"),
        "{}",
        streamed.text()
    );
    c.expect(
        200,
        post.clone(),
        "/ai/route",
        main,
        Some(json!({"route": "fast", "prompt": "Route me.", "max_tokens": 8})),
    )
    .await;
    // Refusals: a bad body, a wrong key, the admin and provider keys where a virtual key belongs.
    c.expect(
        400,
        post.clone(),
        chat_path,
        main,
        Some(json!({"model": "gpt-4o-mini", "messages": "nope"})),
    )
    .await;
    let wrong = format!("sk-sy-{}", random_hex(32));
    for bad in [wrong.as_str(), admin_key.as_str(), sim_key.as_str()] {
        c.expect(
            401,
            post.clone(),
            chat_path,
            Some(bad),
            Some(chat("gpt-4o-mini", "hi", json!({}))),
        )
        .await;
    }
    c.expect(401, get.clone(), "/ai/models", Some(wrong.as_str()), None)
        .await;
    c.expect(401, get.clone(), "/admin/keys", main, None).await;
    c.expect(401, get.clone(), "/admin/keys", Some(wrong.as_str()), None)
        .await;
    // The tiny key: one answer, then over budget (402). RPM counts upstream calls, and refused
    // requests make none: over budget stays 402.
    let body = chat("gpt-4o-mini", "Spend.", json!({"temperature": 0.5}));
    c.expect(200, post.clone(), chat_path, tiny, Some(body.clone()))
        .await;
    c.expect(402, post.clone(), chat_path, tiny, Some(body.clone()))
        .await;
    c.expect(402, post.clone(), chat_path, tiny, Some(body.clone()))
        .await;
    // Read views and the admin API.
    c.expect(200, get.clone(), "/metrics", None, None).await;
    c.expect(200, get.clone(), "/openapi.json", None, None)
        .await;
    c.expect(200, get.clone(), "/health", None, None).await;
    for path in [
        "/ai/performance",
        "/ai/models",
        "/health/detailed",
        "/v1/models",
        "/ai/cache/stats",
        "/ai/policies",
    ] {
        c.expect(200, get.clone(), path, main, None).await;
    }
    let listing = c
        .expect(200, get.clone(), "/admin/keys", admin, None)
        .await
        .json();
    assert_eq!(
        listing["keys"].as_array().map(Vec::len),
        Some(2),
        "{listing}"
    );
    for id in [&main_id, &tiny_id] {
        c.expect(200, get.clone(), &format!("/admin/keys/{id}"), admin, None)
            .await;
        c.expect(
            200,
            get.clone(),
            &format!("/admin/keys/{id}/spend"),
            admin,
            None,
        )
        .await;
    }
    // Revoked: refused.
    c.expect(
        200,
        Method::DELETE,
        &format!("/admin/keys/{tiny_id}"),
        admin,
        None,
    )
    .await;
    c.expect(401, post.clone(), chat_path, tiny, Some(body))
        .await;
    c.expect(
        200,
        get.clone(),
        &format!("/admin/keys/{tiny_id}"),
        admin,
        None,
    )
    .await;
    c.expect(200, Method::DELETE, "/ai/cache", admin, None)
        .await;
    c.expect(200, get.clone(), "/metrics", None, None).await;

    let status = tokio::task::spawn_blocking(move || {
        let s = gw.terminate();
        (s, gw)
    })
    .await
    .unwrap();
    let (status, gw) = status;
    assert!(status.success(), "{status}");
    let log = gw.log_lines().join("\n");
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "RUST_LOG=debug took effect (some DEBUG lines to scan)"
    );
    assert!(gw.log_event("request log flushed").is_some());

    // What must never appear, and what may appear in exactly one response.
    let mut secrets: Vec<(String, String)> = vec![
        ("the admin key".to_owned(), admin_key.clone()),
        ("the main key".to_owned(), main_key.clone()),
        ("the tiny key".to_owned(), tiny_key.clone()),
    ];
    for (i, p) in provider_secrets(&sim_key).into_iter().enumerate() {
        secrets.push((format!("provider key #{i}"), p));
    }
    let mut digests = Vec::new();
    for (name, s) in &secrets {
        digests.push((format!("SHA-256 of {name}"), sha256_hex(s)));
    }
    let responses: Vec<String> = c.seen.iter().map(Exchange::text).collect();
    let mut failures = Vec::new();
    let needles = secrets
        .iter()
        .map(|(n, s)| (n, s, false))
        .chain(digests.iter().map(|(n, s)| (n, s, true)));
    for (name, needle, digest) in needles {
        // Digests are searched case-insensitively (hex may be printed in upper case).
        let count = |hay: &str| {
            if digest {
                occurrences(&hay.to_ascii_lowercase(), needle)
            } else {
                occurrences(hay, needle)
            }
        };
        let in_log = count(&log);
        if in_log > 0 {
            failures.push(format!("{name} appears {in_log}× in the log"));
        }
        for (i, r) in responses.iter().enumerate() {
            let n = count(r);
            let allowed = match name.as_str() {
                "the main key" if i == main_created_at => 1,
                "the tiny key" if i == tiny_created_at => 1,
                _ => 0,
            };
            if n != allowed {
                failures.push(format!(
                    "{name} appears {n}× (allowed {allowed}) in response {}",
                    c.seen[i].label
                ));
            }
        }
    }
    // The store keeps digests only, never a secret.
    let mut db_bytes = 0;
    if let Some(db) = gw.db_path() {
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", db.display());
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            db_bytes += bytes.len();
            for (name, needle) in &secrets {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    failures.push(format!("{name} is stored in {path}"));
                }
            }
        }
    }
    let response_bytes: usize = responses.iter().map(String::len).sum();
    eprintln!(
        "scanned {} log lines ({} bytes), {} responses ({response_bytes} bytes), {db_bytes} \
         store bytes for {} secrets and {} digests",
        gw.log_lines().len(),
        log.len(),
        responses.len(),
        secrets.len(),
        digests.len(),
    );
    assert!(
        failures.is_empty(),
        "secrets leaked:\n{}",
        failures.join("\n")
    );
}
