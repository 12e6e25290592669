//! The manifest test cases (`policy.toml` + `tests/*.json`), run natively; see [`super`].

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use toml::Table;

use crate::{Candidate, Decision, Edit, Message, NewMessage, RequestCtx, Role};

/// The ABI this SDK implements.
pub const ABI: &str = "switchyard:policy@0.1.0";

/// One `[[tests]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestTest {
    /// Name of the case.
    pub name: String,
    /// Input JSON, relative to the manifest's folder.
    pub input: String,
    /// Expected decision JSON, relative to the manifest's folder.
    pub expect: String,
}

/// The parts of `policy.toml` that matter for running the cases (all fields are checked).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Folder of the manifest.
    pub dir: PathBuf,
    /// `name`.
    pub name: String,
    /// `wasm`.
    pub wasm: String,
    /// `capabilities`.
    pub capabilities: Vec<String>,
    /// `[config]`, values as strings.
    pub config: Vec<(String, String)>,
    /// `[[tests]]`.
    pub tests: Vec<ManifestTest>,
}

impl Manifest {
    /// Whether the manifest grants `read-content`.
    pub fn reads_content(&self) -> bool {
        self.capabilities.iter().any(|c| c == "read-content")
    }
}

fn check_keys(table: &Table, allowed: &[&str], what: &str) -> Result<(), String> {
    match table.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{what}: unknown field `{k}`")),
        None => Ok(()),
    }
}

fn req_str<'a>(table: &'a Table, key: &str, what: &str) -> Result<&'a str, String> {
    table
        .get(key)
        .and_then(toml::Value::as_str)
        .ok_or_else(|| format!("{what}: `{key}` must be a string"))
}

fn str_list(v: Option<&toml::Value>, what: &str) -> Result<Vec<String>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let arr = v
        .as_array()
        .ok_or_else(|| format!("{what} must be an array of strings"))?;
    arr.iter()
        .map(|x| {
            x.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{what} must be an array of strings"))
        })
        .collect()
}

fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Read and check `DIR/policy.toml`.
pub fn load_manifest(dir: impl AsRef<Path>) -> Result<Manifest, String> {
    let dir = dir.as_ref().to_path_buf();
    let path = dir.join("policy.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let t: Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let top = [
        "name",
        "version",
        "abi",
        "description",
        "wasm",
        "capabilities",
        "failure_mode",
        "order",
        "routes",
        "limits",
        "config",
        "tests",
    ];
    check_keys(&t, &top, "policy.toml")?;
    let name = req_str(&t, "name", "policy.toml")?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!("name {name:?} must be [a-z0-9-]+"));
    }
    let version = req_str(&t, "version", "policy.toml")?;
    if !is_semver(version) {
        return Err(format!("version {version:?} is not semver"));
    }
    let abi = req_str(&t, "abi", "policy.toml")?;
    if abi != ABI {
        return Err(format!("abi {abi:?}: this SDK implements {ABI}"));
    }
    if t.get("description").is_some() {
        req_str(&t, "description", "policy.toml")?;
    }
    let wasm = req_str(&t, "wasm", "policy.toml")?.to_owned();
    let capabilities = str_list(t.get("capabilities"), "capabilities")?;
    if let Some(c) = capabilities
        .iter()
        .find(|c| !["log", "count-tokens", "read-content"].contains(&c.as_str()))
    {
        return Err(format!("unknown capability {c:?}"));
    }
    match t.get("failure_mode").and_then(toml::Value::as_str) {
        Some("open" | "closed") => {}
        other => {
            return Err(format!(
                "failure_mode must be \"open\" or \"closed\", got {other:?}"
            ));
        }
    }
    if t.get("order").is_some_and(|o| o.as_integer().is_none()) {
        return Err("order must be an integer".into());
    }
    str_list(t.get("routes"), "routes")?;
    if let Some(l) = t.get("limits") {
        let l = l.as_table().ok_or("limits must be a table")?;
        check_keys(
            l,
            &[
                "timeout_ms",
                "memory_mb",
                "fuel",
                "max_input_bytes",
                "max_messages",
            ],
            "[limits]",
        )?;
        let int = |k: &str| {
            l.get(k).map(|v| {
                v.as_integer()
                    .ok_or(format!("limits.{k} must be an integer"))
            })
        };
        if let Some(ms) = int("timeout_ms").transpose()?
            && !(1..=50).contains(&ms)
        {
            return Err(format!("limits.timeout_ms {ms} is outside 1..=50"));
        }
        if let Some(mb) = int("memory_mb").transpose()?
            && !(1..=64).contains(&mb)
        {
            return Err(format!("limits.memory_mb {mb} is outside 1..=64"));
        }
        if int("fuel").transpose()?.is_some_and(|f| f < 1) {
            return Err("limits.fuel must be positive".into());
        }
        // The host's ranges, from the shared rules crate.
        use switchyard_policy_rules::input_limits as il;
        let memory_mb = int("memory_mb").transpose()?.unwrap_or(16);
        if let Some(b) = int("max_input_bytes").transpose()? {
            if !(1..=il::MAX_INPUT_BYTES as i64).contains(&b) {
                return Err(format!(
                    "limits.max_input_bytes {b} is outside 1..={}",
                    il::MAX_INPUT_BYTES
                ));
            }
            if b > (memory_mb << 20) / 2 {
                return Err(format!(
                    "limits.max_input_bytes {b} is over half of limits.memory_mb ({memory_mb} MiB)"
                ));
            }
        }
        if let Some(n) = int("max_messages").transpose()?
            && !(1..=il::MAX_MESSAGES as i64).contains(&n)
        {
            return Err(format!(
                "limits.max_messages {n} is outside 1..={}",
                il::MAX_MESSAGES
            ));
        }
    }
    let mut config = Vec::new();
    if let Some(c) = t.get("config") {
        let c = c.as_table().ok_or("config must be a table")?;
        for (k, v) in c {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(format!("[config] {k}: only strings, numbers and booleans")),
            };
            config.push((k.clone(), s));
        }
    }
    let mut tests = Vec::new();
    if let Some(ts) = t.get("tests") {
        let ts = ts.as_array().ok_or("tests must be an array of tables")?;
        for x in ts {
            let x = x.as_table().ok_or("tests must be an array of tables")?;
            check_keys(x, &["name", "input", "expect"], "[[tests]]")?;
            tests.push(ManifestTest {
                name: req_str(x, "name", "[[tests]]")?.to_owned(),
                input: req_str(x, "input", "[[tests]]")?.to_owned(),
                expect: req_str(x, "expect", "[[tests]]")?.to_owned(),
            });
        }
    }
    Ok(Manifest {
        dir,
        name: name.to_owned(),
        wasm,
        capabilities,
        config,
        tests,
    })
}

