//! One loaded policy version: its compiled component pre-linked with exactly the imports its
//! manifest grants, and the per-evaluation sandbox (a fresh store and instance every call).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, StoreContextMut, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::PolicyPre;
use crate::bindings::switchyard::policy::host::Level;
use crate::bindings::switchyard::policy::types as wit;
use crate::ctx::{Decision, Denial, Edit, NewMessage, PolicyInput, Role};
use crate::engine::{PolicyEngine, TICK, sha256_hex};
use crate::error::{LoadError, PolicyError};
use crate::manifest::{ABI, Capability, MAX_MODULE_BYTES, Manifest};
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
/// Message text handed to one evaluation, in total.
pub const MAX_INPUT_CONTENT_BYTES: usize = 1 << 20;
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
        let _slot = self.engine.acquire()?;
        let ctx = self.to_wit(input)?;
        let started = Instant::now();
        let limits = &self.manifest.limits;
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = HostState {
            limiter: Limiter {
                cap: limits.memory_bytes,
                peak: 0,
                hit: false,
            },
            wasi: wasi.build(),
            table: ResourceTable::new(),
            calls: HostCalls {
                counter: self.counter.clone(),
                default_model: input
                    .candidates
                    .first()
                    .map(|c| c.model.clone())
                    .unwrap_or_default(),
                ..HostCalls::default()
            },
        };
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        let ticks = timeout.as_nanos().div_ceil(TICK.as_nanos()) as u64;
        store.set_epoch_deadline(ticks + 1);
        store.epoch_deadline_trap();
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
            Err(e) => {
                return Err(classify(
                    &e,
                    store.data(),
                    &stderr,
                    timeout,
                    limits.test_fuel,
                ));
            }
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

    /// Runs the policy through its breaker and records the outcome in its statistics. On `Err`
    /// the caller applies the manifest's failure mode.
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
            Err(e) => self.stats.record_err(started.elapsed(), e),
        }
        out
    }

    fn to_wit(&self, input: &PolicyInput) -> Result<wit::RequestCtx, PolicyError> {
        let read = self.manifest.grants(Capability::ReadContent);
        let total: usize = input.messages.iter().map(|m| m.content.len()).sum();
        if read && total > MAX_INPUT_CONTENT_BYTES {
            return Err(PolicyError::InputTooLarge(format!(
                "{total} bytes of message text, over {MAX_INPUT_CONTENT_BYTES}"
            )));
        }
        let first_model = input
            .candidates
            .first()
            .map(|c| c.model.as_str())
            .unwrap_or("");
        let mut sum = 0u32;
        let messages = input
            .messages
            .iter()
            .map(|m| {
                let tokens = m
                    .tokens
                    .unwrap_or_else(|| self.counter.count(first_model, &m.content));
                sum = sum.saturating_add(tokens);
                wit::Message {
                    role: role_to_wit(m.role),
                    content: read.then(|| m.content.clone()),
                    content_len: u32::try_from(m.content.len()).unwrap_or(u32::MAX),
                    tokens,
                    tool_related: m.tool_related,
                }
            })
            .collect();
        let candidates = input
            .candidates
            .iter()
            .map(|c| wit::Candidate {
                model: c.model.clone(),
                provider: c.provider.clone(),
                context_window: c.context_window,
                max_output_tokens: c.max_output_tokens,
                input_price: c.input_price,
                output_price: c.output_price,
                score: c.score,
                local: c.local,
                prompt_tokens: c.prompt_tokens.unwrap_or(sum),
                estimated_cost: c.estimated_cost,
            })
            .collect();
        let mut config = self.manifest.config.clone();
        for (k, v) in &input.config {
            match config.iter_mut().find(|(ck, _)| ck == k) {
                Some(slot) => slot.1 = v.clone(),
                None => config.push((k.clone(), v.clone())),
            }
        }
        Ok(wit::RequestCtx {
            request_id: input.request_id.clone(),
            tenant: input.tenant.clone(),
            route: input.route.clone(),
            messages,
            max_tokens: input.max_tokens,
            candidates,
            token_budget: input.token_budget,
            cost_budget: input.cost_budget,
            headers: input.headers.clone(),
            config,
        })
    }
}

/// Links a component against the host: deny-by-default WASI (for `wasm32-wasip2` guests) plus
/// only the `switchyard:policy/host` functions the manifest grants.
fn link(
    engine: &PolicyEngine,
    component: &Component,
    manifest: &Manifest,
) -> Result<PolicyPre<HostState>, PolicyError> {
    let mut linker = Linker::<HostState>::new(&engine.engine);
    let setup = |e: wasmtime::Error| PolicyError::Instantiate(format!("{e:#}"));
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
    {
        let mut host = linker
            .instance(&format!("switchyard:policy/host@{}", abi_version()))
            .map_err(setup)?;
        if manifest.grants(Capability::Log) {
            host.func_wrap("log", host_log).map_err(setup)?;
        }
        if manifest.grants(Capability::CountTokens) {
            host.func_wrap("count-tokens", host_count_tokens)
                .map_err(setup)?;
        }
    }
    let pre = linker.instantiate_pre(component).map_err(|e| {
        let msg = format!("{e:#}");
        if msg.contains("switchyard:policy/host") {
            let granted: Vec<&str> = manifest.capabilities.iter().map(|c| c.as_str()).collect();
            PolicyError::Capability(format!("{msg} (granted: [{}])", granted.join(", ")))
        } else if msg.contains("switchyard:policy") {
            PolicyError::Abi {
                expected: ABI,
                detail: msg,
            }
        } else {
            PolicyError::Capability(msg)
        }
    })?;
    PolicyPre::new(pre).map_err(|e| PolicyError::Abi {
        expected: ABI,
        detail: format!("{e:#}"),
    })
}

