//! Routing: which models may take a request (hard filters), and in which order (the score).
//!
//! Owns the model catalog (prices, windows, tokenizers), prompt token counts, the route and model
//! settings it routes over (`route`, filled in by the gateway's config), live per-model health
//! (breaker, latency and reliability windows) and the retry budget. Pure: no I/O on the request
//! path, and time is always passed in (`tokio::time::Instant`), so tests run on paused time.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod anomaly;
mod breaker;
pub mod candidates;
pub mod catalog;
pub mod health;
pub mod quality;
mod retry_budget;
pub mod route;
pub mod score;
pub mod split;
pub mod tokens;
mod window;
