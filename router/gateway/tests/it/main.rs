//! The gateway's integration tests, in one binary (one link, one copy of the dependencies on disk).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounting;
mod admit;
mod alerts;
mod analyst;
mod api;
mod cache;
mod common;
mod conformance;
mod controls;
mod demo_traffic;
mod doors;
mod doors_accounting;
mod doors_native;
mod feedback;
mod health_config;
mod hedge;
mod keys;
mod otel;
mod policies;
mod routing;
mod shadow;
mod spend;
mod split;
mod stream;
mod streams;
mod wire;
