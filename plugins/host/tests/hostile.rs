//! The hostile corpus, in WAT: components with the real `evaluate` signature whose bodies
//! misbehave. Each must end within its deadline with the right `PolicyError`, and the engine must
//! go on serving well-behaved policies afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_plugins::{
    ByteEstimate, Decision, EngineOptions, InputCandidate, InputMessage, LoadError, LoadedPolicy,
    Manifest, PolicyEngine, PolicyError, PolicyInput, Role,
};

/// The WIT types of `switchyard:policy@0.1.0`, spelled out in component-model text, and a
/// core module with a bump allocator. `BODY` is the core `evaluate(ctx-ptr) -> decision-ptr`.
/// (The gateway's own tests use the same file.)
const TEMPLATE: &str = include_str!("fixtures/policy-template.wat");

/// Decision area at 16: discriminant (0 = allow) at +0, list pointer at +4, length at +8.
const ALLOW_EMPTY: &str = "(i32.const 16)";

fn component(body: &str) -> String {
    TEMPLATE
        .replace("{{IMPORTS}}", "")
        .replace("{{CORE_IMPORTS}}", "")
        .replace("{{CORE_WITH}}", "")
        .replace("{{BODY}}", body)
}

/// A component that imports `count-tokens` from the host (and calls it once).
fn importing_count_tokens() -> String {
    TEMPLATE
        .replace(
            "{{IMPORTS}}",
            r#"(import "switchyard:policy/host@0.1.0" (instance $host
                 (export "count-tokens" (func (param "model" string) (param "text" string) (result u32)))))
               (core module $shim (memory (export "memory") 1))
               (core instance $shim_i (instantiate $shim))
               (core func $count (canon lower (func $host "count-tokens") (memory (core memory $shim_i "memory"))))
               (core instance $host_core (export "count-tokens" (func $count)))"#,
        )
        .replace(
            "{{CORE_IMPORTS}}",
            r#"(import "host" "count-tokens" (func $count (param i32 i32 i32 i32) (result i32)))"#,
        )
        .replace("{{CORE_WITH}}", r#"(with "host" (instance $host_core))"#)
        .replace(
            "{{BODY}}",
            "(drop (call $count (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))) (i32.const 16)",
        )
}

fn engine() -> Arc<PolicyEngine> {
    PolicyEngine::new(EngineOptions::default()).unwrap()
}

fn manifest(dir: &Path, wat: &str, extra: &str) -> Manifest {
    std::fs::write(dir.join("p.wat"), wat).unwrap();
    let text = format!(
        "name = \"hostile\"\nversion = \"0.1.0\"\nabi = \"switchyard:policy@0.1.0\"\nwasm = \"p.wat\"\n{extra}"
    );
    Manifest::parse(&text, dir).unwrap()
}

fn load(engine: &Arc<PolicyEngine>, wat: &str, extra: &str) -> Result<LoadedPolicy, LoadError> {
    let dir = tempfile::tempdir().unwrap();
    LoadedPolicy::load(
        engine,
        manifest(dir.path(), wat, extra),
        Arc::new(ByteEstimate),
    )
}

fn input() -> PolicyInput {
    PolicyInput {
        request_id: "r1".into(),
        tenant: String::new(),
        route: "auto".into(),
        messages: vec![
            InputMessage {
                role: Role::System,
                content: "Be terse.".into(),
                tokens: Some(5),
                tool_related: false,
            },
            InputMessage {
                role: Role::User,
                content: "Hello".into(),
                tokens: Some(3),
                tool_related: false,
            },
        ],
        max_tokens: Some(64),
        candidates: vec![InputCandidate {
            model: "gpt-4o-mini".into(),
            provider: "openai".into(),
            context_window: 128_000,
            max_output_tokens: 16_384,
            input_price: 150_000,
            output_price: 600_000,
            score: 0.0,
            local: false,
            prompt_tokens: None,
            estimated_cost: 10,
        }],
        token_budget: None,
        cost_budget: None,
        headers: vec![],
        config: Default::default(),
    }
}

