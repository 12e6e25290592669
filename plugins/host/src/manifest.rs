//! `policy.toml`: what a policy is, what it may do, and how it proves itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use switchyard_policy_rules::input_limits;

use crate::error::LoadError;

/// The WIT package this host implements. A manifest naming another ABI is refused.
pub const ABI: &str = "switchyard:policy@0.1.0";

/// Default wall-clock budget for one evaluation.
pub const DEFAULT_TIMEOUT_MS: u64 = 5;
/// The most an operator may allow one evaluation.
pub const MAX_TIMEOUT_MS: u64 = 50;
/// Default linear-memory cap per evaluation.
pub const DEFAULT_MEMORY_MB: u64 = 16;
/// The hard cap the engine's pool is built with.
pub const MAX_MEMORY_MB: u64 = 64;
/// Default instruction budget for `switchyard policy test`.
pub const DEFAULT_TEST_FUEL: u64 = 50_000_000;
/// Largest module accepted.
pub const MAX_MODULE_BYTES: u64 = 8 << 20;

/// What a policy may touch. Anything not granted is not linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// The host `log` import.
    Log,
    /// The host `count-tokens` import.
    CountTokens,
    /// Message text in the context (otherwise only lengths and token counts).
    ReadContent,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::CountTokens => "count-tokens",
            Capability::ReadContent => "read-content",
        }
    }
}

/// What happens to a request when the policy fails (trap, timeout, invalid decision, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Carry on without this policy's edits (an optimisation that did not run).
    #[default]
    Open,
    /// Refuse the request with 503 (a safeguard that did not run must not be skipped).
    Closed,
}

impl FailureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::Open => "open",
            FailureMode::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub fuel: Option<u64>,
    pub max_input_bytes: Option<u64>,
    pub max_messages: Option<u64>,
}

/// Limits in force for one policy, after defaults and caps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub test_fuel: u64,
    /// Bytes of text the policy may be given (see `LoadedPolicy::check_input`); a request over
    /// it is refused with 413 before any policy runs.
    pub max_input_bytes: usize,
    /// Messages the policy may be given; likewise.
    pub max_messages: usize,
}

/// A manifest test case: a context and the exact decision it must produce.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    pub name: String,
    /// JSON file with a [`crate::PolicyInput`], relative to the manifest.
    pub input: PathBuf,
    /// JSON file with the expected [`crate::Decision`], relative to the manifest.
    pub expect: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    version: String,
    abi: String,
    #[serde(default)]
    description: String,
    wasm: PathBuf,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    capabilities: Vec<Capability>,
    #[serde(default)]
    failure_mode: FailureMode,
    #[serde(default = "default_order")]
    order: i32,
    #[serde(default = "all_routes")]
    routes: Vec<String>,
    #[serde(default)]
    limits: LimitsSpec,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    #[serde(default)]
    tests: Vec<TestSpec>,
}

fn default_order() -> i32 {
    100
}

fn all_routes() -> Vec<String> {
    vec!["*".to_owned()]
}

/// A parsed and checked `policy.toml`.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub abi: String,
    pub description: String,
    /// Absolute (or as given, joined to the manifest's folder) path of the module.
    pub wasm: PathBuf,
    pub sha256: Option<String>,
    pub capabilities: Vec<Capability>,
    pub failure_mode: FailureMode,
    pub order: i32,
    pub routes: Vec<String>,
    pub limits: Limits,
    /// `[config]`, every value as a string, sorted by key.
    pub config: Vec<(String, String)>,
    pub tests: Vec<TestSpec>,
    /// The folder the manifest lives in.
    pub dir: PathBuf,
}

