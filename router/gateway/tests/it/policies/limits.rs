//! What a caller or a broken policy folder can and cannot do to the policies: input over a
//! policy's limits is the caller's 413 and costs the policy nothing; a fail-closed policy that is
//! not loaded refuses its routes; an oversized decision is the guest's fault, refused before it
//! is copied, while every other route goes on being served.

use super::*;

use switchyard_plugins::stats::BREAKER_FAILURES;

/// Six short user messages.
fn six_messages() -> Vec<Value> {
    (0..6)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect()
}

#[tokio::test]
async fn a_request_over_a_policys_input_limit_is_a_413_that_never_opens_its_breaker() {
    let dir = tempfile::tempdir().unwrap();
    hostile_with(
        dir.path(),
        "small",
        "(i32.const 16)",
        "closed",
        "timeout_ms = 50\nmax_messages = 4",
    );
    let setup = gateway_over(dir.path()).await;
    let before = setup.sim.sim.stats().total().requests;
    let tries = BREAKER_FAILURES * 2;
    for _ in 0..tries {
        let (status, v) = post_json(
            &setup.gw,
            "/v1/chat/completions",
            json!({"model": "hostile", "messages": six_messages()}),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
        assert_eq!(v["error"]["code"], "policy_input_too_large", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["param"], "messages", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("'small@0.1.0'")
                && msg.contains("6 messages, over its limits.max_messages of 4"),
            "{msg}"
        );
    }
    assert_eq!(
        setup.sim.sim.stats().total().requests,
        before,
        "nothing was sent upstream"
    );
    let (_, listing) = common::get_json(&setup.gw, "/ai/policies").await;
    let s = listing_of(&listing, "small");
    assert_eq!(s["breaker"], "closed", "{s}");
    assert_eq!(s["errors"], 0, "{s}");
    assert_eq!(s["evaluations"], 0, "no policy ran: {s}");
    assert_eq!(s["input_refused"], tries, "{s}");
    // A request within the limit is still decided by the policy.
    let (status, v) = post_json(
        &setup.gw,
        "/ai/route",
        json!({"route": "hostile", "messages": &six_messages()[..4]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(run_of(&runs(&v), "small")["outcome"], "applied", "{v}");
    let (_, listing) = common::get_json(&setup.gw, "/ai/policies").await;
    assert_eq!(listing_of(&listing, "small")["evaluations"], 1);
}

#[tokio::test]
async fn a_fail_closed_policy_whose_module_fails_to_load_refuses_its_routes() {
    let dir = tempfile::tempdir().unwrap();
    hostile_with(
        dir.path(),
        "guard",
        "(i32.const 16)",
        "closed",
        "timeout_ms = 50",
    );
    std::fs::write(dir.path().join("guard/p.wat"), "\0asm not really").unwrap();
    // A fail-open one whose module is missing is bypassed, and says so.
    hostile_with(
        dir.path(),
        "helper",
        "(i32.const 16)",
        "open",
        "timeout_ms = 50",
    );
    std::fs::remove_file(dir.path().join("helper/p.wat")).unwrap();
    let setup = gateway_over(dir.path()).await;
    let before = setup.sim.sim.stats().total().requests;
    let hi = json!([{"role": "user", "content": "hi"}]);
    for (path, body) in [
        ("/ai/route", json!({"route": "hostile", "prompt": "hi"})),
        (
            "/v1/chat/completions",
            json!({"model": "hostile", "messages": hi}),
        ),
    ] {
        let (status, v) = post_json(&setup.gw, path, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {v}");
        assert_eq!(v["error"]["code"], "policy_error", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("'guard'") && msg.contains("not loaded"),
            "{msg}"
        );
        assert!(
            !msg.contains(dir.path().to_str().unwrap()),
            "no paths: {msg}"
        );
    }
    assert_eq!(setup.sim.sim.stats().total().requests, before);
    // Routes it does not name are served as ever.
    let (status, v) = post_json(&setup.gw, "/ai/route", json!({"prompt": "hi"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(runs(&v).is_empty(), "{v}");
    let (_, listing) = common::get_json(&setup.gw, "/ai/policies").await;
    let g = listing_of(&listing, "guard");
    assert_eq!(g["status"], "failed", "{g}");
    assert_eq!(g["failure_mode"], "closed", "{g}");
    assert_eq!(g["routes"], json!(["hostile"]), "{g}");
    // Mended and reloaded, it serves; the missing fail-open one is noted as bypassed.
    hostile_with(
        dir.path(),
        "guard",
        "(i32.const 16)",
        "closed",
        "timeout_ms = 50",
    );
    setup.gw.policies.as_ref().unwrap().reload();
    let (status, v) = post_json(
        &setup.gw,
        "/ai/route",
        json!({"route": "hostile", "prompt": "hi"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let runs = runs(&v);
    assert_eq!(run_of(&runs, "guard")["outcome"], "applied", "{v}");
    let helper = runs.iter().find(|r| r["policy"] == "helper").unwrap();
    assert_eq!(helper["outcome"], "bypassed", "{helper}");
    assert!(
        helper["error"].as_str().unwrap().contains("not loaded"),
        "{helper}"
    );
}

#[tokio::test]
async fn a_policy_folder_whose_manifest_cannot_be_read_fails_closed_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("typo")).unwrap();
    std::fs::write(
        dir.path().join("typo/policy.toml"),
        "name = \"typo\"\nfailure_mode = open\n",
    )
    .unwrap();
    let setup = gateway_over(dir.path()).await;
    for route in ["auto", "hostile"] {
        let (status, v) = post_json(
            &setup.gw,
            "/ai/route",
            json!({"route": route, "prompt": "hi"}),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{route}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("'typo'"),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_decision_is_the_guests_fault_and_other_routes_are_served() {
    // 48 MiB of the guest's memory returned as one replacement text.
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
    hostile_with(
        dir.path(),
        "bloat",
        body,
        "open",
        "timeout_ms = 50\nmemory_mb = 64",
    );
    let setup = gateway_over(dir.path()).await;
    let gw = setup.gw.clone();
    let tries = BREAKER_FAILURES + 3;
    for i in 0..tries {
        let (status, v) = post_json(
            &gw,
            "/ai/route",
            json!({"route": "hostile", "prompt": "hi"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "fails open: {v}");
        let runs = runs(&v);
        let run = run_of(&runs, "bloat");
        assert_eq!(run["outcome"], "bypassed", "{run}");
        let err = run["error"].as_str().unwrap();
        if i < BREAKER_FAILURES {
            assert!(err.contains("refused before copying"), "{err}");
        } else {
            assert!(err.contains("breaker"), "{err}");
        }
        let (status, v) = post_json(&gw, "/ai/route", json!({"prompt": "hi"})).await;
        assert_eq!(status, StatusCode::OK, "another route: {v}");
    }
    let (_, listing) = common::get_json(&gw, "/ai/policies").await;
    let b = listing_of(&listing, "bloat");
    assert_eq!(
        b["errors"], BREAKER_FAILURES,
        "counted against the policy: {b}"
    );
    assert_eq!(b["breaker"], "open", "{b}");
}
