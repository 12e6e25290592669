//! What one evaluation's store holds and what bounds it: the host functions a manifest may grant
//! (with their per-evaluation caps), the memory limiter, the bound on what the host copies out
//! of the guest, and the classification of a failed call into a [`PolicyError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_policy_rules::MAX_NAME;
use wasmtime::component::{Component, Linker, ResourceTable, WasmStr};
use wasmtime::{
    PoolConcurrencyLimitError, ResourceLimiter, Store, StoreContextMut, Trap, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::PolicyPre;
use crate::bindings::switchyard::policy::host::Level;
use crate::bindings::switchyard::policy::types as wit;
use crate::engine::{PolicyEngine, TICK};
use crate::error::PolicyError;
use crate::manifest::{ABI, Capability, Manifest};
use crate::policy::{ByteEstimate, LogLine, MAX_COUNT_TOKENS_BYTES, MAX_LOG_BYTES, MAX_LOG_CALLS};
use crate::validate::{MAX_DECISION_BYTES, MAX_EDITS};

/// The most bytes wasmtime may copy out of the guest in one transfer (the decision, or the
/// arguments of one host call): its "hostcall fuel", set on every store.
///
/// It is the largest decision validation can accept, with room to spare: wasmtime charges each
/// lifted list `len × size_of` of the host's element type and each string its bytes in guest
/// memory (twice its UTF-8 length for a UTF-16 guest, hence the factor 2). A valid decision has
/// at most [`MAX_EDITS`] edits, [`MAX_DECISION_BYTES`] of message text, header values and
/// annotations, a header name of at most [`MAX_NAME`] bytes per edit, and one `set-candidates`
/// list naming each candidate once. Anything larger would be refused by validation anyway;
/// refusing it while lifting changes no verdict, only what it costs: the host never allocates
/// more than this per transfer, whatever the guest returns (with 128 slots, 128 × about 2 MiB).
pub fn lift_bound(candidates: usize) -> usize {
    MAX_EDITS * std::mem::size_of::<wit::Edit>()
        + 2 * (MAX_DECISION_BYTES + MAX_EDITS * MAX_NAME)
        + candidates.saturating_mul(std::mem::size_of::<u32>())
}

/// The text of wasmtime 48's error when a transfer is over the hostcall fuel. Its type is
/// private, so the text is matched; `tests/hostile.rs` fails if wasmtime rewords it.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Links a component against the host: deny-by-default WASI (for `wasm32-wasip2` guests) plus
/// only the `switchyard:policy/host` functions the manifest grants.
pub(crate) fn link(
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

/// A WASI context that grants nothing: no network, no files, no environment; stderr (when
/// given) captured for the error message of a failed evaluation.
pub(crate) fn deny_all_wasi(stderr: Option<MemoryOutputPipe>) -> WasiCtx {
    let mut wasi = WasiCtx::builder();
    if let Some(stderr) = stderr {
        wasi.stderr(stderr);
    }
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    wasi.build()
}

/// Whether a component imports any WASI interface (a `wasm32-wasip2` guest does; one built
/// for `wasm32-unknown-unknown` with no adapter does not).
pub(crate) fn imports_wasi(engine: &PolicyEngine, component: &Component) -> bool {
    component
        .component_type()
        .imports(&engine.engine)
        .any(|(name, _)| name.starts_with("wasi:"))
}

fn abi_version() -> &'static str {
    ABI.rsplit('@').next().unwrap_or("0.1.0")
}

pub(crate) struct HostState {
    pub(crate) limiter: Limiter,
    /// `None` for a guest that imports no WASI (the shipped policies): building a context
    /// (clocks, random, environment) for every evaluation is then pure cost.
    pub(crate) wasi: Option<WasiCtx>,
    pub(crate) table: ResourceTable,
    pub(crate) calls: HostCalls,
    /// Set by the epoch callback when the wall-clock cap ended an evaluation that had not used
    /// its CPU time: the host was overloaded, which is not the guest's fault.
    pub(crate) overloaded: bool,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            // Only a guest that imports WASI reaches this, and it was given its context; the
            // empty one keeps even a mistake here deny-by-default.
            ctx: self.wasi.get_or_insert_with(|| deny_all_wasi(None)),
            table: &mut self.table,
        }
    }
}

pub(crate) struct HostCalls {
    counter: Arc<dyn crate::policy::TokenCounter>,
    default_model: String,
    log_calls: u32,
    log_bytes: usize,
    pub(crate) lines: Vec<LogLine>,
    counted_bytes: usize,
    limit_hit: Option<String>,
}

