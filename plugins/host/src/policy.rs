//! One loaded policy version: its compiled component pre-linked with exactly the imports its
//! manifest grants, and the per-evaluation sandbox (a fresh store and instance every call).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::bindings::PolicyPre;
use crate::convert::{self, InputOverLimit, from_wit, to_wit};
use crate::ctx::{Decision, PolicyInput};
use crate::engine::{PolicyEngine, sha256_hex};
use crate::error::{LoadError, PolicyError};
use crate::manifest::{MAX_MODULE_BYTES, Manifest};
use crate::sandbox::{
    Bounds, HostCalls, HostState, Limiter, arm_deadline, classify, deny_all_wasi, imports_wasi,
    lift_bound, link,
};
use crate::stats::PolicyStats;
use crate::validate::validate;

/// Host-side token counting for the `count-tokens` import and for test inputs without counts.
pub trait TokenCounter: Send + Sync {
    fn count(&self, model: &str, text: &str) -> u32;
}

/// A counter that needs no tables: about four bytes per token, never zero for non-empty text.
#[derive(Debug, Default, Clone, Copy)]
pub struct ByteEstimate;

impl TokenCounter for ByteEstimate {
    fn count(&self, _model: &str, text: &str) -> u32 {
        u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
    }
}

/// Host-call caps per evaluation.
pub const MAX_LOG_CALLS: u32 = 32;
pub const MAX_LOG_BYTES: usize = 8 << 10;
pub const MAX_COUNT_TOKENS_BYTES: usize = 64 << 10;
const STDERR_CAPTURE: usize = 2048;

/// A log line a policy wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// A successful evaluation.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub decision: Decision,
    pub elapsed: Duration,
    /// Instructions used, when the engine counts fuel.
    pub fuel: Option<u64>,
    /// Largest linear memory the instance reached, in bytes.
    pub peak_memory: usize,
    pub logs: Vec<LogLine>,
}

/// A policy version ready to run.
pub struct LoadedPolicy {
    pub manifest: Manifest,
    pub sha256: String,
    pub wasm_bytes: usize,
    pub stats: PolicyStats,
    engine: Arc<PolicyEngine>,
    pre: PolicyPre<HostState>,
    /// Whether the component imports WASI, and so gets a (deny-all) WASI context per call.
    wasi: bool,
    pub(crate) counter: Arc<dyn TokenCounter>,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("id", &self.manifest.id())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl LoadedPolicy {
    /// Reads, checks, compiles and links the module a manifest names. No self-test here.
    pub fn load(
        engine: &Arc<PolicyEngine>,
        manifest: Manifest,
        counter: Arc<dyn TokenCounter>,
    ) -> Result<LoadedPolicy, LoadError> {
        let path = &manifest.wasm;
        let io = |e: std::io::Error| LoadError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_MODULE_BYTES {
            return Err(LoadError::TooLarge {
                size,
                max: MAX_MODULE_BYTES,
            });
        }
        let wasm = std::fs::read(path).map_err(io)?;
        let sha256 = sha256_hex(&wasm);
        if let Some(expected) = &manifest.sha256
            && *expected != sha256
        {
            return Err(LoadError::Sha256 {
                expected: expected.clone(),
                actual: sha256,
            });
        }
        let component = engine.compile(&wasm, &sha256)?;
        let pre = link(engine, &component, &manifest).map_err(LoadError::Link)?;
        Ok(LoadedPolicy {
            wasi: imports_wasi(engine, &component),
            stats: PolicyStats::default(),
            wasm_bytes: wasm.len(),
            sha256,
            engine: engine.clone(),
            pre,
            counter,
            manifest,
        })
    }

    /// Runs the policy once, in a fresh sandbox, and validates what it decided. Does not touch the
    /// breaker or the statistics (see [`LoadedPolicy::run`]).
    pub fn evaluate(&self, input: &PolicyInput) -> Result<Evaluation, PolicyError> {
        self.evaluate_within(input, self.manifest.limits.timeout)
    }

    /// As [`LoadedPolicy::evaluate`], with another wall-clock deadline (self-tests check what a
    /// policy decides, not how fast: a busy machine must not fail them).
    pub fn evaluate_within(
        &self,
        input: &PolicyInput,
        timeout: Duration,
    ) -> Result<Evaluation, PolicyError> {
        // Before a slot is taken or anything is copied: over-limit input is the caller's.
        self.check_input(input)
            .map_err(|e| PolicyError::InputTooLarge(e.to_string()))?;
        let slot = self.engine.acquire()?;
        let ctx = to_wit(&self.manifest, self.counter.as_ref(), input);
        let started = Instant::now();
        let limits = &self.manifest.limits;
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let wasi = self.wasi.then(|| deny_all_wasi(Some(stderr.clone())));
        let state = HostState {
            limiter: Limiter {
                cap: limits.memory_bytes,
                peak: 0,
                hit: false,
            },
            wasi,
            table: ResourceTable::new(),
            overloaded: false,
            calls: HostCalls::new(
                self.counter.clone(),
                input
                    .candidates
                    .first()
                    .map(|c| c.model.clone())
                    .unwrap_or_default(),
            ),
        };
        let mut store = Store::new(&self.engine.engine, state);
        let bounds = Bounds {
            timeout,
            wall_cap: arm_deadline(&mut store, timeout),
            fuel: limits.test_fuel,
            lift: lift_bound(input.candidates.len()),
            in_flight: slot.in_flight(),
        };
        store.limiter(|s| &mut s.limiter);
        // Bounds every copy out of the guest (the decision, each host call's arguments) before
        // wasmtime allocates for it; see `lift_bound`.
        store.set_hostcall_fuel(bounds.lift);
        let fuel = if self.engine.fuel {
            store
                .set_fuel(limits.test_fuel)
                .map_err(|e| PolicyError::Instantiate(e.to_string()))?;
            Some(limits.test_fuel)
        } else {
            None
        };
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|p| p.call_evaluate(&mut store, &ctx));
        let fuel_used = fuel.map(|f| f.saturating_sub(store.get_fuel().unwrap_or(0)));
        let raw = match result {
            Ok(d) => d,
            Err(e) => return Err(classify(&e, store.data(), &stderr, &bounds)),
        };
        let state = store.into_data();
        let decision = from_wit(raw);
        validate(&decision, input).map_err(PolicyError::InvalidDecision)?;
        Ok(Evaluation {
            decision,
            elapsed: started.elapsed(),
            fuel: fuel_used,
            peak_memory: state.limiter.peak,
            logs: state.calls.lines,
        })
    }