/// Runs the policy and checks it ended by itself, well within a generous bound.
fn run(policy: &LoadedPolicy) -> (Result<Decision, PolicyError>, Duration) {
    let t = Instant::now();
    let out = policy.evaluate(&input()).map(|e| e.decision);
    (out, t.elapsed())
}

#[test]
fn a_well_behaved_component_allows() {
    let e = engine();
    let p = load(&e, &component(ALLOW_EMPTY), "").unwrap();
    assert_eq!(run(&p).0.unwrap(), Decision::Allow(vec![]));
}

#[test]
fn an_infinite_loop_is_interrupted_at_its_deadline() {
    let e = engine();
    let p = load(
        &e,
        &component("(loop $l (br $l)) (i32.const 16)"),
        "[limits]\ntimeout_ms = 5",
    )
    .unwrap();
    let (out, took) = run(&p);
    assert_eq!(out.unwrap_err(), PolicyError::Timeout(5));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // The engine is fine afterwards: a good policy still runs.
    let good = load(&e, &component(ALLOW_EMPTY), "").unwrap();
    assert!(run(&good).0.is_ok());
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let e = engine();
    let body =
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i32.const 16)";
    let p = load(&e, &component(body), "[limits]\nmemory_mb = 4").unwrap();
    let (out, took) = run(&p);
    assert_eq!(out.unwrap_err(), PolicyError::MemoryLimit(4));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let e = engine();
    let p = load(
        &e,
        &component("(drop (call $recurse (i32.const 0))) (i32.const 16)"),
        "",
    )
    .unwrap();
    assert_eq!(run(&p).0.unwrap_err(), PolicyError::StackOverflow);
}

#[test]
fn unreachable_is_a_trap() {
    let e = engine();
    let p = load(&e, &component("unreachable"), "").unwrap();
    match run(&p).0.unwrap_err() {
        PolicyError::Trap(msg) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn oversized_output_is_an_invalid_decision() {
    // 100,000 zeroed edits (= drop-message 0) in freshly grown memory.
    let body = r#"
      (local $base i32)
      (local.set $base (i32.mul (memory.grow (i32.const 40)) (i32.const 65536)))
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.store (i32.const 20) (local.get $base))
      (i32.store (i32.const 24) (i32.const 100000))
      (i32.const 16)"#;
    let e = engine();
    let p = load(&e, &component(body), "").unwrap();
    match run(&p).0.unwrap_err() {
        PolicyError::InvalidDecision(msg) => assert!(msg.contains("100000 edits"), "{msg}"),
        other => panic!("expected an invalid decision, got {other:?}"),
    }
}

#[test]
fn invalid_edits_are_refused() {
    // Two zeroed edits: drop-message 0 twice.
    let body = r#"
      (i32.store (i32.const 20) (i32.const 256))
      (i32.store (i32.const 24) (i32.const 2))
      (i32.const 16)"#;
    let e = engine();
    let p = load(&e, &component(body), "").unwrap();
    match run(&p).0.unwrap_err() {
        PolicyError::InvalidDecision(msg) => assert!(msg.contains("dropped twice"), "{msg}"),
        other => panic!("expected an invalid decision, got {other:?}"),
    }
}

#[test]
fn an_ungranted_import_fails_at_load_not_at_request_time() {
    let e = engine();
    match load(&e, &importing_count_tokens(), "capabilities = [\"log\"]") {
        Err(LoadError::Link(PolicyError::Capability(msg))) => {
            assert!(msg.contains("count-tokens"), "{msg}")
        }
        other => panic!("expected a capability error, got {other:?}"),
    }
    // Granted, the same component loads and runs.
    let p = load(
        &e,
        &importing_count_tokens(),
        "capabilities = [\"count-tokens\"]",
    )
    .unwrap();
    assert!(run(&p).0.is_ok());
}

#[test]
fn a_wrong_abi_is_refused_at_load() {
    let wrong = r#"(component
      (core module $m (func (export "evaluate") (result i32) (i32.const 0)))
      (core instance $i (instantiate $m))
      (func (export "evaluate") (result u32) (canon lift (core func $i "evaluate"))))"#;
    let e = engine();
    match load(&e, wrong, "") {
        Err(LoadError::Link(PolicyError::Abi { detail, .. })) => {
            assert!(detail.contains("evaluate"), "{detail}")
        }
        other => panic!("expected an ABI error, got {other:?}"),
    }
    // And a manifest naming another ABI version is refused before the module is read.
    let dir = tempfile::tempdir().unwrap();
    let text =
        "name = \"x\"\nversion = \"0.1.0\"\nabi = \"switchyard:policy@0.2.0\"\nwasm = \"x.wasm\"\n";
    assert!(matches!(
        Manifest::parse(text, dir.path()),
        Err(LoadError::Abi { .. })
    ));
}

