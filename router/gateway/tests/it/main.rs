//! The gateway's integration tests, in one binary (one link, one copy of the dependencies on disk).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod accounting;
mod admit;
mod analyst;
mod api;
mod cache;
mod conformance;
mod doors;
mod feedback;
mod health_config;
mod hedge;
mod keys;
mod policies;
mod routing;
mod shadow;
mod split;
mod streams;
