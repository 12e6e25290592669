//! The end-to-end suite, in one binary: each module starts the real `switchyard` binary and talks to it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod backup;
mod deploy_kit;
mod edge;
mod openai_client;
mod policies;
mod restart;
mod scale;
mod secrets;
mod store;
mod trust;
mod upstream;
