#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
//! Switchyard's WASM policy host.
//!
//! A policy is a WebAssembly component implementing `plugins/wit/policy.wit`. This crate loads it
//! (manifest, sha256, compile through a private cache, link only the granted imports, run its own
//! test cases), and runs it once per request in a fresh, limited sandbox:
//!
//! - one [`PolicyEngine`]: pooling allocator, epoch interruption ticked every millisecond;
//! - per evaluation a new store and instance (nothing leaks between requests; a trap costs only
//!   that instance), a wall-clock deadline, a memory cap, a stack cap, host-call caps, and a
//!   bound on what the host copies out of the guest ([`lift_bound`]);
//! - input limits per manifest, checked before anything runs ([`LoadedPolicy::check_input`]);
//!   only the guest's own faults count against its breaker;
//! - every decision validated before the gateway applies it ([`validate()`]);
//! - a [`Registry`] over a policy folder: atomic swaps, broken versions never replace good ones.

mod bindings {
    wasmtime::component::bindgen!({ world: "policy", path: "../wit" });
}

pub mod convert;
pub mod ctx;
pub mod engine;
pub mod error;
pub mod inspect;
pub mod manifest;
pub mod policy;
pub mod registry;
mod sandbox;
pub mod stats;
pub mod testing;
pub mod validate;

pub use convert::InputOverLimit;
pub use ctx::{
    Decision, Denial, Edit, InputCandidate, InputMessage, NewMessage, PolicyInput, Role,
    apply_message_edits,
};
pub use engine::{EngineOptions, PolicyEngine};
pub use error::{LoadError, PolicyError};
pub use manifest::{ABI, Capability, FailureMode, Manifest};
pub use policy::{ByteEstimate, Evaluation, LoadedPolicy, TokenCounter};
pub use registry::{PolicySet, PolicyStatus, Registry, ReloadReport, Unloaded};
pub use sandbox::lift_bound;
pub use validate::validate;