#[test]
fn a_full_pool_is_reported_not_waited_for() {
    let e = PolicyEngine::new(EngineOptions {
        slots: 1,
        ..EngineOptions::default()
    })
    .unwrap();
    let slow = Arc::new(
        load(
            &e,
            &component("(loop $l (br $l)) (i32.const 16)"),
            "[limits]\ntimeout_ms = 50",
        )
        .unwrap(),
    );
    let busy = {
        let slow = slow.clone();
        std::thread::spawn(move || slow.evaluate(&input()))
    };
    // Wait until the slow evaluation holds the only slot.
    std::thread::sleep(Duration::from_millis(10));
    let good = load(&e, &component(ALLOW_EMPTY), "").unwrap();
    assert!(matches!(
        good.evaluate(&input()),
        Err(PolicyError::PoolExhausted(_))
    ));
    assert_eq!(busy.join().unwrap().unwrap_err(), PolicyError::Timeout(50));
    assert!(good.evaluate(&input()).is_ok(), "the slot is free again");
}

#[test]
fn a_module_whose_sha256_does_not_match_is_refused() {
    let e = engine();
    let wrong = "0".repeat(64);
    match load(
        &e,
        &component(ALLOW_EMPTY),
        &format!("sha256 = \"{wrong}\""),
    ) {
        Err(LoadError::Sha256 { .. }) => {}
        other => panic!("expected a sha256 mismatch, got {other:?}"),
    }
}

#[test]
fn a_failing_policy_trips_its_breaker() {
    let e = engine();
    let p = load(&e, &component("unreachable"), "").unwrap();
    for _ in 0..switchyard_plugins::stats::BREAKER_FAILURES {
        assert!(matches!(p.run(&input()), Err(PolicyError::Trap(_))));
    }
    assert_eq!(p.run(&input()).unwrap_err(), PolicyError::BreakerOpen);
    let snap = p.stats.snapshot();
    assert_eq!(snap.breaker, "open");
    assert_eq!(snap.skipped, 1);
}

#[test]
fn compiled_components_are_cached_by_hash_and_engine() {
    let cache = tempfile::tempdir().unwrap();
    let e = PolicyEngine::new(EngineOptions {
        cache_dir: Some(cache.path().join("cwasm")),
        ..EngineOptions::default()
    })
    .unwrap();
    let p = load(&e, &component(ALLOW_EMPTY), "").unwrap();
    let files: Vec<_> = std::fs::read_dir(cache.path().join("cwasm"))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        vec![format!("{}-{}.cwasm", p.sha256, e.compatibility_key())]
    );
    // A second load comes from the cache and behaves the same.
    let again = load(&e, &component(ALLOW_EMPTY), "").unwrap();
    assert_eq!(run(&again).0.unwrap(), Decision::Allow(vec![]));
}
