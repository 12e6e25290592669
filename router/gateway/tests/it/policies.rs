//! WASM routing policies end to end through the gateway on the simulator: the shipped policies
//! really trim, redact, veto and reorder; a hostile policy cannot hang the gateway; a policy
//! folder swapped under load (also to a broken module) never fails a request.
//!
//! The shipped policies must be built first (`policies/build.sh`; `.ci/run` does it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{Setup, post_json, send, setup_with};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use switchyard::config::{RouteConfig, Weights};
use switchyard_types::ids::ModelId;

const TEMPLATE: &str = include_str!("../../../../plugins/host/tests/fixtures/policy-template.wat");

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../policies")
        .join(name)
}

/// Copies a shipped policy folder (manifest, module, test cases) into `into`.
fn install(name: &str, into: &Path) {
    let from = shipped(name);
    let to = into.join(name);
    std::fs::create_dir_all(to.join("tests")).unwrap();
    let manifest = std::fs::read_to_string(from.join("policy.toml")).unwrap();
    let wasm = manifest
        .lines()
        .find_map(|l| l.strip_prefix("wasm = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_owned();
    assert!(
        from.join(&wasm).is_file(),
        "{}/{wasm} is missing: build the policies first (bash policies/build.sh)",
        from.display()
    );
    // These tests are about what policies do; on a loaded debug build a 5-10 ms deadline can
    // pass, and a fail-closed policy would then refuse the request. Timing is benchmarked.
    let manifest = manifest
        .lines()
        .map(|l| {
            if l.starts_with("timeout_ms") {
                "timeout_ms = 50"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(to.join("policy.toml"), &manifest).unwrap();
    std::fs::copy(from.join(&wasm), to.join(&wasm)).unwrap();
    for f in std::fs::read_dir(from.join("tests")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join("tests").join(f.file_name())).unwrap();
    }
}

/// A route whose candidates all tie (reliability only, no history), so they stay in the listed
/// order unless a policy changes it.
fn ordered(name: &str, models: &[&str]) -> RouteConfig {
    let mut r = RouteConfig::default_over(models.iter().map(|m| ModelId::new(*m)).collect());
    r.name = name.to_owned();
    r.optimize = None;
    r.weights = Weights {
        cost: 0.0,
        latency: 0.0,
        reliability: 1.0,
        quality: 0.0,
    };
    r
}

struct Policies {
    setup: Setup,
    dir: tempfile::TempDir,
}

async fn with_policies(
    names: &[&str],
    edit: impl FnOnce(&mut switchyard::config::Config),
) -> Policies {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        install(n, dir.path());
    }
    let path = dir.path().to_path_buf();
    let setup = setup_with(|cfg| {
        cfg.policies.dir = Some(path.clone());
        cfg.policies.cache_dir = Some(path.join(".cache"));
        cfg.policies.watch = false;
        edit(cfg);
    })
    .await;
    Policies { setup, dir }
}

fn runs(v: &Value) -> Vec<Value> {
    v["routing"]["policies"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn run_of<'a>(runs: &'a [Value], policy: &str) -> &'a Value {
    runs.iter()
        .find(|r| {
            r["policy"]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!("{policy}@"))
        })
        .unwrap_or_else(|| panic!("{policy} did not run: {runs:?}"))
}

fn sim_bodies(p: &Policies) -> Vec<String> {
    p.setup
        .sim
        .sim
        .recent_requests()
        .into_iter()
        .map(|r| r.body)
        .collect()
}

fn paragraph(turn: usize) -> String {
    let words: Vec<String> = (0..80).map(|w| format!("word{turn}x{w}")).collect();
    format!("turn-{turn} {}", words.join(" "))
}

#[tokio::test]
async fn context_budget_trims_the_oldest_turns_before_the_upstream_sees_them() {
    let p = with_policies(&["context-budget"], |cfg| {
        cfg.routes.get_mut("auto").unwrap().token_budget = Some(600);
    })
    .await;
    let mut messages = vec![json!({"role": "system", "content": "SYSTEM-PROMPT be terse"})];
    for t in 0..10 {
        messages.push(json!({"role": "user", "content": paragraph(t)}));
        messages.push(json!({"role": "assistant", "content": format!("answer-{t}")}));
    }
    messages.push(json!({"role": "user", "content": "turn-final What now?"}));
    let (status, v) = post_json(
        &p.setup.gw,
        "/ai/route",
        json!({"messages": messages, "max_tokens": 50}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let runs = runs(&v);
    let run = run_of(&runs, "context-budget");
    assert_eq!(run["outcome"], "applied", "{run}");
    assert!(run["edits"].as_u64().unwrap() > 0, "{run}");
    let chosen = &v["routing"]["candidates"][0];
    assert!(
        chosen["prompt_tokens"].as_u64().unwrap() <= 700,
        "the prompt was trimmed to about the budget: {chosen}"
    );
    // What reached the simulator: system prompt and the last turns, not the first ones.
    let body = sim_bodies(&p).pop().unwrap();
    assert!(body.contains("SYSTEM-PROMPT"), "system prompt kept");
    assert!(body.contains("turn-final"), "last turn kept");
    assert!(
        !body.contains("turn-0 "),
        "oldest turn dropped: {body:.300}"
    );
}

#[tokio::test]
async fn pii_redact_redacts_what_reaches_the_upstream() {
    let p = with_policies(&["pii-redact"], |_| {}).await;
    let text = "Mail jane.doe@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111, \
                IBAN GB82 WEST 1234 5698 7654 32. Order 12345.";
    let (status, v) = post_json(
        &p.setup.gw,
        "/v1/chat/completions",
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let bodies = sim_bodies(&p);
    let body = bodies.last().unwrap();
    for secret in [
        "jane.doe@example.com",
        "7946 0958",
        "4111 1111",
        "GB82 WEST",
    ] {
        assert!(
            bodies.iter().all(|b| !b.contains(secret)),
            "{secret} reached the upstream"
        );
    }
    for mark in ["[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]"] {
        assert!(body.contains(mark), "{mark} missing in {body}");
    }
    assert!(body.contains("Order 12345"), "a plain number is left alone");
}

/// A latency-only route over gpt-4o and gpt-4o-mini where gpt-4o leads: gpt-4o-mini has been
/// seen answering slowly.
fn gpt4o_first(cfg: &mut switchyard::config::Config, budget: Option<f64>) {
    let mut r = ordered("capped", &["gpt-4o", "gpt-4o-mini"]);
    r.weights = Weights {
        cost: 0.0,
        latency: 1.0,
        reliability: 0.0,
        quality: 0.0,
    };
    r.cost_budget_usd = budget;
    cfg.routes.insert("capped".into(), r);
}

fn observe(gw: &switchyard::Gateway, model: &str, ttft_ms: u64) {
    let h = gw.health.get(model).unwrap();
    for _ in 0..5 {
        let d = Duration::from_millis(ttft_ms);
        h.record_success(tokio::time::Instant::now(), d, d, 16);
    }
}

#[tokio::test]
async fn cost_cap_vetoes_the_model_over_budget() {
    let p = with_policies(&["cost-cap"], |cfg| gpt4o_first(cfg, Some(0.0005))).await;
    observe(&p.setup.gw, "gpt-4o", 50);
    observe(&p.setup.gw, "gpt-4o-mini", 5_000);
    let (status, v) = post_json(
        &p.setup.gw,
        "/ai/route",
        json!({"route": "capped", "prompt": "Say hi", "max_tokens": 500}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model"], "gpt-4o-mini", "{v}");
    let vetoed = v["routing"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["model"] == "gpt-4o")
        .unwrap()
        .clone();
    assert_eq!(vetoed["filter"], "policy", "{vetoed}");
    // Without the cap, the same route and history choose gpt-4o.
    let p2 = with_policies(&[], |cfg| gpt4o_first(cfg, None)).await;
    observe(&p2.setup.gw, "gpt-4o", 50);
    observe(&p2.setup.gw, "gpt-4o-mini", 5_000);
    let (_, v2) = post_json(
        &p2.setup.gw,
        "/ai/route",
        json!({"route": "capped", "prompt": "Say hi", "max_tokens": 500}),
    )
    .await;
    assert_eq!(v2["model"], "gpt-4o", "{v2}");
}

#[tokio::test]
async fn prefer_local_sends_sensitive_requests_to_the_local_model() {
    let p = with_policies(&["prefer-local"], |cfg| {
        cfg.routes.insert(
            "mixed".into(),
            ordered("mixed", &["gpt-4o-mini", "claude-3-5-haiku", "llama3.2"]),
        );
    })
    .await;
    let req = Request::post("/ai/route")
        .header("content-type", "application/json")
        .header("x-switchyard-sensitive", "true")
        .body(Body::from(
            json!({"route": "mixed", "prompt": "Our Q3 numbers, privately: ..."}).to_string(),
        ))
        .unwrap();
    let (status, _, bytes) = send(&p.setup.gw, req).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["model"], "llama3.2", "{v}");
    assert_eq!(run_of(&runs(&v), "prefer-local")["outcome"], "applied");
}

#[tokio::test]
async fn all_four_policies_run_on_one_request_in_order() {
    let p = with_policies(
        &["pii-redact", "context-budget", "cost-cap", "prefer-local"],
        |_| {},
    )
    .await;
    let (status, v) = post_json(
        &p.setup.gw,
        "/ai/route",
        json!({"prompt": "Hello from bob@example.org", "max_tokens": 40}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let names: Vec<String> = runs(&v)
        .iter()
        .map(|r| {
            r["policy"]
                .as_str()
                .unwrap()
                .split('@')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        ["pii-redact", "context-budget", "cost-cap", "prefer-local"]
    );
    let (_, listing) = common::get_json(&p.setup.gw, "/ai/policies").await;
    let statuses: Vec<&str> = listing["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["active"; 4], "{listing}");
    for s in listing["policies"].as_array().unwrap() {
        assert_eq!(s["evaluations"], 1, "{s}");
        assert_eq!(s["sha256"].as_str().unwrap().len(), 64);
        assert!(s["p50_us"].as_u64().is_some());
    }
}

/// Writes a WAT policy (from the hostile corpus template) for route `hostile`.
fn hostile(dir: &Path, name: &str, body: &str, failure_mode: &str) {
    hostile_with(dir, name, body, failure_mode, "");
}

/// As [`hostile`], with more `[limits]` lines.
fn hostile_with(dir: &Path, name: &str, body: &str, failure_mode: &str, limits: &str) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let wat = TEMPLATE
        .replace("{{IMPORTS}}", "")
        .replace("{{CORE_IMPORTS}}", "")
        .replace("{{CORE_WITH}}", "")
        .replace("{{BODY}}", body);
    std::fs::write(d.join("p.wat"), wat).unwrap();
    let timeout = if limits.contains("timeout_ms") {
        ""
    } else {
        "timeout_ms = 5"
    };
    std::fs::write(
        d.join("policy.toml"),
        format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\nabi = \"switchyard:policy@0.1.0\"\n\
             wasm = \"p.wat\"\nfailure_mode = \"{failure_mode}\"\nroutes = [\"hostile\"]\n\
             [limits]\n{timeout}\n{limits}\n"
        ),
    )
    .unwrap();
}

/// A gateway over the policy folder `dir` (not watched) with the route `hostile` over
/// gpt-4o-mini.
async fn gateway_over(dir: &Path) -> Setup {
    let path = dir.to_path_buf();
    setup_with(|cfg| {
        cfg.policies.dir = Some(path.clone());
        cfg.policies.cache_dir = Some(path.join(".cache"));
        cfg.policies.watch = false;
        cfg.routes
            .insert("hostile".into(), ordered("hostile", &["gpt-4o-mini"]));
    })
    .await
}

fn listing_of(listing: &Value, name: &str) -> Value {
    listing["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {listing}"))
        .clone()
}

/// A gateway whose route `hostile` (over gpt-4o-mini) runs one WAT policy with this body.
async fn hostile_gateway(name: &str, body: &str, failure_mode: &str) -> (Setup, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    hostile(dir.path(), name, body, failure_mode);
    let path = dir.path().to_path_buf();
    let setup = setup_with(|cfg| {
        cfg.policies.dir = Some(path.clone());
        cfg.policies.cache_dir = Some(path.join(".cache"));
        cfg.policies.watch = false;
        cfg.routes
            .insert("hostile".into(), ordered("hostile", &["gpt-4o-mini"]));
    })
    .await;
    (setup, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_policy_cannot_hang_the_gateway() {
    let (setup, _dir) = hostile_gateway("spin", "(loop $l (br $l)) (i32.const 16)", "open").await;
    let gw = setup.gw.clone();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let route = if i % 2 == 0 { "hostile" } else { "auto" };
            let started = std::time::Instant::now();
            let (status, v) =
                post_json(&gw, "/ai/route", json!({"route": route, "prompt": "hi"})).await;
            (route, status, v, started.elapsed())
        }));
    }
    for t in tasks {
        let (route, status, v, took) = t.await.unwrap();
        // Fail-open: the request is served without the policy, and says so.
        assert_eq!(status, StatusCode::OK, "{route}: {v}");
        assert!(took < Duration::from_secs(5), "{route} took {took:?}");
        if route == "hostile" {
            let run = &runs(&v)[0];
            assert_eq!(run["outcome"], "bypassed", "{run}");
            let err = run["error"].as_str().unwrap();
            assert!(
                err.contains("timed out") || err.contains("breaker"),
                "{err}"
            );
        } else {
            assert!(runs(&v).is_empty(), "no policy on auto");
        }
    }
    let (_, listing) = common::get_json(&gw, "/ai/policies").await;
    let spin = &listing["policies"][0];
    assert_eq!(spin["breaker"], "open", "{spin}");
}

#[tokio::test]
async fn a_fail_closed_policy_that_traps_refuses_the_request() {
    let (setup, _dir) = hostile_gateway("guard", "unreachable", "closed").await;
    let before = setup.sim.sim.stats().total().requests;
    let (status, v) = post_json(
        &setup.gw,
        "/ai/route",
        json!({"route": "hostile", "prompt": "hi"}),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "policy_error", "{v}");
    assert_eq!(
        setup.sim.sim.stats().total().requests,
        before,
        "nothing was sent upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_policies_under_load_never_fails_a_request() {
    const ADMIN: &str = "policy-admin-key-0123456789";
    let p = with_policies(&["context-budget"], |c| {
        c.auth.admin_key = Some(switchyard_types::ids::Secret::new(ADMIN));
    })
    .await;
    let gw = p.setup.gw.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let gw = gw.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, v) =
                    post_json(&gw, "/ai/route", json!({"prompt": "hi", "max_tokens": 8})).await;
                assert_eq!(status, StatusCode::OK, "{v}");
                n += 1;
            }
            n
        }));
    }
    let reload = |gw: Arc<switchyard::Gateway>| async move {
        // Reloading is an admin operation.
        let req = Request::post("/ai/policies/reload")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Body::empty())
            .unwrap();
        let (status, _, bytes) = send(&gw, req).await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    let cb = p.dir.path().join("context-budget");
    let wasm_name = std::fs::read_dir(&cb)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".wasm"))
        .unwrap();
    let good = std::fs::read(cb.join(&wasm_name)).unwrap();
    // 1. Add two more policies.
    install("cost-cap", p.dir.path());
    install("prefer-local", p.dir.path());
    let r = reload(gw.clone()).await;
    assert_eq!(r["loaded"].as_array().unwrap().len(), 2, "{r}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 2. Break one: the old version keeps serving and the error is reported.
    std::fs::write(cb.join(&wasm_name), b"\0asm not really").unwrap();
    let r = reload(gw.clone()).await;
    assert_eq!(
        r["failed"][0]["kept"].as_str().unwrap().split('@').next(),
        Some("context-budget"),
        "{r}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, listing) = common::get_json(&gw, "/ai/policies").await;
    let entry = listing["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "context-budget")
        .unwrap()
        .clone();
    assert_eq!(entry["status"], "stale", "{entry}");
    assert!(
        entry["load_error"].as_str().unwrap().contains("valid"),
        "{entry}"
    );
    // 3. Remove one, and mend the broken one.
    std::fs::remove_dir_all(p.dir.path().join("prefer-local")).unwrap();
    std::fs::write(cb.join(&wasm_name), &good).unwrap();
    let r = reload(gw.clone()).await;
    assert_eq!(r["removed"].as_array().unwrap().len(), 1, "{r}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for t in load {
        served += t.await.unwrap();
    }
    assert!(served > 10, "only {served} requests during the swaps");
    let (_, listing) = common::get_json(&gw, "/ai/policies").await;
    let statuses: Vec<(&str, &str)> = listing["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [("context-budget", "active"), ("cost-cap", "active")]
    );
}

// In a folder of its own so that this file stays readable; not a test target by itself.
#[path = "policies/limits.rs"]
mod limits;
