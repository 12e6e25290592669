//! Switchyard: a multi-model AI routing gateway.
//!
//! `app(state)` builds the HTTP router; `main.rs` only parses the CLI and serves it. The folder
//! names follow a request: api → pipeline → execute → providers (see ARCHITECTURE.md).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod analyst;
pub mod api;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod exchange;
pub mod execute;
pub mod ids;
pub mod keys;
pub mod pipeline;
pub mod policy;
pub mod providers;
pub(crate) mod rng;
pub mod routing;
pub mod server;
pub mod sim;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod types;

pub use api::app;
pub use state::Gateway;
