//! Telemetry: logging (human-readable text or one JSON object per line, `--log-format json`;
//! filter with `RUST_LOG`, default `info`) and the metrics served at `GET /metrics`
//! (`prometheus-client`: request-path families in `families.rs`, state read at scrape time in
//! `collect.rs`).

mod alerts;
mod collect;
mod families;
pub mod otel;
mod shadow;

pub use alerts::{AlertMetrics, ModelSignals, SignalTotals};
pub use collect::Sources;
pub use families::{CONTENT_TYPE, Metrics};
pub use shadow::ShadowMetrics;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is not an error worth reporting.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Where the gateway spends its own time on a request (`switchyard_overhead_seconds{stage}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Authenticate, rate-limit, read and parse the body.
    Admit,
    /// Count prompt tokens.
    Count,
    /// Candidates, filters, score.
    Route,
    /// WASM policies.
    Policy,
    /// Cache key, lookup, store.
    Cache,
    /// The log row, metrics, spend.
    Record,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Admit,
        Stage::Count,
        Stage::Route,
        Stage::Policy,
        Stage::Cache,
        Stage::Record,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Admit => "admit",
            Stage::Count => "count",
            Stage::Route => "route",
            Stage::Policy => "policy",
            Stage::Cache => "cache",
            Stage::Record => "record",
        }
    }
}