fn abi_version() -> &'static str {
    ABI.rsplit('@').next().unwrap_or("0.1.0")
}

pub(crate) struct HostState {
    limiter: Limiter,
    wasi: WasiCtx,
    table: ResourceTable,
    calls: HostCalls,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct HostCalls {
    counter: Arc<dyn TokenCounter>,
    default_model: String,
    log_calls: u32,
    log_bytes: usize,
    lines: Vec<LogLine>,
    counted_bytes: usize,
    limit_hit: Option<String>,
}

impl Default for HostCalls {
    fn default() -> Self {
        HostCalls {
            counter: Arc::new(ByteEstimate),
            default_model: String::new(),
            log_calls: 0,
            log_bytes: 0,
            lines: Vec::new(),
            counted_bytes: 0,
            limit_hit: None,
        }
    }
}

fn host_log(
    mut cx: StoreContextMut<'_, HostState>,
    (level, msg): (Level, String),
) -> wasmtime::Result<()> {
    let calls = &mut cx.data_mut().calls;
    calls.log_calls += 1;
    if calls.log_calls > MAX_LOG_CALLS || calls.log_bytes + msg.len() > MAX_LOG_BYTES {
        return Ok(());
    }
    calls.log_bytes += msg.len();
    let level = match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    };
    // Collected, and written to the gateway's log once by `LoadedPolicy::run`.
    calls.lines.push(LogLine {
        level,
        message: msg,
    });
    Ok(())
}

fn host_count_tokens(
    mut cx: StoreContextMut<'_, HostState>,
    (model, text): (String, String),
) -> wasmtime::Result<(u32,)> {
    let calls = &mut cx.data_mut().calls;
    calls.counted_bytes += text.len();
    if calls.counted_bytes > MAX_COUNT_TOKENS_BYTES {
        let msg = format!("count-tokens over {MAX_COUNT_TOKENS_BYTES} bytes of text");
        calls.limit_hit = Some(msg.clone());
        return Err(wasmtime::format_err!(msg));
    }
    let model = if model.is_empty() {
        calls.default_model.as_str()
    } else {
        model.as_str()
    };
    Ok((calls.counter.count(model, &text),))
}

/// Caps linear memory per evaluation and remembers whether the cap was what stopped the guest.
struct Limiter {
    cap: usize,
    peak: usize,
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Err(wasmtime::format_err!(
                "memory limit: growing to {desired} bytes is over {} bytes",
                self.cap
            ));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 20_000)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

fn classify(
    err: &wasmtime::Error,
    state: &HostState,
    stderr: &MemoryOutputPipe,
    timeout: Duration,
    fuel: u64,
) -> PolicyError {
    if state.limiter.hit {
        return PolicyError::MemoryLimit((state.limiter.cap >> 20) as u64);
    }
    if let Some(msg) = &state.calls.limit_hit {
        return PolicyError::HostCallLimit(msg.clone());
    }
    let said = String::from_utf8_lossy(&stderr.contents())
        .trim()
        .to_owned();
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PolicyError::Timeout(timeout.as_millis() as u64),
        Some(Trap::OutOfFuel) => PolicyError::OutOfFuel(fuel),
        Some(Trap::StackOverflow) => PolicyError::StackOverflow,
        Some(t) if said.is_empty() => PolicyError::Trap(t.to_string()),
        Some(t) => PolicyError::Trap(format!("{t}; the policy wrote: {said}")),
        None if said.is_empty() => PolicyError::Trap(format!("{err:#}")),
        None => PolicyError::Trap(format!("{err:#}; the policy wrote: {said}")),
    }
}

fn role_to_wit(r: Role) -> wit::Role {
    match r {
        Role::System => wit::Role::System,
        Role::User => wit::Role::User,
        Role::Assistant => wit::Role::Assistant,
        Role::Tool => wit::Role::Tool,
    }
}

fn role_from_wit(r: wit::Role) -> Role {
    match r {
        wit::Role::System => Role::System,
        wit::Role::User => Role::User,
        wit::Role::Assistant => Role::Assistant,
        wit::Role::Tool => Role::Tool,
    }
}

fn from_wit(d: wit::Decision) -> Decision {
    let nm = |m: wit::NewMessage| NewMessage {
        role: role_from_wit(m.role),
        content: m.content,
    };
    match d {
        wit::Decision::Deny(wit::Denial {
            status,
            code,
            reason,
        }) => Decision::Deny(Denial {
            status,
            code,
            reason,
        }),
        wit::Decision::Allow(edits) => Decision::Allow(
            edits
                .into_iter()
                .map(|e| match e {
                    wit::Edit::DropMessage(i) => Edit::DropMessage(i),
                    wit::Edit::ReplaceMessage((i, m)) => Edit::ReplaceMessage(i, nm(m)),
                    wit::Edit::InsertMessage((i, m)) => Edit::InsertMessage(i, nm(m)),
                    wit::Edit::SetMaxTokens(t) => Edit::SetMaxTokens(t),
                    wit::Edit::SetCandidates(c) => Edit::SetCandidates(c),
                    wit::Edit::SetHeader((k, v)) => Edit::SetHeader(k, v),
                    wit::Edit::Annotate((k, v)) => Edit::Annotate(k, v),
                })
                .collect(),
        ),
    }
}
