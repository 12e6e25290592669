//! `[telemetry.traces]`: OpenTelemetry traces over OTLP/HTTP (protobuf), exported by
//! `telemetry/otel.rs`. Absent = off: no exporter, no thread, nothing recorded.
//!
//! ```toml
//! [telemetry.traces]
//! endpoint = "http://127.0.0.1:4318"   # an OTLP/HTTP collector; `/v1/traces` is appended
//! sample_ratio = 0.1                   # of requests without a sampled `traceparent`
//! service_name = "switchyard"
//! content = false                      # prompt and completion text in spans (opt-in)
//! max_content_bytes = 16384            # per text attribute, when `content = true`
//! batch_delay_ms = 5000                # the batch processor's export interval
//! timeout_ms = 10000                   # one export's deadline
//! headers = { authorization = "Bearer ${OTLP_TOKEN}" }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use switchyard_types::ids::Secret;

use super::Errors;

/// `[telemetry]`: only `traces` so far (metrics are `[metrics]`, logs go to stderr).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    /// `None` = traces off.
    pub traces: Option<TracesConfig>,
}

/// `[telemetry.traces]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TracesConfig {
    /// The full OTLP/HTTP traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// Share of root requests sampled (a request with a `traceparent` follows its sampled flag).
    pub sample_ratio: f64,
    pub service_name: String,
    /// Export prompt and completion text (`gen_ai.input.messages`, `gen_ai.output.messages`).
    pub content: bool,
    pub max_content_bytes: usize,
    pub batch_delay: Duration,
    pub timeout: Duration,
    /// Sent with every export (a collector's token): values are secrets and never print.
    pub headers: Vec<(String, Secret)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    traces: Option<RawTraces>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraces {
    endpoint: String,
    sample_ratio: Option<f64>,
    service_name: Option<String>,
    #[serde(default)]
    content: bool,
    max_content_bytes: Option<u64>,
    batch_delay_ms: Option<u64>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

const TRACES_PATH: &str = "/v1/traces";

pub(super) fn load(value: Option<toml::Value>, errors: &mut Errors) -> TelemetryConfig {
    let Some(raw) = value.and_then(|v| errors.parse::<RawTelemetry>(v, "telemetry")) else {
        return TelemetryConfig::default();
    };
    TelemetryConfig {
        traces: raw.traces.and_then(|t| traces(t, errors)),
    }
}

fn traces(raw: RawTraces, errors: &mut Errors) -> Option<TracesConfig> {
    let before = errors.0.len();
    let p = |field: &str| format!("telemetry.traces.{field}");
    let endpoint = endpoint(&raw.endpoint).map_err(|m| errors.push(p("endpoint"), m));
    let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        errors.push(p("sample_ratio"), "must be between 0 and 1");
    }
    let service_name = raw.service_name.unwrap_or_else(|| "switchyard".to_owned());
    if service_name.trim().is_empty() || service_name.len() > 255 {
        errors.push(p("service_name"), "must be 1 to 255 characters");
    }
    let mut range = |field: &str, v: Option<u64>, lo: u64, hi: u64, default: u64| match v {
        Some(n) if !(lo..=hi).contains(&n) => {
            errors.push(p(field), format!("must be between {lo} and {hi}"));
            default
        }
        Some(n) => n,
        None => default,
    };
    let max_content_bytes = range(
        "max_content_bytes",
        raw.max_content_bytes,
        64,
        1 << 20,
        16384,
    );
    let batch_delay_ms = range("batch_delay_ms", raw.batch_delay_ms, 1, 60_000, 5000);
    let timeout_ms = range("timeout_ms", raw.timeout_ms, 1, 60_000, 10_000);
    let mut headers = Vec::new();
    for (name, value) in raw.headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(p("headers"), format!("invalid header name '{name}'"));
        } else if http::HeaderValue::from_str(&value).is_err() {
            // Never echo the value: it is usually a token.
            errors.push(
                format!("telemetry.traces.headers.{name}"),
                "invalid header value",
            );
        } else {
            headers.push((name, Secret::new(value)));
        }
    }
    let endpoint = endpoint.ok()?;
    (errors.0.len() == before).then(|| TracesConfig {
        endpoint,
        sample_ratio,
        service_name,
        content: raw.content,
        max_content_bytes: usize::try_from(max_content_bytes).unwrap_or(16384),
        batch_delay: Duration::from_millis(batch_delay_ms),
        timeout: Duration::from_millis(timeout_ms),
        headers,
    })
}

