//! `switchyard demo` runs the four shipped policies on every request (built by
//! `policies/build.sh`, loaded from the repository's `policies/` folder); and, over policy
//! folders of the tests' own, what callers and broken or hostile policies can and cannot do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::{Value, json};
use switchyard_e2e::{Running, repo_root};

/// The hostile corpus's component template (the real WIT types, a bump allocator).
const TEMPLATE: &str = include_str!("../../../plugins/host/tests/fixtures/policy-template.wat");
/// Consecutive guest faults that open a policy's breaker (`switchyard_plugins::stats`).
const BREAKER_FAILURES: usize = 5;

#[tokio::test]
async fn the_demo_runs_all_four_policies_on_every_request() {
    let gw = Running::demo();
    let http = reqwest::Client::new();
    let listing: Value = http
        .get(format!("{}/ai/policies", gw.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let active: Vec<&str> = listing["policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "active")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        active,
        ["context-budget", "cost-cap", "pii-redact", "prefer-local"],
        "{listing}"
    );
    for route in ["auto", "cheap", "fast", "reliable"] {
        let v: Value = http
            .post(format!("{}/ai/route", gw.base_url))
            .json(&json!({"route": route, "prompt": "Write to ann@example.com", "max_tokens": 32}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ran: Vec<&str> = v["routing"]["policies"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|r| r["policy"].as_str().unwrap().split('@').next().unwrap())
            .collect();
        assert_eq!(
            ran,
            ["pii-redact", "context-budget", "cost-cap", "prefer-local"],
            "{route}: {v}"
        );
    }
    // The address never reaches the log: policies annotate counts, not values.
    assert!(
        gw.log().iter().all(|l| !l.contains("ann@example.com")),
        "the e-mail address was logged"
    );
}

/// `switchyard demo` over the policy folder `dir` instead of the shipped one.
fn demo_over(dir: &Path) -> Running {
    Running::builder()
        .env("SWITCHYARD_POLICIES", dir.to_str().unwrap())
        .demo()
}

/// Copies a shipped policy (manifest, module, cases) into `into`, editing its manifest.
fn copy_shipped(name: &str, into: &Path, edit: impl Fn(&str) -> String) {
    let from = repo_root().join("policies").join(name);
    let to = into.join(name);
    std::fs::create_dir_all(to.join("tests")).unwrap();
    let manifest = std::fs::read_to_string(from.join("policy.toml")).unwrap();
    let wasm = manifest
        .lines()
        .find_map(|l| l.strip_prefix("wasm = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    assert!(
        from.join(wasm).is_file(),
        "build the policies first (bash policies/build.sh)"
    );
    std::fs::copy(from.join(wasm), to.join(wasm)).unwrap();
    std::fs::write(to.join("policy.toml"), edit(&manifest)).unwrap();
    for f in std::fs::read_dir(from.join("tests")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), to.join("tests").join(f.file_name())).unwrap();
    }
}

/// A WAT policy with this `evaluate` body on one route of the demo.
fn wat_policy(dir: &Path, name: &str, route: &str, failure_mode: &str, limits: &str, body: &str) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let wat = TEMPLATE
        .replace("{{IMPORTS}}", "")
        .replace("{{CORE_IMPORTS}}", "")
        .replace("{{CORE_WITH}}", "")
        .replace("{{BODY}}", body);
    std::fs::write(d.join("p.wat"), wat).unwrap();
    std::fs::write(
        d.join("policy.toml"),
        format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\nabi = \"switchyard:policy@0.1.0\"\n\
             wasm = \"p.wat\"\nfailure_mode = \"{failure_mode}\"\nroutes = [\"{route}\"]\n\
             [limits]\ntimeout_ms = 50\n{limits}\n"
        ),
    )
    .unwrap();
}

async fn post(http: &reqwest::Client, gw: &Running, path: &str, body: Value) -> (u16, Value) {
    let r = http
        .post(format!("{}{path}", gw.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn policy_status(http: &reqwest::Client, gw: &Running, name: &str) -> Value {
    let listing: Value = http
        .get(format!("{}/ai/policies", gw.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listing["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {listing}"))
        .clone()
}

#[tokio::test]
async fn input_over_a_policys_limit_is_a_413_that_never_opens_its_breaker() {
    let dir = tempfile::tempdir().unwrap();
    copy_shipped("pii-redact", dir.path(), |m| {
        m.replace("timeout_ms = 10", "timeout_ms = 50\nmax_input_bytes = 4096")
    });
    let gw = demo_over(dir.path());
    let http = reqwest::Client::new();
    let big = "lorem ipsum ".repeat(500);
    let tries = BREAKER_FAILURES * 2;
    for _ in 0..tries {
        let (status, v) = post(
            &http,
            &gw,
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "user", "content": big}]}),
        )
        .await;
        assert_eq!(status, 413, "{v}");
        assert_eq!(v["error"]["code"], "policy_input_too_large", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("'pii-redact@0.1.0'") && msg.contains("limits.max_input_bytes of 4096"),
            "{msg}"
        );
    }
    let p = policy_status(&http, &gw, "pii-redact").await;
    assert_eq!(p["breaker"], "closed", "{p}");
    assert_eq!(p["errors"], 0, "{p}");
    assert_eq!(p["input_refused"], tries, "{p}");
    // A request of normal size is still decided by the policy: the address is redacted.
    let (status, v) = post(
        &http,
        &gw,
        "/ai/route",
        json!({"prompt": "Write to ann@example.com", "max_tokens": 16}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let run = &v["routing"]["policies"][0];
    assert_eq!(run["policy"], "pii-redact@0.1.0", "{v}");
    assert_eq!(run["outcome"], "applied", "{run}");
    assert!(run["edits"].as_u64().unwrap() >= 1, "{run}");
    assert_eq!(
        policy_status(&http, &gw, "pii-redact").await["breaker"],
        "closed"
    );
}

#[tokio::test]
async fn a_fail_closed_policy_whose_module_fails_to_load_answers_503_on_its_route() {
    let dir = tempfile::tempdir().unwrap();
    wat_policy(dir.path(), "guard", "fast", "closed", "", "(i32.const 16)");
    std::fs::write(dir.path().join("guard/p.wat"), "\0asm not a module").unwrap();
    let gw = demo_over(dir.path());
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let (status, v) = post(
            &http,
            &gw,
            "/v1/chat/completions",
            json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["error"]["code"], "policy_error", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("'guard'") && msg.contains("not loaded"),
            "{msg}"
        );
    }
    // The other routes do not run it, and are served.
    let (status, v) = post(
        &http,
        &gw,
        "/v1/chat/completions",
        json!({"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let g = policy_status(&http, &gw, "guard").await;
    assert_eq!(g["status"], "failed", "{g}");
    assert_eq!(g["failure_mode"], "closed", "{g}");
}

#[tokio::test]
async fn a_hostile_policys_oversized_decision_is_refused_and_the_gateway_serves_on() {
    // Returns 48 MiB of its memory as one replacement text.
    let body = r#"
      (local $base i32)
      (local.set $base (i32.mul (memory.grow (i32.const 768)) (i32.const 65536)))
      (i32.store8 (i32.const 256) (i32.const 1))
      (i32.store (i32.const 268) (local.get $base))
      (i32.store (i32.const 272) (i32.const 50331648))
      (i32.store (i32.const 20) (i32.const 256))
      (i32.store (i32.const 24) (i32.const 1))
      (i32.const 16)"#;
    let dir = tempfile::tempdir().unwrap();
    wat_policy(
        dir.path(),
        "bloat",
        "fast",
        "closed",
        "memory_mb = 64",
        body,
    );
    let gw = demo_over(dir.path());
    let http = reqwest::Client::new();
    for i in 0..BREAKER_FAILURES + 2 {
        let (status, v) = post(
            &http,
            &gw,
            "/ai/route",
            json!({"route": "fast", "prompt": "hi", "max_tokens": 8}),
        )
        .await;
        assert_eq!(status, 503, "fails closed ({i}): {v}");
        assert_eq!(v["error"]["code"], "policy_error", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("'bloat@0.1.0'"),
            "{v}"
        );
        let (status, v) = post(
            &http,
            &gw,
            "/ai/route",
            json!({"route": "cheap", "prompt": "hi", "max_tokens": 8}),
        )
        .await;
        assert_eq!(status, 200, "another route is served: {v}");
    }
    // The guest's fault, counted against it: its breaker opened.
    let b = policy_status(&http, &gw, "bloat").await;
    assert_eq!(b["errors"], BREAKER_FAILURES, "{b}");
    assert_eq!(b["breaker"], "open", "{b}");
}