fn role_from(s: &str) -> Result<Role, String> {
    Ok(match s {
        "system" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        _ => return Err(format!("unknown role {s:?}")),
    })
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

type Obj = Map<String, Value>;

fn obj<'a>(v: &'a Value, what: &str, allowed: &[&str]) -> Result<&'a Obj, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("{what} must be an object"))?;
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{what}: unknown field `{k}`")),
        None => Ok(o),
    }
}

fn get_str(o: &Obj, k: &str, default: &str) -> Result<String, String> {
    match o.get(k) {
        None => Ok(default.to_owned()),
        Some(v) => v
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("`{k}` must be a string")),
    }
}

fn get_u64(o: &Obj, k: &str) -> Result<Option<u64>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`{k}` must be a non-negative integer")),
    }
}

fn get_u32(o: &Obj, k: &str) -> Result<Option<u32>, String> {
    get_u64(o, k)?
        .map(|v| u32::try_from(v).map_err(|_| format!("`{k}` does not fit in u32")))
        .transpose()
}

fn get_bool(o: &Obj, k: &str) -> Result<bool, String> {
    match o.get(k) {
        None => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| format!("`{k}` must be a boolean")),
    }
}

/// Build the context the host would pass for a test input (see the module docs for defaults).
pub fn ctx_from_json(input: &Value, manifest: &Manifest) -> Result<RequestCtx, String> {
    let top = [
        "request_id",
        "tenant",
        "route",
        "messages",
        "max_tokens",
        "candidates",
        "token_budget",
        "cost_budget",
        "headers",
        "config",
    ];
    let o = obj(input, "input", &top)?;
    let mut messages = Vec::new();
    for (i, m) in o
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("`messages` must be an array")?
        .iter()
        .enumerate()
    {
        let what = format!("messages[{i}]");
        let m = obj(m, &what, &["role", "content", "tokens", "tool_related"])?;
        let content = get_str(m, "content", "")?;
        messages.push(Message {
            role: role_from(&get_str(m, "role", "")?)?,
            content_len: u32::try_from(content.len()).unwrap_or(u32::MAX),
            content: manifest.reads_content().then_some(content),
            tokens: get_u32(m, "tokens")?.ok_or_else(|| format!("{what}: `tokens` is required"))?,
            tool_related: get_bool(m, "tool_related")?,
        });
    }
    let total: u64 = messages.iter().map(|m| u64::from(m.tokens)).sum();
    let mut candidates = Vec::new();
    let fields = [
        "model",
        "provider",
        "context_window",
        "max_output_tokens",
        "input_price",
        "output_price",
        "score",
        "local",
        "prompt_tokens",
        "estimated_cost",
    ];
    for (i, c) in o
        .get("candidates")
        .and_then(Value::as_array)
        .ok_or("`candidates` must be an array")?
        .iter()
        .enumerate()
    {
        let what = format!("candidates[{i}]");
        let c = obj(c, &what, &fields)?;
        let need = |k: &str| get_u64(c, k)?.ok_or_else(|| format!("{what}: `{k}` is required"));
        let need32 = |k: &str| get_u32(c, k)?.ok_or_else(|| format!("{what}: `{k}` is required"));
        candidates.push(Candidate {
            model: get_str(c, "model", "")?,
            provider: get_str(c, "provider", "")?,
            context_window: need32("context_window")?,
            max_output_tokens: need32("max_output_tokens")?,
            input_price: need("input_price")?,
            output_price: need("output_price")?,
            score: c
                .get("score")
                .map_or(Some(0.0), Value::as_f64)
                .ok_or("`score` must be a number")?,
            local: get_bool(c, "local")?,
            prompt_tokens: get_u32(c, "prompt_tokens")?
                .unwrap_or(u32::try_from(total).unwrap_or(u32::MAX)),
            estimated_cost: get_u64(c, "estimated_cost")?.unwrap_or(0),
        });
    }
    let mut headers = Vec::new();
    if let Some(h) = o.get("headers") {
        for pair in h.as_array().ok_or("`headers` must be an array of pairs")? {
            match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(k), Value::String(v)]) => {
                    headers.push((k.to_ascii_lowercase(), v.clone()))
                }
                _ => return Err("`headers` must be an array of [name, value] pairs".into()),
            }
        }
    }
    let mut config = manifest.config.clone();
    if let Some(c) = o.get("config") {
        for (k, v) in c.as_object().ok_or("`config` must be an object")? {
            // As in the host: test files give config values as strings.
            let v = v
                .as_str()
                .ok_or_else(|| format!("config `{k}` must be a string"))?
                .to_owned();
            match config.iter_mut().find(|(ck, _)| ck == k) {
                Some(slot) => slot.1 = v,
                None => config.push((k.clone(), v)),
            }
        }
    }
    Ok(RequestCtx {
        request_id: get_str(o, "request_id", "test")?,
        tenant: get_str(o, "tenant", "")?,
        route: get_str(o, "route", "auto")?,
        messages,
        max_tokens: get_u32(o, "max_tokens")?,
        candidates,
        token_budget: get_u32(o, "token_budget")?,
        cost_budget: get_u64(o, "cost_budget")?,
        headers,
        config,
    })
}

