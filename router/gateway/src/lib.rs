//! Switchyard: a multi-model AI routing gateway — the composition root.
//!
//! This crate is the only one that sees every other: it reads the config, builds the shared
//! state (`Gateway`) from the lower crates, and serves the HTTP API. `app(state)` builds the
//! router; `main.rs` only parses the CLI and serves it. The modules follow a request:
//! api (ingress) → pipeline (the order of steps) → policy, cache, keys → execute → the
//! `switchyard-providers` crate (see ARCHITECTURE.md).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod cache;
pub mod config;
pub mod demo;
pub mod error;
pub mod exchange;
pub mod execute;
pub mod keys;
pub mod live;
pub mod pipeline;
pub mod policy;
pub mod server;
pub mod shared;
pub mod state;
pub mod telemetry;

pub use api::app;
pub use state::Gateway;