impl HostCalls {
    pub(crate) fn new(
        counter: Arc<dyn crate::policy::TokenCounter>,
        default_model: String,
    ) -> Self {
        HostCalls {
            counter,
            default_model,
            ..HostCalls::default()
        }
    }
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

// The host functions take `WasmStr`, a view of the guest's memory: the length is checked against
// the cap before anything is copied, and a call past the cap copies nothing.
fn host_log(
    mut cx: StoreContextMut<'_, HostState>,
    (level, msg): (Level, WasmStr),
) -> wasmtime::Result<()> {
    let len = msg.to_str(&cx)?.len();
    let calls = &mut cx.data_mut().calls;
    calls.log_calls += 1;
    if calls.log_calls > MAX_LOG_CALLS || calls.log_bytes + len > MAX_LOG_BYTES {
        return Ok(());
    }
    calls.log_bytes += len;
    let level = match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    };
    let message = msg.to_str(&cx)?.into_owned();
    // Collected, and written to the gateway's log once by `LoadedPolicy::run`.
    cx.data_mut().calls.lines.push(LogLine { level, message });
    Ok(())
}

fn host_count_tokens(
    mut cx: StoreContextMut<'_, HostState>,
    (model, text): (WasmStr, WasmStr),
) -> wasmtime::Result<(u32,)> {
    let len = text.to_str(&cx)?.len();
    let calls = &mut cx.data_mut().calls;
    calls.counted_bytes = calls.counted_bytes.saturating_add(len);
    if calls.counted_bytes > MAX_COUNT_TOKENS_BYTES {
        let msg = format!("count-tokens over {MAX_COUNT_TOKENS_BYTES} bytes of text");
        calls.limit_hit = Some(msg.clone());
        return Err(wasmtime::format_err!(msg));
    }
    let counter = calls.counter.clone();
    let model = model.to_str(&cx)?;
    let model = if model.is_empty() {
        cx.data().calls.default_model.as_str()
    } else {
        model.as_ref()
    };
    Ok((counter.count(model, &text.to_str(&cx)?),))
}

/// Caps linear memory per evaluation and remembers whether the cap was what stopped the guest.
pub(crate) struct Limiter {
    pub(crate) cap: usize,
    pub(crate) peak: usize,
    pub(crate) hit: bool,
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

/// What the limits of one evaluation were, for naming the one that stopped it.
/// How many times its `timeout` an evaluation may take in wall-clock time, while its thread is
/// descheduled, before it is stopped anyway ([`PolicyError::Overloaded`]).
pub(crate) const WALL_CAP_FACTOR: u32 = 10;

/// Arms an evaluation's deadline and returns its wall-clock cap.
///
/// `timeout` is CPU time of the evaluating thread, on which the guest runs synchronously: from
/// `timeout` on, every epoch tick reads the thread's CPU clock and stops the guest once it has
/// used that much ([`PolicyError::Timeout`], the guest's fault). A thread that was descheduled
/// (an overloaded host: in the gate's c32 run, 1 evaluation in 37,000 was stopped at 10 ms of
/// wall-clock time after ~35 µs of work) keeps its time, up to `timeout` × [`WALL_CAP_FACTOR`]
/// of wall-clock time; past that it is stopped as [`PolicyError::Overloaded`], which does not
/// count against the policy's breaker. Where the thread's CPU clock cannot be read, `timeout` is
/// wall-clock time.
pub(crate) fn arm_deadline(store: &mut Store<HostState>, timeout: Duration) -> Duration {
    let wall_cap = timeout.saturating_mul(WALL_CAP_FACTOR);
    let ticks =
        |d: Duration| u64::try_from(d.as_nanos().div_ceil(TICK.as_nanos())).unwrap_or(u64::MAX);
    // One tick more: the first may come at any moment of the current one.
    store.set_epoch_deadline(ticks(timeout).saturating_add(1));
    let Some(cpu_start) = thread_cpu() else {
        store.epoch_deadline_trap();
        return wall_cap;
    };
    let started = Instant::now();
    store.epoch_deadline_callback(move |mut cx| {
        let used = thread_cpu().map_or(Duration::MAX, |now| now.saturating_sub(cpu_start));
        Ok(
            match deadline_step(used, started.elapsed(), timeout, wall_cap) {
                Step::Continue(left) => UpdateDeadline::Continue(ticks(left).max(1)),
                Step::TimedOut => UpdateDeadline::Interrupt,
                Step::Overloaded => {
                    cx.data_mut().overloaded = true;
                    UpdateDeadline::Interrupt
                }
            },
        )
    });
    wall_cap
}

/// What an epoch tick past the deadline decides.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Check again after this much more time.
    Continue(Duration),
    /// The guest used its CPU time.
    TimedOut,
    /// The wall-clock cap came first.
    Overloaded,
}