fn new_message_json(m: &NewMessage) -> Value {
    json!({"role": role_name(m.role), "content": m.content})
}

/// The decision in the expected-file format (`{"allow": [...]}` / `{"deny": {...}}`).
pub fn decision_to_json(d: &Decision) -> Value {
    match d {
        Decision::Allow(edits) => {
            let edits: Vec<Value> = edits
                .iter()
                .map(|e| match e {
                    Edit::DropMessage(i) => json!({"drop_message": i}),
                    Edit::ReplaceMessage((i, m)) => {
                        json!({"replace_message": [i, new_message_json(m)]})
                    }
                    Edit::InsertMessage((i, m)) => {
                        json!({"insert_message": [i, new_message_json(m)]})
                    }
                    Edit::SetMaxTokens(n) => json!({"set_max_tokens": n}),
                    Edit::SetCandidates(c) => json!({"set_candidates": c}),
                    Edit::SetHeader((k, v)) => json!({"set_header": [k, v]}),
                    Edit::Annotate((k, v)) => json!({"annotate": [k, v]}),
                })
                .collect();
            json!({"allow": edits})
        }
        Decision::Deny(d) => {
            json!({"deny": {"status": d.status, "code": d.code, "reason": d.reason}})
        }
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Run one case of a loaded manifest; `Err` describes the mismatch.
pub fn run_case(
    manifest: &Manifest,
    case: &ManifestTest,
    evaluate: impl Fn(RequestCtx) -> Decision,
) -> Result<(), String> {
    let input = read_json(&manifest.dir.join(&case.input))?;
    let expect = read_json(&manifest.dir.join(&case.expect))?;
    let ctx = ctx_from_json(&input, manifest).map_err(|e| format!("{}: {e}", case.input))?;
    let decision = evaluate(ctx.clone());
    crate::validate(&decision, &ctx)
        .map_err(|e| format!("the host would refuse the decision: {e}"))?;
    let got = decision_to_json(&decision);
    if got == expect {
        Ok(())
    } else {
        Err(format!("expected {expect}\n     got {got}"))
    }
}

/// Run every `[[tests]]` case of `DIR/policy.toml` against `evaluate`. Returns the number of
/// cases, or every failure (one per line block).
pub fn run_manifest_tests(
    dir: impl AsRef<Path>,
    evaluate: impl Fn(RequestCtx) -> Decision,
) -> Result<usize, String> {
    let manifest = load_manifest(dir)?;
    let failures: Vec<String> = manifest
        .tests
        .iter()
        .filter_map(|case| {
            run_case(&manifest, case, &evaluate)
                .err()
                .map(|e| format!("[{}] {e}", case.name))
        })
        .collect();
    if failures.is_empty() {
        Ok(manifest.tests.len())
    } else {
        Err(failures.join("\n"))
    }
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
