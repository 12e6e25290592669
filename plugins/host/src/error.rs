//! What can go wrong loading a policy, and running one.

use std::path::PathBuf;

/// Why one evaluation failed. The policy's `failure_mode` decides what the request sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The guest used its `timeout` of CPU time on the evaluating thread.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The evaluation ran past the wall-clock cap without using its CPU time: the thread was
    /// descheduled (an overloaded host), so it is not held against the guest.
    #[error("did not finish within {0} ms of wall-clock time on an overloaded host")]
    Overloaded(u64),
    #[error("ran out of its {0}-instruction fuel budget")]
    OutOfFuel(u64),
    #[error("exceeded its memory limit of {0} MiB")]
    MemoryLimit(u64),
    #[error("stack overflow")]
    StackOverflow,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("exceeded a host-call limit: {0}")]
    HostCallLimit(String),
    #[error("returned an invalid decision: {0}")]
    InvalidDecision(String),
    /// The guest handed the host more data in one transfer than any valid decision needs; it was
    /// refused before it was copied out of the guest's memory.
    #[error(
        "tried to hand the host more than {0} bytes at once (no valid decision needs that); refused before copying"
    )]
    OutputTooLarge(usize),
    #[error("input too large: {0}")]
    InputTooLarge(String),
    #[error("needs a capability it was not granted: {0}")]
    Capability(String),
    #[error("does not implement {expected}: {detail}")]
    Abi {
        expected: &'static str,
        detail: String,
    },
    #[error("no instance slot free ({0} evaluations in flight)")]
    PoolExhausted(usize),
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    #[error("skipped: its breaker is open after repeated failures")]
    BreakerOpen,
}

impl PolicyError {
    /// A short stable label for metrics and `/ai/policies`.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyError::Timeout(_) => "timeout",
            PolicyError::Overloaded(_) => "overloaded",
            PolicyError::OutOfFuel(_) => "out_of_fuel",
            PolicyError::MemoryLimit(_) => "memory",
            PolicyError::StackOverflow => "stack_overflow",
            PolicyError::Trap(_) => "trap",
            PolicyError::HostCallLimit(_) => "host_call_limit",
            PolicyError::InvalidDecision(_) => "invalid_decision",
            PolicyError::OutputTooLarge(_) => "output_too_large",
            PolicyError::InputTooLarge(_) => "input_too_large",
            PolicyError::Capability(_) => "capability",
            PolicyError::Abi { .. } => "abi",
            PolicyError::PoolExhausted(_) => "pool_exhausted",
            PolicyError::Instantiate(_) => "instantiate",
            PolicyError::BreakerOpen => "breaker_open",
        }
    }

    /// Whether the policy itself is to blame, so that the failure counts against its health
    /// (breaker, error count). Input over the policy's limits is the caller's doing, a full pool
    /// is load, and a breaker skip is not an evaluation: none of them may open the breaker, or
    /// any caller could switch a policy off by sending oversized requests or a burst.
    pub fn is_guest_fault(&self) -> bool {
        !matches!(
            self,
            PolicyError::InputTooLarge(_)
                | PolicyError::PoolExhausted(_)
                | PolicyError::Overloaded(_)
                | PolicyError::BreakerOpen
        )
    }
}

/// Why a policy could not be loaded (the previous version, if any, keeps serving).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("policy.toml: {0}")]
    Manifest(String),
    #[error("policy.toml: abi '{found}' is not supported (this gateway implements {supported})")]
    Abi {
        found: String,
        supported: &'static str,
    },
    #[error("module is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: u64, max: u64 },
    #[error("sha256 mismatch: policy.toml says {expected}, the module is {actual}")]
    Sha256 { expected: String, actual: String },
    #[error("not a valid component: {0}")]
    Compile(String),
    #[error("{0}")]
    Link(PolicyError),
    #[error("self-test '{name}' failed: {message}")]
    SelfTest { name: String, message: String },
    #[error("two policies are named '{0}'")]
    Duplicate(String),
}