    /// Whether `input` is within this policy's input limits (`[limits] max_input_bytes`,
    /// `max_messages`). The gateway checks every policy of a route before running the first, and
    /// answers 413 naming the limit; an evaluation checks again and fails with
    /// [`PolicyError::InputTooLarge`], which never counts against the policy's health.
    pub fn check_input(&self, input: &PolicyInput) -> Result<(), InputOverLimit> {
        convert::check_input(&self.manifest, input)
    }

    /// Runs the policy through its breaker and records the outcome in its statistics. On `Err`
    /// the caller applies the manifest's failure mode. Only the guest's own faults count against
    /// the breaker ([`PolicyError::is_guest_fault`]).
    pub fn run(&self, input: &PolicyInput) -> Result<Evaluation, PolicyError> {
        if !self.stats.admit() {
            self.stats.record_skip();
            return Err(PolicyError::BreakerOpen);
        }
        let started = Instant::now();
        let out = self.evaluate(input);
        match &out {
            Ok(ev) => {
                for l in &ev.logs {
                    tracing::info!(policy = %self.manifest.name, level = l.level, "{}", l.message);
                }
                self.stats.record_ok(ev.elapsed);
            }
            Err(e) if e.is_guest_fault() => self.stats.record_err(started.elapsed(), e),
            Err(e) => self.stats.record_refused(e),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ctx::{InputCandidate, InputMessage, Role};
    use crate::engine::EngineOptions;
    use crate::stats::BREAKER_FAILURES;

    const TEMPLATE: &str = include_str!("../tests/fixtures/policy-template.wat");

    fn allow_empty() -> String {
        TEMPLATE
            .replace("{{IMPORTS}}", "")
            .replace("{{CORE_IMPORTS}}", "")
            .replace("{{CORE_WITH}}", "")
            .replace("{{BODY}}", "(i32.const 16)")
    }

    fn load(engine: &Arc<PolicyEngine>, limits: &str) -> (LoadedPolicy, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wat"), allow_empty()).unwrap();
        let text = format!(
            "name = \"p\"\nversion = \"0.1.0\"\nabi = \"switchyard:policy@0.1.0\"\nwasm = \"p.wat\"\n\
             capabilities = [\"read-content\"]\n{limits}"
        );
        let manifest = Manifest::parse(&text, dir.path()).unwrap();
        let p = LoadedPolicy::load(engine, manifest, Arc::new(ByteEstimate)).unwrap();
        (p, dir)
    }

    fn input(text: &str) -> PolicyInput {
        PolicyInput {
            request_id: "r1".into(),
            tenant: String::new(),
            route: "auto".into(),
            messages: vec![InputMessage {
                role: Role::User,
                content: text.into(),
                tokens: Some(3),
                tool_related: false,
            }],
            max_tokens: None,
            candidates: vec![InputCandidate {
                model: "m".into(),
                provider: "p".into(),
                context_window: 1000,
                max_output_tokens: 100,
                input_price: 1,
                output_price: 1,
                score: 0.0,
                local: false,
                prompt_tokens: None,
                estimated_cost: 0,
            }],
            token_budget: None,
            cost_budget: None,
            headers: vec![("x-switchyard-team".into(), "ab".into())],
            config: Default::default(),
        }
    }

    #[test]
    fn a_full_pool_never_opens_the_breaker() {
        let e = PolicyEngine::new(EngineOptions {
            slots: 1,
            ..EngineOptions::default()
        })
        .unwrap();
        let (p, _dir) = load(&e, "");
        let held = e.acquire().unwrap();
        for _ in 0..BREAKER_FAILURES * 3 {
            assert!(matches!(
                p.run(&input("hi")),
                Err(PolicyError::PoolExhausted(1))
            ));
        }
        let snap = p.stats.snapshot();
        assert_eq!(snap.breaker, "closed", "{snap:?}");
        assert_eq!((snap.errors, snap.evaluations), (0, 0), "{snap:?}");
        assert_eq!(snap.busy, u64::from(BREAKER_FAILURES * 3));
        drop(held);
        assert!(p.run(&input("hi")).is_ok(), "served once a slot is free");
        assert_eq!(p.stats.snapshot().evaluations, 1);
    }

    #[test]
    fn input_over_the_manifest_limits_is_refused_and_never_opens_the_breaker() {
        let e = PolicyEngine::new(EngineOptions::default()).unwrap();
        // Text 5 + header 17 + 2 + request id 2 + route 4 = 30 bytes.
        let (p, _dir) = load(&e, "[limits]\nmax_input_bytes = 30\nmax_messages = 1");
        assert_eq!(convert::input_bytes(&p.manifest, &input("hello")), 30);
        assert!(p.check_input(&input("hello")).is_ok());
        let over = p.check_input(&input("hello!")).unwrap_err();
        assert_eq!(
            over.to_string(),
            "31 bytes of input, over its limits.max_input_bytes of 30"
        );
        let mut two = input("a");
        two.messages.push(two.messages[0].clone());
        let over = p.check_input(&two).unwrap_err();
        assert_eq!(
            over.to_string(),
            "2 messages, over its limits.max_messages of 1"
        );
        for _ in 0..BREAKER_FAILURES * 3 {
            match p.run(&input("hello!")) {
                Err(PolicyError::InputTooLarge(m)) => assert!(m.contains("max_input_bytes"), "{m}"),
                other => panic!("expected input_too_large, got {other:?}"),
            }
        }
        let snap = p.stats.snapshot();
        assert_eq!(snap.breaker, "closed", "{snap:?}");
        assert_eq!((snap.errors, snap.evaluations), (0, 0), "{snap:?}");
        assert_eq!(snap.input_refused, u64::from(BREAKER_FAILURES * 3));
        assert!(
            p.run(&input("hello")).is_ok(),
            "normal input is still served"
        );
    }

    #[test]
    fn without_read_content_message_text_does_not_count() {
        let e = PolicyEngine::new(EngineOptions::default()).unwrap();
        let (mut p, _dir) = load(&e, "[limits]\nmax_input_bytes = 30");
        p.manifest.capabilities.clear();
        let long = "x".repeat(10_000);
        assert_eq!(convert::input_bytes(&p.manifest, &input(&long)), 25);
        assert!(p.run(&input(&long)).is_ok());
    }
}