/// The deadline rule of [`arm_deadline`], given the CPU time `used` and the wall-clock time
/// `elapsed` since the evaluation started.
pub(crate) fn deadline_step(
    used: Duration,
    elapsed: Duration,
    timeout: Duration,
    wall_cap: Duration,
) -> Step {
    if used >= timeout {
        return Step::TimedOut;
    }
    let wall_left = wall_cap.saturating_sub(elapsed);
    if wall_left.is_zero() {
        return Step::Overloaded;
    }
    Step::Continue((timeout - used).min(wall_left))
}

/// CPU time the calling thread has used, if the platform can tell.
fn thread_cpu() -> Option<Duration> {
    cpu_time::ThreadTime::try_now()
        .ok()
        .map(|t| t.as_duration())
}

pub(crate) struct Bounds {
    pub(crate) timeout: Duration,
    /// The wall-clock cap (`timeout` × [`WALL_CAP_FACTOR`]).
    pub(crate) wall_cap: Duration,
    pub(crate) fuel: u64,
    pub(crate) lift: usize,
    /// Evaluations in flight when this one started.
    pub(crate) in_flight: usize,
}

pub(crate) fn classify(
    err: &wasmtime::Error,
    state: &HostState,
    stderr: &MemoryOutputPipe,
    bounds: &Bounds,
) -> PolicyError {
    if state.limiter.hit {
        return PolicyError::MemoryLimit((state.limiter.cap >> 20) as u64);
    }
    if let Some(msg) = &state.calls.limit_hit {
        return PolicyError::HostCallLimit(msg.clone());
    }
    // The pool's own per-kind limits (memories, tables) can run out before the slot count does:
    // that is load, like a full pool, not the guest's fault.
    if let Some(e) = err.downcast_ref::<PoolConcurrencyLimitError>() {
        tracing::debug!(error = %e, "policy pool limit reached");
        return PolicyError::PoolExhausted(bounds.in_flight);
    }
    let text = format!("{err:#}");
    if text.contains(HOSTCALL_FUEL_EXHAUSTED) {
        return PolicyError::OutputTooLarge(bounds.lift);
    }
    let said = String::from_utf8_lossy(&stderr.contents())
        .trim()
        .to_owned();
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) if state.overloaded => {
            PolicyError::Overloaded(bounds.wall_cap.as_millis() as u64)
        }
        Some(Trap::Interrupt) => PolicyError::Timeout(bounds.timeout.as_millis() as u64),
        Some(Trap::OutOfFuel) => PolicyError::OutOfFuel(bounds.fuel),
        Some(Trap::StackOverflow) => PolicyError::StackOverflow,
        Some(t) if said.is_empty() => PolicyError::Trap(t.to_string()),
        Some(t) => PolicyError::Trap(format!("{t}; the policy wrote: {said}")),
        None if said.is_empty() => PolicyError::Trap(text),
        None => PolicyError::Trap(format!("{text}; the policy wrote: {said}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_deadline_is_cpu_time_with_a_wall_clock_cap() {
        let (timeout, cap) = (10 * MS, 100 * MS);
        // A guest that computed for its whole timeout is stopped, whatever the wall clock says.
        assert_eq!(
            deadline_step(10 * MS, 10 * MS, timeout, cap),
            Step::TimedOut
        );
        assert_eq!(
            deadline_step(11 * MS, 99 * MS, timeout, cap),
            Step::TimedOut
        );
        // Descheduled for most of its 10 ms: it gets the CPU time it has not had.
        assert_eq!(
            deadline_step(MS / 10, 10 * MS, timeout, cap),
            Step::Continue(10 * MS - MS / 10)
        );
        // Near the cap, the next check comes at the cap, not after the CPU time left.
        assert_eq!(
            deadline_step(2 * MS, 95 * MS, timeout, cap),
            Step::Continue(5 * MS)
        );
        // Past the cap without having used its time: the host's fault.
        assert_eq!(
            deadline_step(2 * MS, 100 * MS, timeout, cap),
            Step::Overloaded
        );
        assert!(!PolicyError::Overloaded(100).is_guest_fault());
        assert!(PolicyError::Timeout(10).is_guest_fault());
        assert_eq!(PolicyError::Overloaded(100).kind(), "overloaded");
    }

    #[test]
    fn this_platform_has_a_thread_cpu_clock() {
        // Without it the timeout falls back to wall-clock time; CI's Linux must have it.
        let a = thread_cpu().expect("CLOCK_THREAD_CPUTIME_ID");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let b = thread_cpu().expect("CLOCK_THREAD_CPUTIME_ID");
        assert!(b > a, "the thread's CPU clock did not move ({x})");
    }
}