impl Manifest {
    /// Reads `dir/policy.toml`.
    pub fn load(dir: &Path) -> Result<Manifest, LoadError> {
        let path = dir.join("policy.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| LoadError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Manifest::parse(&text, dir)
    }

    /// Parses manifest text; relative paths are taken from `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Manifest, LoadError> {
        let raw: Raw = toml::from_str(text).map_err(|e| LoadError::Manifest(e.to_string()))?;
        let bad = |msg: String| Err(LoadError::Manifest(msg));
        if raw.name.is_empty()
            || raw.name.len() > 64
            || !raw
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad(format!(
                "name: '{}' must be 1-64 characters of a-z, 0-9 and '-'",
                raw.name
            ));
        }
        if !is_semver(&raw.version) {
            return bad(format!(
                "version: '{}' is not a semantic version (like 1.2.0)",
                raw.version
            ));
        }
        if raw.abi != ABI {
            return Err(LoadError::Abi {
                found: raw.abi,
                supported: ABI,
            });
        }
        if let Some(h) = &raw.sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return bad("sha256: must be 64 hexadecimal digits".to_owned());
        }
        if raw.routes.is_empty() {
            return bad("routes: list at least one route, or \"*\"".to_owned());
        }
        let timeout_ms = raw.limits.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return bad(format!(
                "limits.timeout_ms: {timeout_ms} is outside 1..={MAX_TIMEOUT_MS}"
            ));
        }
        let memory_mb = raw.limits.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
        if memory_mb == 0 || memory_mb > MAX_MEMORY_MB {
            return bad(format!(
                "limits.memory_mb: {memory_mb} is outside 1..={MAX_MEMORY_MB}"
            ));
        }
        let max_input_bytes = raw
            .limits
            .max_input_bytes
            .unwrap_or(input_limits::DEFAULT_MAX_INPUT_BYTES);
        if max_input_bytes == 0 || max_input_bytes > input_limits::MAX_INPUT_BYTES {
            return bad(format!(
                "limits.max_input_bytes: {max_input_bytes} is outside 1..={}",
                input_limits::MAX_INPUT_BYTES
            ));
        }
        // The input is copied into the policy's memory: it must leave room to work in.
        if max_input_bytes > (memory_mb << 20) / 2 {
            return bad(format!(
                "limits.max_input_bytes: {max_input_bytes} is over half of limits.memory_mb ({memory_mb} MiB)"
            ));
        }
        let max_messages = raw
            .limits
            .max_messages
            .unwrap_or(input_limits::DEFAULT_MAX_MESSAGES);
        if max_messages == 0 || max_messages > input_limits::MAX_MESSAGES {
            return bad(format!(
                "limits.max_messages: {max_messages} is outside 1..={}",
                input_limits::MAX_MESSAGES
            ));
        }
        let mut config = Vec::with_capacity(raw.config.len());
        for (k, v) in raw.config {
            let s = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return bad(format!(
                        "config.{k}: {} values are not supported (use a string, number or boolean)",
                        other.type_str()
                    ));
                }
            };
            config.push((k, s));
        }
        let mut capabilities = raw.capabilities;
        capabilities.sort();
        capabilities.dedup();
        Ok(Manifest {
            name: raw.name,
            version: raw.version,
            abi: raw.abi,
            description: raw.description,
            wasm: dir.join(raw.wasm),
            sha256: raw.sha256.map(|h| h.to_ascii_lowercase()),
            capabilities,
            failure_mode: raw.failure_mode,
            order: raw.order,
            routes: raw.routes,
            limits: Limits {
                timeout: Duration::from_millis(timeout_ms),
                memory_bytes: (memory_mb << 20) as usize,
                test_fuel: raw.limits.fuel.unwrap_or(DEFAULT_TEST_FUEL),
                max_input_bytes: max_input_bytes as usize,
                max_messages: max_messages as usize,
            },
            config,
            tests: raw.tests,
            dir: dir.to_path_buf(),
        })
    }

    pub fn grants(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
    }

    /// Whether the policy runs on `route`.
    pub fn applies_to(&self, route: &str) -> bool {
        self.routes.iter().any(|r| r == "*" || r == route)
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "context-budget"
        version = "0.1.0"
        abi = "switchyard:policy@0.1.0"
        wasm = "context_budget.wasm"
        capabilities = ["log", "read-content", "log"]
        failure_mode = "closed"
        order = 20
        routes = ["auto", "cheap"]
        [limits]
        timeout_ms = 10
        [config]
        keep_last_turns = 2
        note = "trimmed"
        strict = true
        [[tests]]
        name = "long"
        input = "tests/long.json"
        expect = "tests/long.expect.json"
    "#;

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::parse(GOOD, Path::new("/p/cb")).unwrap();
        assert_eq!(m.id(), "context-budget@0.1.0");
        assert_eq!(m.wasm, Path::new("/p/cb/context_budget.wasm"));
        assert_eq!(
            m.capabilities,
            vec![Capability::Log, Capability::ReadContent]
        );
        assert_eq!(m.failure_mode, FailureMode::Closed);
        assert_eq!(m.limits.timeout, Duration::from_millis(10));
        assert_eq!(m.limits.memory_bytes, 16 << 20);
        assert_eq!(m.limits.max_input_bytes, 1 << 20, "the default");
        assert_eq!(m.limits.max_messages, 4096, "the default");
        assert_eq!(
            m.config,
            vec![
                ("keep_last_turns".into(), "2".into()),
                ("note".into(), "trimmed".into()),
                ("strict".into(), "true".into())
            ]
        );
        assert!(m.applies_to("auto") && !m.applies_to("fast"));
        assert_eq!(m.tests.len(), 1);
    }

    #[test]
    fn refuses_bad_manifests_naming_the_field() {
        let cases = [
            ("name = \"Bad Name\"", "name"),
            ("version = \"1.0\"", "version"),
            ("abi = \"switchyard:policy@9.0.0\"", "not supported"),
            ("capabilities = [\"network\"]", "unknown variant"),
            ("failure_mode = \"maybe\"", "unknown variant"),
            ("[limits]\ntimeout_ms = 500", "limits.timeout_ms"),
            ("[limits]\nmemory_mb = 1024", "limits.memory_mb"),
            ("[limits]\nmax_input_bytes = 0", "limits.max_input_bytes"),
            (
                "[limits]\nmemory_mb = 4\nmax_input_bytes = 3000000",
                "over half of limits.memory_mb",
            ),
            ("[limits]\nmax_messages = 100000", "limits.max_messages"),
            ("colour = \"red\"", "unknown field"),
        ];
        for (line, needle) in cases {
            let mut fields = vec![
                ("name", "name = \"p\""),
                ("version", "version = \"1.0.0\""),
                ("abi", "abi = \"switchyard:policy@0.1.0\""),
                ("wasm", "wasm = \"p.wasm\""),
            ];
            let key = line.split([' ', '\n']).next().unwrap_or("");
            fields.retain(|(k, _)| *k != key);
            let mut text: String = fields.iter().map(|(_, l)| format!("{l}\n")).collect();
            text.push_str(line);
            let err = Manifest::parse(&text, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
