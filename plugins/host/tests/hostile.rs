//! The hostile corpus, in WAT: components with the real `evaluate` signature whose bodies
//! misbehave. Each must end within its deadline with the right `PolicyError`, and the engine must
//! go on serving well-behaved policies afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_plugins::validate::{MAX_DECISION_BYTES, MAX_EDITS};
use switchyard_plugins::{
    ByteEstimate, Decision, Edit, EngineOptions, InputCandidate, InputMessage, LoadError,
    LoadedPolicy, Manifest, PolicyEngine, PolicyError, PolicyInput, Role,
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
    importing_count_tokens_with(
        "(drop (call $count (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))) (i32.const 16)",
        1,
    )
}

/// A component that imports `count-tokens` as `$count`, with this body. The host reads the
/// call's strings from a memory of its own (`shim_pages` zeroed pages), not the module's.
fn importing_count_tokens_with(body: &str, shim_pages: u32) -> String {
    TEMPLATE
        .replace(
            "{{IMPORTS}}",
            r#"(import "switchyard:policy/host@0.1.0" (instance $host
                 (export "count-tokens" (func (param "model" string) (param "text" string) (result u32)))))
               (core module $shim (memory (export "memory") {{SHIM_PAGES}}))
               (core instance $shim_i (instantiate $shim))
               (core func $count (canon lower (func $host "count-tokens") (memory (core memory $shim_i "memory"))))
               (core instance $host_core (export "count-tokens" (func $count)))"#,
        )
        .replace(
            "{{CORE_IMPORTS}}",
            r#"(import "host" "count-tokens" (func $count (param i32 i32 i32 i32) (result i32)))"#,
        )
        .replace("{{CORE_WITH}}", r#"(with "host" (instance $host_core))"#)
        .replace("{{BODY}}", body)
        .replace("{{SHIM_PAGES}}", &shim_pages.to_string())
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

/// Pages to grow for `len` bytes of fresh memory; none when `len` cannot fit (the string then
/// starts at the end of memory).
fn pages_for(len: u64) -> u64 {
    if len <= 60 << 20 {
        len.div_ceil(65536)
    } else {
        0
    }
}

/// A decision of one replace-message (the edit at 256) whose text is `len` zero bytes of
/// freshly grown memory.
fn one_string_of(len: u64) -> String {
    format!(
        r#"
      (local $base i32)
      (local.set $base (i32.mul (memory.grow (i32.const {pages})) (i32.const 65536)))
      (i32.store8 (i32.const 256) (i32.const 1))
      (i32.store (i32.const 268) (local.get $base))
      (i32.store (i32.const 272) (i32.const {len}))
      (i32.store (i32.const 20) (i32.const 256))
      (i32.store (i32.const 24) (i32.const 1))
      (i32.const 16)"#,
        pages = pages_for(len),
        len = len as u32 as i32,
    )
}

#[test]
fn a_huge_list_of_edits_is_refused_before_it_is_copied() {
    // 1,000,000 zeroed edits (= drop-message 0, 20 MB) in freshly grown memory: within the
    // guest's memory, far over what a valid decision can hold. Lifted, it would be ~56 MB of host
    // memory; the hostcall fuel refuses it first (validation would say "1000000 edits").
    let body = r#"
      (local $base i32)
      (local.set $base (i32.mul (memory.grow (i32.const 306)) (i32.const 65536)))
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.store (i32.const 20) (local.get $base))
      (i32.store (i32.const 24) (i32.const 1000000))
      (i32.const 16)"#;
    let e = engine();
    let p = load(&e, &component(body), "[limits]\nmemory_mb = 32").unwrap();
    let (out, took) = run(&p);
    let err = out.unwrap_err();
    assert_eq!(
        err,
        PolicyError::OutputTooLarge(switchyard_plugins::lift_bound(1))
    );
    assert!(err.is_guest_fault());
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn a_list_longer_than_memory_is_refused() {
    // 10^8 edits claimed at address 256: 2 GB, past the end of memory.
    let body = r#"
      (i32.store (i32.const 20) (i32.const 256))
      (i32.store (i32.const 24) (i32.const 100000000))
      (i32.const 16)"#;
    let e = engine();
    let p = load(&e, &component(body), "").unwrap();
    match run(&p).0.unwrap_err() {
        PolicyError::Trap(msg) => assert!(msg.contains("out of bounds"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_huge_string_is_refused_before_it_is_copied() {
    let e = engine();
    // 48 MiB in the guest's memory: refused by the lifting bound, not by validation afterwards
    // (which would say "decision is over 1048576 bytes", after copying all of it).
    let p = load(
        &e,
        &component(&one_string_of(48 << 20)),
        "[limits]\nmemory_mb = 64",
    )
    .unwrap();
    let (out, took) = run(&p);
    assert_eq!(
        out.unwrap_err(),
        PolicyError::OutputTooLarge(switchyard_plugins::lift_bound(1))
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    // One byte over the bound is enough; the bound is above what validation accepts, so a
    // string just over validation's limit still gets validation's own message.
    let just_over = switchyard_plugins::lift_bound(1) as u64 + 1;
    let p = load(&e, &component(&one_string_of(just_over)), "").unwrap();
    assert!(matches!(
        run(&p).0.unwrap_err(),
        PolicyError::OutputTooLarge(_)
    ));
    let p = load(
        &e,
        &component(&one_string_of(MAX_DECISION_BYTES as u64 + 1)),
        "",
    )
    .unwrap();
    match run(&p).0.unwrap_err() {
        PolicyError::InvalidDecision(msg) => {
            assert!(msg.contains("is over 1048576 bytes"), "{msg}")
        }
        other => panic!("expected an invalid decision, got {other:?}"),
    }
    // A 1 GiB string is past the end of memory: refused without touching it.
    let p = load(&e, &component(&one_string_of(1 << 30)), "").unwrap();
    match run(&p).0.unwrap_err() {
        PolicyError::Trap(msg) => assert!(msg.contains("out of bounds"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn the_largest_valid_decision_fits_the_lifting_bound() {
    // 256 edits: set-candidates naming all 16 candidates, 254 set-header with 64-byte names,
    // and an insert-message of exactly MAX_DECISION_BYTES of text.
    let body = r#"
      (local $base i32) (local $i i32) (local $e i32)
      (local.set $base (i32.mul (memory.grow (i32.const 20)) (i32.const 65536)))
      (memory.fill (i32.add (local.get $base) (i32.const 12288)) (i32.const 0x61) (i32.const 64))
      (i32.store8 (i32.add (local.get $base) (i32.const 12288)) (i32.const 0x78))
      (i32.store8 (i32.add (local.get $base) (i32.const 12289)) (i32.const 0x2d))
      (memory.fill (i32.add (local.get $base) (i32.const 65536)) (i32.const 0x61) (i32.const 1048576))
      (local.set $i (i32.const 0))
      (loop $c
        (i32.store (i32.add (i32.add (local.get $base) (i32.const 8192)) (i32.shl (local.get $i) (i32.const 2)))
          (local.get $i))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $c (i32.lt_u (local.get $i) (i32.const 16))))
      (i32.store8 (local.get $base) (i32.const 4))
      (i32.store (i32.add (local.get $base) (i32.const 4)) (i32.add (local.get $base) (i32.const 8192)))
      (i32.store (i32.add (local.get $base) (i32.const 8)) (i32.const 16))
      (local.set $i (i32.const 1))
      (loop $h
        (local.set $e (i32.add (local.get $base) (i32.mul (local.get $i) (i32.const 20))))
        (i32.store8 (local.get $e) (i32.const 5))
        (i32.store (i32.add (local.get $e) (i32.const 4)) (i32.add (local.get $base) (i32.const 12288)))
        (i32.store (i32.add (local.get $e) (i32.const 8)) (i32.const 64))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $h (i32.lt_u (local.get $i) (i32.const 255))))
      (local.set $e (i32.add (local.get $base) (i32.const 5100)))
      (i32.store8 (local.get $e) (i32.const 2))
      (i32.store (i32.add (local.get $e) (i32.const 4)) (i32.const 2))
      (i32.store8 (i32.add (local.get $e) (i32.const 8)) (i32.const 1))
      (i32.store (i32.add (local.get $e) (i32.const 12)) (i32.add (local.get $base) (i32.const 65536)))
      (i32.store (i32.add (local.get $e) (i32.const 16)) (i32.const 1048576))
      (i32.store (i32.const 20) (local.get $base))
      (i32.store (i32.const 24) (i32.const 256))
      (i32.const 16)"#;
    let e = engine();
    let p = load(&e, &component(body), "[limits]\ntimeout_ms = 50").unwrap();
    let mut ctx = input();
    let first = ctx.candidates[0].clone();
    ctx.candidates = (0..16)
        .map(|i| InputCandidate {
            model: format!("m{i}"),
            ..first.clone()
        })
        .collect();
    let edits = match p.evaluate(&ctx).unwrap().decision {
        Decision::Allow(edits) => edits,
        other => panic!("expected allow, got {other:?}"),
    };
    assert_eq!(edits.len(), MAX_EDITS);
    assert_eq!(edits[0], Edit::SetCandidates((0..16).collect()));
    match &edits[255] {
        Edit::InsertMessage(2, m) => assert_eq!(m.content.len(), MAX_DECISION_BYTES),
        other => panic!("expected the insert, got {other:?}"),
    }
}

#[test]
fn host_call_arguments_are_bounded_before_they_are_copied() {
    let e = engine();
    // `len` zero bytes of the shim's memory as the text (valid UTF-8: only the size matters).
    let with_text = |len: u64| {
        importing_count_tokens_with(
            &format!(
                "(drop (call $count (i32.const 0) (i32.const 0) (i32.const 0) (i32.const {len}))) \
                 (i32.const 16)"
            ),
            pages_for(len) as u32,
        )
    };
    // Over the per-evaluation count-tokens cap: refused as a host-call limit, uncounted.
    let p = load(&e, &with_text(1 << 20), "capabilities = [\"count-tokens\"]").unwrap();
    match run(&p).0.unwrap_err() {
        PolicyError::HostCallLimit(msg) => assert!(msg.contains("count-tokens"), "{msg}"),
        other => panic!("expected a host-call limit, got {other:?}"),
    }
    // Over the lifting bound: refused before wasmtime copies the argument.
    let p = load(&e, &with_text(3 << 20), "capabilities = [\"count-tokens\"]").unwrap();
    assert!(matches!(
        run(&p).0.unwrap_err(),
        PolicyError::OutputTooLarge(_)
    ));
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
    let good = load(&e, &component(ALLOW_EMPTY), "").unwrap();
    // While the slow evaluation holds the only slot, another is refused at once instead of
    // waiting. On a loaded machine the slow thread may start late or be descheduled, so a
    // round that never catches it held is tried again.
    let refused = (0..20).any(|_| {
        let busy = {
            let slow = slow.clone();
            std::thread::spawn(move || slow.evaluate(&input()))
        };
        let caught = (0..40).any(|_| match good.evaluate(&input()) {
            Err(PolicyError::PoolExhausted(_)) => true,
            _ => {
                std::thread::sleep(Duration::from_millis(1));
                false
            }
        });
        // The slow one times out, unless it started while the other held the slot.
        match busy.join().unwrap().unwrap_err() {
            PolicyError::Timeout(50) => caught,
            PolicyError::PoolExhausted(_) => false,
            other => panic!("{other:?}"),
        }
    });
    assert!(refused, "a full pool is reported");
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
