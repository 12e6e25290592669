//! Trust at the edge, against the real binary over HTTP: authentication that cannot fall open,
//! allow-lists that hold however a model is named, read endpoints that do not leak, browser
//! attacks refused, unknown keys that cost nothing, admin attempts limited, and money that cannot
//! be dodged (server row ids, cancelled requests billed, 402 only when spent, RPM per upstream
//! call).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_e2e::{Client, Running, binary, random_hex, repo_root};
use switchyard_store::{RequestLog, SpendStore, Store};

const ADMIN: &str = "admin-key-for-the-trust-tests-0123";

/// The demo in `keys` mode (an admin key is configured), with `overrides` merged over it.
fn keys_gateway(overrides: &str) -> Running {
    Running::builder()
        .env("SWITCHYARD_ADMIN_KEY", ADMIN)
        .demo_with(overrides)
}

/// The demo's fast models, so that money tests do not wait for realistic latencies.
const FAST_SIM: &str = r#"
[sim.models."gpt-4o-mini"]
ttft_ms = { mean = 20, stddev = 1 }
tpot_ms = { mean = 1, stddev = 0 }
"#;

/// The smallest config `switchyard check` accepts: one model.
const ONE_MODEL: &str = r#"
[providers.openai]
kind = "openai"
api_key = "sk-not-a-real-key-for-check"
[models."gpt-4o-mini"]
provider = "openai"
"#;

fn ask(model: &str, text: &str, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "messages": [{"role": "user", "content": text}],
    })
}

/// What the store's spend ledger holds for a key, every period.
async fn spent_by(store: &Store, key_id: &str) -> i64 {
    SpendStore::spend_history(store, key_id)
        .await
        .unwrap()
        .iter()
        .map(|(_, t)| t.cost_picousd)
        .sum()
}

/// Stop the process and open the store it wrote.
async fn stopped_store(mut gw: Running) -> (Store, Running) {
    let gw = tokio::task::spawn_blocking(move || {
        assert!(gw.terminate().success());
        gw
    })
    .await
    .unwrap();
    (Store::connect(gw.store_url()).await.unwrap(), gw)
}

// ---------------------------------------------------------------------------
// 1. Auth cannot turn itself off
// ---------------------------------------------------------------------------

#[tokio::test]
async fn keys_mode_refuses_without_a_key_before_any_exists_and_after_the_last_is_revoked() {
    let gw = keys_gateway("");
    let c = Client::new(&gw, ADMIN);
    let body = ask("gpt-4o-mini", "hello", 5);
    // No key exists yet: still 401, for no key and for a made-up one.
    for key in [None, Some("sk-sy-made-up")] {
        let (s, _, v) = c.chat(key, &body).await;
        assert_eq!(s, 401, "{key:?}: {v}");
        assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
    }
    assert_eq!(c.get("/ai/models", None).await.0, 401);
    let (id, key) = c.key(json!({"name": "only"})).await;
    assert_eq!(c.chat(Some(&key), &body).await.0, 200);
    let (s, _) = c
        .admin(reqwest::Method::DELETE, &format!("/admin/keys/{id}"), None)
        .await;
    assert_eq!(s, 200);
    // The last key is revoked: the gateway does not reopen.
    let (s, _, v) = c.chat(Some(&key), &body).await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("revoked"),
        "{v}"
    );
    assert_eq!(c.chat(None, &body).await.0, 401);
    assert_eq!(c.chat(Some("sk-sy-another"), &body).await.0, 401);
    // Public endpoints stay public.
    assert_eq!(c.get("/health", None).await.0, 200);
    assert_eq!(c.get("/openapi.json", None).await.0, 200);
}

