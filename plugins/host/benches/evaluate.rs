//! One policy evaluation (fresh store + instance + call + validate + drop), as the gateway runs it.
//!
//! `cargo bench -p switchyard-plugins --bench evaluate` (build the shipped policies first:
//! `bash policies/build.sh`). Budget: a trivial policy ≤ 30 µs p50 (criterion's median).
//! Results are not unwrapped: on a shared VM a rare multi-millisecond stall can pass a policy's
//! wall-clock deadline, and a benchmark should report time, not abort.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard_plugins::{
    ByteEstimate, EngineOptions, InputCandidate, InputMessage, LoadedPolicy, Manifest,
    PolicyEngine, PolicyInput, Role,
};

const TEMPLATE: &str = include_str!("../tests/fixtures/policy-template.wat");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn trivial(engine: &Arc<PolicyEngine>, dir: &Path) -> LoadedPolicy {
    let wat = TEMPLATE
        .replace("{{IMPORTS}}", "")
        .replace("{{CORE_IMPORTS}}", "")
        .replace("{{CORE_WITH}}", "")
        .replace("{{BODY}}", "(i32.const 16)");
    std::fs::write(dir.join("trivial.wat"), wat).unwrap();
    let m = Manifest::parse(
        "name = \"trivial\"\nversion = \"0.1.0\"\nabi = \"switchyard:policy@0.1.0\"\nwasm = \"trivial.wat\"\n",
        dir,
    )
    .unwrap();
    LoadedPolicy::load(engine, m, Arc::new(ByteEstimate)).unwrap()
}

fn shipped(engine: &Arc<PolicyEngine>, name: &str) -> Option<LoadedPolicy> {
    let dir = repo().join("policies").join(name);
    let m = Manifest::load(&dir).ok()?;
    if !m.wasm.is_file() {
        eprintln!(
            "skipping {name}: {} not built (bash policies/build.sh)",
            m.wasm.display()
        );
        return None;
    }
    Some(LoadedPolicy::load(engine, m, Arc::new(ByteEstimate)).unwrap())
}

/// `n` messages of `bytes` each after a system prompt, alternating user / assistant.
fn conversation(n: usize, bytes: usize, budget: Option<u32>) -> PolicyInput {
    let mut messages = vec![InputMessage {
        role: Role::System,
        content: "You are a helpful assistant.".into(),
        tokens: Some(8),
        tool_related: false,
    }];
    for i in 0..n {
        messages.push(InputMessage {
            role: if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            },
            content: "lorem ipsum ".repeat(bytes / 12),
            tokens: Some((bytes / 4) as u32),
            tool_related: false,
        });
    }
    let total: u32 = messages.iter().filter_map(|m| m.tokens).sum();
    PolicyInput {
        request_id: "bench".into(),
        tenant: String::new(),
        route: "auto".into(),
        messages,
        max_tokens: Some(256),
        candidates: vec![
            InputCandidate {
                model: "gpt-4o-mini".into(),
                provider: "openai".into(),
                context_window: 128_000,
                max_output_tokens: 16_384,
                input_price: 150_000,
                output_price: 600_000,
                score: 0.0,
                local: false,
                prompt_tokens: Some(total),
                estimated_cost: 100,
            },
            InputCandidate {
                model: "llama3.2".into(),
                provider: "ollama".into(),
                context_window: 128_000,
                max_output_tokens: 4_096,
                input_price: 0,
                output_price: 0,
                score: 0.4,
                local: true,
                prompt_tokens: Some(total),
                estimated_cost: 0,
            },
        ],
        token_budget: budget,
        cost_budget: Some(2_000),
        headers: vec![],
        config: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let engine = PolicyEngine::new(EngineOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let small = conversation(6, 200, Some(4_000));
    let large = conversation(200, 2_048, Some(8_000));

    let t = trivial(&engine, dir.path());
    c.bench_function("trivial (WAT, allow)", |b| {
        b.iter(|| t.evaluate(&small).ok())
    });
    if let Some(cb) = shipped(&engine, "context-budget") {
        c.bench_function("context-budget, 6 msgs x 200 B (fits)", |b| {
            b.iter(|| cb.evaluate(&small).ok())
        });
        c.bench_function("context-budget, 200 msgs x 2 KB (trims)", |b| {
            b.iter(|| cb.evaluate(&large).ok())
        });
    }
    let all: Vec<LoadedPolicy> = ["pii-redact", "context-budget", "cost-cap", "prefer-local"]
        .iter()
        .filter_map(|n| shipped(&engine, n))
        .collect();
    if all.len() == 4 {
        c.bench_function("all four shipped, 6 msgs x 200 B", |b| {
            b.iter(|| {
                for p in &all {
                    let _ = p.evaluate(&small);
                }
            })
        });
    }
    // What deny-by-default WASI costs per evaluation: the context each store carries.
    c.bench_function("WASI context per store (build + drop)", |b| {
        b.iter(|| {
            let mut w = wasmtime_wasi::WasiCtx::builder();
            w.stderr(wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(2048))
                .allow_tcp(false)
                .allow_udp(false);
            let ctx = w.build();
            let table = wasmtime_wasi::ResourceTable::new();
            (ctx, table)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