/// The collector's URL as the traces URL: `/v1/traces` appended unless it is already there
/// (the OTLP convention for a base endpoint, so `http://collector:4318` just works).
fn endpoint(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("'{url}' is not a URL like http://127.0.0.1:4318"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "'{url}' must be an http:// or https:// URL with a host"
        ));
    }
    if uri.query().is_some() {
        return Err("must not have a query string".to_owned());
    }
    let base = url.trim_end_matches('/');
    Ok(if base.ends_with(TRACES_PATH) {
        base.to_owned()
    } else {
        format!("{base}{TRACES_PATH}")
    })
}

impl TelemetryConfig {
    /// One line for `switchyard check`.
    pub fn summary(&self) -> String {
        match &self.traces {
            None => "traces: off".to_owned(),
            Some(t) => format!(
                "traces: OTLP/HTTP to {} as '{}', sampling {}% of new traces, content {}",
                t.endpoint,
                t.service_name,
                t.sample_ratio * 100.0,
                if t.content { "on" } else { "off" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> (TelemetryConfig, Vec<String>) {
        let mut errors = Errors::default();
        let value: toml::Value = toml::from_str(text).unwrap();
        let cfg = load(value.get("telemetry").cloned(), &mut errors);
        let errs = errors
            .0
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message));
        (cfg, errs.collect())
    }

    #[test]
    fn absent_is_off_and_defaults_fill_in() {
        assert_eq!(load_text("").0.traces, None);
        let (cfg, errs) = load_text("[telemetry.traces]\nendpoint = \"http://c:4318/\"");
        assert!(errs.is_empty(), "{errs:?}");
        let t = cfg.traces.unwrap();
        assert_eq!(t.endpoint, "http://c:4318/v1/traces");
        assert_eq!((t.sample_ratio, t.content), (1.0, false));
        assert_eq!(t.service_name, "switchyard");
        let (cfg, _) = load_text("[telemetry.traces]\nendpoint = \"https://c/x/v1/traces\"");
        assert_eq!(cfg.traces.unwrap().endpoint, "https://c/x/v1/traces");
    }

    #[test]
    fn every_bad_field_is_named() {
        let (cfg, errs) = load_text(
            "[telemetry.traces]\nendpoint = \"ftp://c\"\nsample_ratio = 1.5\nservice_name = \"\"\n\
             batch_delay_ms = 0\ntimeout_ms = 100000\nmax_content_bytes = 1\n\
             headers = { \"bad name\" = \"x\", ok = \"line\\nbreak\" }",
        );
        assert_eq!(cfg.traces, None);
        for path in [
            "telemetry.traces.endpoint:",
            "telemetry.traces.sample_ratio:",
            "telemetry.traces.service_name:",
            "telemetry.traces.batch_delay_ms:",
            "telemetry.traces.timeout_ms:",
            "telemetry.traces.max_content_bytes:",
            "telemetry.traces.headers: invalid header name 'bad name'",
            "telemetry.traces.headers.ok: invalid header value",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(path)),
                "{path} in {errs:?}"
            );
        }
        let (_, errs) = load_text("[telemetry.traces]\nendpoint = \"http://c\"\nsampling = 1");
        assert!(errs[0].starts_with("telemetry.traces"), "{errs:?}");
        let (_, errs) = load_text("[telemetry]\nlogs = {}");
        assert!(errs[0].starts_with("telemetry"), "{errs:?}");
        let (_, errs) = load_text("[telemetry.traces]\nsample_ratio = 1");
        assert!(errs[0].contains("endpoint"), "{errs:?}");
    }

    #[test]
    fn check_prints_one_traces_line() {
        assert_eq!(load_text("").0.summary(), "traces: off");
        let (cfg, _) = load_text(
            "[telemetry.traces]\nendpoint = \"http://c:4318\"\nsample_ratio = 0.25\n\
             headers = { authorization = \"Bearer s3cret\" }",
        );
        let line = cfg.summary();
        assert_eq!(
            line,
            "traces: OTLP/HTTP to http://c:4318/v1/traces as 'switchyard', sampling 25% of new \
             traces, content off"
        );
        assert!(!format!("{line} {cfg:?}").contains("s3cret"));
    }
}