#[test]
fn open_mode_on_a_network_address_refuses_to_start_and_check_states_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open.toml");
    std::fs::write(&open, "[auth]\nmode = \"open\"\n").unwrap();
    let out = std::process::Command::new(binary())
        .args(["demo", "--listen", "0.0.0.0:0", "--config"])
        .arg(&open)
        .env_remove("SWITCHYARD_ADMIN_KEY")
        .env("SWITCHYARD_STORE_URL", "none")
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "started open on 0.0.0.0: {text}");
    assert!(text.contains("allow_open_on_network"), "{text}");

    // A config that says open on a network address is an error `check` reports.
    let cfg = dir.path().join("net.toml");
    std::fs::write(
        &cfg,
        format!("[server]\nlisten = \"0.0.0.0:8080\"\n[auth]\nmode = \"open\"\n{ONE_MODEL}"),
    )
    .unwrap();
    let check = |path: &std::path::Path, admin: Option<&str>| {
        let mut cmd = std::process::Command::new(binary());
        cmd.args(["check", "--config"])
            .arg(path)
            .env_remove("SWITCHYARD_ADMIN_KEY");
        if let Some(a) = admin {
            cmd.env("SWITCHYARD_ADMIN_KEY", a);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = check(&cfg, None);
    assert!(!ok && text.contains("auth.mode"), "{text}");
    // Defaults: open on loopback with no admin key; keys with an admin key or on a network.
    let local = dir.path().join("local.toml");
    std::fs::write(&local, ONE_MODEL).unwrap();
    let (ok, text) = check(&local, None);
    assert!(ok && text.contains("auth: open"), "{text}");
    let (ok, text) = check(&local, Some(ADMIN));
    assert!(ok && text.contains("auth: keys"), "{text}");
    let net = dir.path().join("net-default.toml");
    std::fs::write(
        &net,
        format!("[server]\nlisten = \"0.0.0.0:8080\"\n{ONE_MODEL}"),
    )
    .unwrap();
    let (ok, text) = check(&net, None);
    assert!(ok && text.contains("auth: keys"), "{text}");
}

// ---------------------------------------------------------------------------
// 2. Allow-lists hold for every way of naming a model
// ---------------------------------------------------------------------------

#[tokio::test]
async fn allow_lists_hold_for_models_lists_batch_items_and_model_routes() {
    let gw = keys_gateway(FAST_SIM);
    let c = Client::new(&gw, ADMIN);
    let (_, cheap) = c
        .key(json!({"name": "cheap only", "routes": ["cheap"]}))
        .await;
    // `models` cannot reach past the route.
    let (s, _, v) = c
        .post(
            "/ai/route",
            Some(&cheap),
            &json!({"route": "cheap", "models": ["gpt-4o"], "prompt": "hi", "max_tokens": 5}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["param"], "models[0]");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'gpt-4o'"),
        "{v}"
    );
    // Nor can a batch item.
    let (s, _, v) = c
        .post(
            "/ai/route/batch",
            Some(&cheap),
            &json!({"requests": [
                {"route": "cheap", "prompt": "a", "max_tokens": 5},
                {"route": "cheap", "models": ["claude-sonnet-4-5"], "prompt": "b", "max_tokens": 5},
                {"route": "auto", "prompt": "c", "max_tokens": 5},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let r = &v["results"];
    assert_eq!(r[0]["status"], 200, "{v}");
    assert_eq!(r[1]["status"], 403, "{v}");
    assert!(
        r[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("claude-sonnet-4-5"),
        "{v}"
    );
    assert_eq!(r[2]["status"], 403, "{v}");

    let (_, mini) = c
        .key(json!({"name": "mini", "models": ["gpt-4o-mini"]}))
        .await;
    // A route that names a model outside the list.
    let (s, _, v) = c.chat(Some(&mini), &ask("gpt-4o", "hi", 5)).await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'gpt-4o'"),
        "{v}"
    );
    // A route with some allowed models keeps only those.
    let (s, h, v) = c
        .post(
            "/ai/route",
            Some(&mini),
            &json!({"route": "auto", "prompt": "hi", "max_tokens": 5}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(h["x-switchyard-model"], "gpt-4o-mini");
    let (s, _, v) = c
        .post(
            "/ai/route",
            Some(&mini),
            &json!({"models": ["gpt-4o-mini", "gpt-4o"], "prompt": "hi", "max_tokens": 5}),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["param"], "models[1]");
}

// ---------------------------------------------------------------------------
// 3. Read endpoints do not leak; /metrics can need a token
// ---------------------------------------------------------------------------

#[tokio::test]
async fn error_texts_are_shown_in_full_to_the_admin_only_and_metrics_can_need_a_token() {
    let token = format!("scrape-{}", random_hex(12));
    let gw = keys_gateway(&format!("{FAST_SIM}\n[metrics]\ntoken = \"{token}\"\n"));
    let c = Client::new(&gw, ADMIN);
    let sim = gw.sim_url();
    // Make the first upstream call fail, so that model's health holds an upstream error text.
    let resp = c
        .http
        .post(format!("{sim}/_sim/faults"))
        .json(&json!({"model": "*", "fault": "502", "count": 1}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let (_, key) = c.key(json!({"name": "tenant"})).await;
    let (s, _, v) = c
        .post(
            "/ai/route",
            Some(&key),
            &json!({"models": ["gpt-4o-mini", "gemini-2.0-flash"], "prompt": "hi", "max_tokens": 5}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let last_error = |body: &str| -> String {
        let v: Value = serde_json::from_str(body).unwrap();
        v["providers"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|p| p["models"].as_array().unwrap().iter())
            .find_map(|m| m["last_error"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let (s, admin_view) = c.get("/health/detailed", Some(ADMIN)).await;
    assert_eq!(s, 200);
    let full = last_error(&admin_view);
    let (s, tenant_view) = c.get("/health/detailed", Some(&key)).await;
    assert_eq!(s, 200);
    let summary = last_error(&tenant_view);
    assert!(!full.is_empty(), "the failure is recorded: {admin_view}");
    assert!(
        summary.ends_with("(the admin key sees the full text)"),
        "{summary}"
    );
    assert!(!summary.contains(':'), "{summary}");
    assert!(full.contains(':'), "the admin sees the whole text: {full}");
    let (_, models) = c.get("/ai/models", Some(&key)).await;
    assert!(
        !models.contains(&full),
        "/ai/models leaks the upstream text"
    );

    // /metrics: the token or the admin key.
    assert_eq!(c.get("/metrics", None).await.0, 401);
    assert_eq!(c.get("/metrics", Some(&key)).await.0, 401);
    assert_eq!(c.get("/metrics", Some(&token)).await.0, 200);
    assert_eq!(c.get("/metrics", Some(ADMIN)).await.0, 200);
}

// ---------------------------------------------------------------------------
// 4. Browser attacks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn browser_attacks_are_refused_json_only_known_hosts_and_allowed_origins() {
    let gw = Running::builder().demo_with(&format!(
        "{FAST_SIM}\n[server]\ncors_origins = [\"https://app.example\"]\n"
    ));
    let c = Client::new(&gw, ADMIN);
    let url = format!("{}/v1/chat/completions", c.base);
    let body = ask("gpt-4o-mini", "hi", 5).to_string();
    // A form post or a text/plain fetch (no preflight): 415.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = c.http.post(&url).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unsupported_media_type");
    }
    // DNS rebinding: a page whose name now points at 127.0.0.1.
    for path in ["/v1/chat/completions", "/ai/models", "/health/detailed"] {
        let resp = c
            .http
            .post(format!("{}{path}", c.base))
            .header("host", "evil.example:8080")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
    // Cross-origin from an origin not allowed: 403, even with a JSON body.
    let resp = c
        .http
        .post(&url)
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "origin_not_allowed");
    // An allowed origin: preflight answered, answer carries the CORS header.
    let resp = c
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let resp = c
        .http
        .post(&url)
        .header("origin", "https://app.example")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    // The refused requests still have their log rows (415 and 403), the 421s are not model calls.
    let (store, _gw) = stopped_store(gw).await;
    assert_eq!(RequestLog::count(&store).await.unwrap(), 3 + 1 + 1 + 1);
}

// ---------------------------------------------------------------------------
// 5 and 6. Unknown keys cost one lookup; admin attempts are limited
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_key_costs_one_store_lookup_and_open_mode_none() {
    let gw = keys_gateway(FAST_SIM);
    let c = Client::new(&gw, ADMIN);
    let body = ask("gpt-4o-mini", "hi", 5);
    let before = c.metric("switchyard_key_store_lookups_total").await;
    let unknown = format!("sk-sy-{}", random_hex(32));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (http, url, unknown, body) = (
                c.http.clone(),
                format!("{}/v1/chat/completions", c.base),
                unknown.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(unknown)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let after = c.metric("switchyard_key_store_lookups_total").await;
    assert_eq!(
        after - before,
        1.0,
        "40 requests with one unknown key: one lookup"
    );

    // Open mode (no admin key, loopback): an SDK's placeholder key is never looked up.
    let open = Running::builder().demo_with(FAST_SIM);
    let o = Client::new(&open, ADMIN);
    for i in 0..20 {
        let (s, _, v) = o.chat(Some(&format!("sk-placeholder-{i}")), &body).await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, text) = o.get("/metrics", None).await;
    assert!(
        text.lines()
            .any(|l| l == "switchyard_key_store_lookups_total 0"),
        "{text}"
    );
}

#[tokio::test]
async fn failed_admin_attempts_are_limited_and_logged_without_the_secret() {
    let gw = keys_gateway("");
    let c = Client::new(&gw, ADMIN);
    let wrong = format!("wrong-admin-{}", random_hex(16));
    for i in 0..10 {
        let resp = c
            .http
            .get(format!("{}/admin/keys", c.base))
            .bearer_auth(&wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Over the limit: refused before the key is compared, the right one included.
    for key in [wrong.as_str(), ADMIN] {
        let resp = c
            .http
            .get(format!("{}/admin/keys", c.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(resp.headers().contains_key("retry-after"));
    }
    let log = gw.log_lines().join("\n");
    assert!(log.contains("admin API: refused"), "{log}");
    assert!(!log.contains(&wrong), "the presented secret is in the log");
}

// ---------------------------------------------------------------------------
// 7. The row id is the server's
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_repeated_request_id_cannot_dodge_the_budget() {
    let gw = keys_gateway(FAST_SIM);
    let c = Client::new(&gw, ADMIN);
    let (id, key) = c
        .key(json!({"name": "small", "budget_usd": 0.00005, "budget_period": "total"}))
        .await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        let resp = c
            .http
            .post(format!("{}/v1/chat/completions", c.base))
            .bearer_auth(&key)
            .header("x-request-id", "same-id")
            .json(&ask("gpt-4o-mini", &format!("question {i}"), 20))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-request-id"], "same-id");
        let status = resp.status().as_u16();
        statuses.push(status);
        let body = resp.text().await.unwrap_or_default();
        if status != 200 && status != 402 {
            eprintln!("request {i}: {status} {body}");
        }
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(ok >= 1, "{statuses:?}");
    assert!(
        statuses[ok..].iter().all(|s| *s == 402),
        "402 from the budget on: {statuses:?}"
    );
    let (store, _gw) = stopped_store(gw).await;
    let rows = RequestLog::requests_by_client_id(&store, "same-id")
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        20,
        "one row per request, whatever the client's id"
    );
    let mut ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    let logged: i64 = rows.iter().map(|r| r.cost_picousd).sum();
    let spent = spent_by(&store, &id).await;
    assert_eq!(spent, logged, "the ledger holds what the rows say");
    assert!(spent >= 50_000_000, "spent up to the budget: {spent}");
}

// ---------------------------------------------------------------------------
// 9. Cancelled requests are billed and logged
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_that_leaves_mid_answer_is_billed_and_logged() {
    // gpt-4o answers after 1.5 s: the client gives up after 300 ms.
    let gw = keys_gateway(
        "[sim.models.\"gpt-4o\"]\nttft_ms = { mean = 1500, stddev = 1 }\n\
         [sim.models.\"gpt-4o-mini\"]\nttft_ms = { mean = 1500, stddev = 1 }\n",
    );
    let c = Client::new(&gw, ADMIN);
    let (id, key) = c.key(json!({"name": "leaver"})).await;
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = format!("{}/v1/chat/completions", c.base);
    let complete = quick
        .post(&url)
        .bearer_auth(&key)
        .header("x-request-id", "leaves-complete")
        .json(&ask("gpt-4o", "a long question", 50))
        .send()
        .await;
    assert!(complete.is_err(), "the client timed out");
    let mut streamed = ask("gpt-4o-mini", "a streamed question", 50);
    streamed["stream"] = json!(true);
    let primed = quick
        .post(&url)
        .bearer_auth(&key)
        .header("x-request-id", "leaves-stream")
        .json(&streamed)
        .send()
        .await;
    assert!(
        primed.is_err(),
        "the client timed out before the first byte"
    );
    // Let the gateway notice, then stop it: both rows and their spend are in the store.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (store, _gw) = stopped_store(gw).await;
    let mut total = 0;
    for client_id in ["leaves-complete", "leaves-stream"] {
        let rows = RequestLog::requests_by_client_id(&store, client_id)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{client_id}: {rows:?}");
        let r = &rows[0];
        assert_eq!(r.status, 499, "{r:?}");
        assert_eq!(r.error_code.as_deref(), Some("cancelled"), "{r:?}");
        assert!(r.cost_picousd > 0 && r.usage_estimated, "{r:?}");
        assert!(r.prompt_tokens > 0, "{r:?}");
        total += r.cost_picousd;
    }
    let spent = spent_by(&store, &id).await;
    assert_eq!(spent, total, "the key is charged what the rows say");
}

// ---------------------------------------------------------------------------
// 10. A reservation never refuses what the budget can pay
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_requests_at_concurrency_twelve_spend_the_budget_before_any_402() {
    // A long wait, so that a loaded test machine cannot turn a wait into a 429.
    let gw = keys_gateway(&format!("{FAST_SIM}\n[auth]\nbudget_wait_ms = 15000\n"));
    let c = Arc::new(Client::new(&gw, ADMIN));
    // What one answer costs (the same prompt, so the same usage each time).
    let body = ask("gpt-4o-mini", "what is the weather like", 200);
    let (_, probe) = c.key(json!({"name": "probe"})).await;
    let (s, h2, v) = c.chat(Some(&probe), &body).await;
    assert_eq!(s, 200, "{v}");
    let one: f64 = h2["x-switchyard-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let budget = one * 14.0;
    let (id, key) = c
        .key(json!({"name": "fourteen", "budget_usd": budget, "budget_period": "total"}))
        .await;
    let results: Vec<(u16, Value)> = futures::stream::iter(0..60)
        .map(|_| {
            let (c, key, body) = (c.clone(), key.clone(), body.clone());
            async move {
                let (s, _, v) = c.chat(Some(&key), &body).await;
                (s, v)
            }
        })
        .buffer_unordered(12)
        .collect()
        .await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 402)
        .map(|(_, v)| v)
        .collect();
    let other: Vec<&(u16, Value)> = results
        .iter()
        .filter(|(s, _)| *s != 200 && *s != 402)
        .collect();
    let (_, spend) = c
        .admin(
            reqwest::Method::GET,
            &format!("/admin/keys/{id}/spend"),
            None,
        )
        .await;
    let spent = spend["spent_usd"].as_f64().unwrap();
    eprintln!(
        "budget ${budget:.8} (14 answers): admitted {ok}, 402 {}, other {}, spent ${spent:.8} \
         ({:.0}% of the budget)",
        refused.len(),
        other.len(),
        spent / budget * 100.0
    );
    assert!((13..=15).contains(&ok), "about 14 admitted, not {ok}");
    assert!(
        spent >= budget - one * 1.01,
        "the budget was spent: {spent} of {budget}"
    );
    for v in &refused {
        let m = v["error"]["message"].as_str().unwrap();
        assert!(
            m.contains("has spent its budget"),
            "a 402 before the budget was spent: {m}"
        );
    }
    for (s, v) in &other {
        assert_eq!(*s, 429, "{v}");
    }
}

// ---------------------------------------------------------------------------
// 11. Rate limits count upstream calls
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_batch_counts_each_item_against_the_keys_rpm() {
    let gw = keys_gateway(FAST_SIM);
    let c = Client::new(&gw, ADMIN);
    let (_, key) = c.key(json!({"name": "five a minute", "rpm": 5})).await;
    let items: Vec<Value> = (0..8)
        .map(|i| json!({"models": ["gpt-4o-mini"], "prompt": format!("item {i}"), "max_tokens": 5, "temperature": 0.5}))
        .collect();
    let (s, _, v) = c
        .post(
            "/ai/route/batch",
            Some(&key),
            &json!({"requests": items, "concurrency": 1}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["succeeded"], 5, "{v}");
    let limited: Vec<&Value> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == 429)
        .collect();
    assert_eq!(limited.len(), 3, "{v}");
    // The window is full: the next request is refused at admission.
    let (s, h, _) = c.chat(Some(&key), &ask("gpt-4o-mini", "one more", 5)).await;
    assert_eq!(s, 429);
    assert!(h.contains_key("retry-after"));
}

// ---------------------------------------------------------------------------
// 9. A timed-out attempt the provider may have billed is charged
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_timed_out_attempt_is_charged_before_the_fallback_answers() {
    let gw = keys_gateway(&format!(
        "{FAST_SIM}\n[routes.impatient]\nmodels = [\"gpt-4o-mini\", \"gemini-2.0-flash\"]\n\
         optimize = \"cost\"\nattempt_ms = 300\n"
    ));
    let c = Client::new(&gw, ADMIN);
    let (id, key) = c.key(json!({"name": "pays for timeouts"})).await;
    // The first upstream call never answers.
    let resp = c
        .http
        .post(format!("{}/_sim/faults", gw.sim_url()))
        .json(&json!({"model": "*", "fault": "hang", "count": 1}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let resp = c
        .http
        .post(format!("{}/ai/route", c.base))
        .bearer_auth(&key)
        .header("x-request-id", "times-out-once")
        .json(&json!({"route": "impatient", "prompt": "a question worth asking", "max_tokens": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-switchyard-attempts"], "2");
    let answer_cost: f64 = resp.headers()["x-switchyard-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (store, _gw) = stopped_store(gw).await;
    let rows = RequestLog::requests_by_client_id(&store, "times-out-once")
        .await
        .unwrap();
    let row = &rows[0];
    assert_eq!(row.attempts[0].outcome, "timeout", "{row:?}");
    assert!(row.usage_estimated, "{row:?}");
    let answer_pico = (answer_cost * 1e12).round() as i64;
    assert!(
        row.cost_picousd > answer_pico,
        "the timed-out attempt's prompt is charged on top of the answer: {} vs {answer_pico}",
        row.cost_picousd
    );
    let spent = spent_by(&store, &id).await;
    assert_eq!(spent, row.cost_picousd);
}
