use super::*;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9090"

[providers.openai]
kind = "openai"
api_key = "${OPENAI_KEY}"

[providers.local]
kind = "openai-compatible"
dialect = "ollama"
base_url = "http://127.0.0.1:11434/v1/"

[models."gpt-4o-mini"]
provider = "openai"

[models.llama]
provider = "local"
catalog = "llama3.2"
upstream = "llama3.2:3b"

[catalog."gpt-4o-mini"]
input = 0.2
"#;

#[test]
fn a_good_config_resolves() {
    let c = load_str(GOOD, &Vars::only(&[("OPENAI_KEY", "sk-test-123")])).unwrap();
    assert_eq!(c.server.listen.port(), 9090);
    let openai = &c.providers[&ProviderId::new("openai")];
    assert_eq!(openai.base_url, "https://api.openai.com/v1");
    assert_eq!(openai.api_key.as_ref().unwrap().expose(), "sk-test-123");
    let local = &c.providers[&ProviderId::new("local")];
    assert_eq!(local.base_url, "http://127.0.0.1:11434/v1");
    assert_eq!(local.dialect, Dialect::Ollama);
    let llama = &c.models[&ModelId::new("llama")];
    assert_eq!(llama.upstream, "llama3.2:3b");
    assert!(llama.entry.is_local());
    assert_eq!(c.models[&ModelId::new("gpt-4o-mini")].entry.input, 0.2);
}

#[test]
fn every_error_is_reported_with_its_path() {
    let text = r#"
[server]
listen = "nowhere"
colour = "blue"

[providers.openai]
kind = "openai"
api_key = "${MISSING_KEY}"

[providers.anthropic]
kind = "anthropic"

[providers.weird]
kind = "carrier-pigeon"

[models."gpt-4o-mini"]
provider = "openia"

[models.mystery]
provider = "openai"

[surprise]
x = 1
"#;
    let errs = load_str(text, &Vars::only(&[])).unwrap_err();
    let text = errs.to_string();
    let expect = [
        "providers.openai.api_key: env var MISSING_KEY is not set",
        "server.colour",
        "providers.anthropic.api_key: required for kind \"anthropic\"",
        "providers.weird.kind",
        "models.gpt-4o-mini.provider: no provider named 'openia'",
        "models.mystery: 'mystery' is not in the model catalog",
        "surprise: unknown section",
    ];
    for e in expect {
        assert!(text.contains(e), "missing {e:?} in:\n{text}");
    }
}

#[test]
fn server_errors_are_collected_with_others() {
    let text = "[server]\nlisten = \"nowhere\"\n[models.x]\nprovider = \"p\"\n";
    let errs = load_str(text, &Vars::only(&[])).unwrap_err().to_string();
    assert!(errs.contains("server.listen: 'nowhere'"), "{errs}");
    assert!(errs.contains("models.x.provider"), "{errs}");
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let text = r#"
[providers.openai]
kind = "openai"
api_key = "sk-super-secret\u0001"

[models."gpt-4o-mini"]
provider = "openai"
"#;
    let errs = load_str(text, &Vars::only(&[])).unwrap_err().to_string();
    assert!(errs.contains("providers.openai.api_key"), "{errs}");
    assert!(!errs.contains("sk-super-secret"), "{errs}");

    let c = load_str(GOOD, &Vars::only(&[("OPENAI_KEY", "sk-test-123")])).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("sk-test-123"));
}

#[test]
fn syntax_errors_are_reported() {
    let errs = load_str("[server\nlisten=", &Vars::only(&[])).unwrap_err();
    assert!(errs.to_string().starts_with("TOML syntax"), "{errs}");
}

#[test]
fn an_empty_config_needs_a_model() {
    let errs = load_str("", &Vars::only(&[])).unwrap_err();
    assert_eq!(errs.to_string(), "models: at least one model is required");
}

#[test]
fn new_catalog_entries_can_be_added() {
    let text = r#"
[providers.vllm]
kind = "openai-compatible"
base_url = "http://127.0.0.1:8000/v1"

[catalog."my-finetune"]
kind = "local"
context_window = 8192
max_output = 1024
tokenizer = "llama"
capabilities = ["streaming"]

[models."my-finetune"]
provider = "vllm"
"#;
    let c = load_str(text, &Vars::only(&[])).unwrap();
    let m = &c.models[&ModelId::new("my-finetune")];
    assert_eq!(m.upstream, "my-finetune");
    assert_eq!(m.entry.context_window, 8192);
}

#[test]
fn simulator_profiles_are_validated_with_paths() {
    let text = r#"
[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:8090/ollama/v1"

[models."llama3.2"]
provider = "local"

[sim.models."llama3.2"]
error_rate = 1.5
error_fault = "explode"
"#;
    let errs = load_str(text, &Vars::only(&[])).unwrap_err().to_string();
    assert!(errs.contains("sim.models.llama3.2"), "{errs}");
}

#[test]
fn routes_resolve_with_defaults_and_an_auto_route_always_exists() {
    let base = r#"
[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:11434/v1"
[models."llama3.2"]
provider = "local"
[models."mistral-7b"]
provider = "local"
"#;
    let c = load_str(base, &Vars::only(&[])).unwrap();
    let auto = &c.routes[DEFAULT_ROUTE];
    assert_eq!(auto.models.len(), 2);
    assert_eq!(auto.weights, Optimize::Balanced.weights());

    let text = format!(
        "{base}\n[routes.cheap]\nmodels = [\"mistral-7b\", \"llama3.2\"]\noptimize = \"cost\"\n\
         max_attempts = 4\nttft_ms = 500\ntotal_ms = 5000\nretry = {{ max_per_model = 2 }}\n"
    );
    let c = load_str(&text, &Vars::only(&[])).unwrap();
    let cheap = &c.routes["cheap"];
    assert_eq!(cheap.models[0].as_str(), "mistral-7b");
    assert_eq!(cheap.weights, Optimize::Cost.weights());
    assert_eq!(cheap.max_attempts, 4);
    assert_eq!(cheap.ttft, std::time::Duration::from_millis(500));
    assert_eq!(cheap.retry.max_per_model, 2);
    assert_eq!(cheap.retry.base_ms, 100);
    assert!(c.routes.contains_key(DEFAULT_ROUTE));
}

#[test]
fn route_errors_are_reported_with_paths() {
    let text = r#"
[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:11434/v1"
[models."llama3.2"]
provider = "local"
[routes.bad]
models = ["llama3.2", "ghost", "llama3.2"]
optimize = "cost"
weights = { cost = 1.0 }
ttft_ms = 9000
total_ms = 1000
[routes."llama3.2"]
models = ["llama3.2"]
[routes.empty]
models = []
max_attempts = 0
[routes.odd]
models = ["llama3.2"]
weights = { cost = -1.0 }
optimize = "speed"
"#;
    let errs = load_str(text, &Vars::only(&[])).unwrap_err().to_string();
    for want in [
        "routes.bad.models[1]: no model named 'ghost'",
        "routes.bad.models[2]: 'llama3.2' is listed twice",
        "routes.bad: set `optimize` or `weights`, not both",
        "routes.bad.ttft_ms: 9000 exceeds total_ms (1000)",
        "routes.\"llama3.2\": 'llama3.2' is also a model name",
        "routes.empty.models: must name at least one model",
        "routes.empty.max_attempts",
        "routes.odd.optimize",
    ] {
        assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
    }
}

#[test]
fn edge_settings_refuse_careless_values_by_path() {
    let text = r#"
[server]
listen = "0.0.0.0:8080"
header_read_ms = 0
idle_ms = 99999999999
max_in_flight = 0
allowed_hosts = ["evil example", "a/b"]
cors_origins = ["app.example", "*"]
[auth]
mode = "open"
budget_wait_ms = 600000
[metrics]
token = "short"
[models.x]
provider = "p"
"#;
    let errs = load_str(text, &Vars::only(&[])).unwrap_err().to_string();
    for path in [
        "server.header_read_ms",
        "server.idle_ms",
        "server.max_in_flight",
        "server.allowed_hosts[0]",
        "server.allowed_hosts[1]",
        "server.cors_origins[0]",
        "auth.mode",
        "auth.budget_wait_ms",
        "metrics.token",
    ] {
        assert!(
            errs.contains(&format!("{path}:")),
            "{path} missing in:\n{errs}"
        );
    }
    assert!(
        !errs.contains("cors_origins[1]"),
        "`*` is a valid origin list entry"
    );
    assert!(!errs.contains("short"), "a secret is never echoed: {errs}");
    // A mode that does not exist, and a wrong type, are refused too.
    for bad in [
        "[auth]\nmode = \"off\"\n",
        "[server]\nmax_in_flight = \"many\"\n",
    ] {
        let errs = load_str(bad, &Vars::only(&[])).unwrap_err().to_string();
        assert!(
            errs.contains("auth.mode") || errs.contains("server.max_in_flight"),
            "{errs}"
        );
    }
}

#[test]
fn the_auth_mode_defaults_from_the_admin_key_and_the_listen_address() {
    let with = |extra: &str, vars: &[(&str, &str)]| {
        let text = format!("{GOOD}\n{extra}");
        let mut all = vec![("OPENAI_KEY", "sk-test-123")];
        all.extend_from_slice(vars);
        load_str(&text, &Vars::only(&all)).unwrap()
    };
    assert_eq!(with("", &[]).auth.mode(), AuthMode::Open);
    let admin = [("SWITCHYARD_ADMIN_KEY", "an-admin-key-of-24-chars")];
    assert_eq!(with("", &admin).auth.mode(), AuthMode::Keys);
    let open = with("[auth]\nmode = \"open\"\n", &admin);
    assert_eq!(open.auth.mode(), AuthMode::Open, "an explicit mode wins");
    // Loopback: the loopback names and the listen address; `*` only when told.
    let c = with("", &[]);
    assert!(c.server.allowed_hosts.contains(&"localhost".to_owned()));
    assert!(!c.server.allowed_hosts.contains(&"*".to_owned()));
}

#[test]
fn redis_settings_refuse_careless_values_by_path() {
    let base = "[models.\"gpt-4o-mini\"]\nprovider = \"p\"\n[providers.p]\nkind = \"openai\"\napi_key = \"k\"\n";
    let errs = |redis: &str| {
        load_str(&format!("{base}[redis]\n{redis}"), &Vars::only(&[]))
            .unwrap_err()
            .to_string()
    };
    let e = errs(
        r#"url = "http://127.0.0.1:6379"
cache_url = "redis://127.0.0.1:6379/0"
timeout_ms = 0
reservation_ttl_ms = 10
prefix = "has space and a very long name that goes on"
on_failure = { budgets = "closed", cache = "closed" }
"#,
    );
    for want in [
        "redis.url: must be redis://",
        "redis.timeout_ms",
        "redis.reservation_ttl_ms",
        "redis.prefix",
        "redis.on_failure.cache: must be \"local\"",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
    assert!(!e.contains("127.0.0.1"), "no URL echoed: {e}");
    // The cache may not share the counters' server.
    let e = errs("url = \"redis://h:1/0\"\ncache_url = \"redis://h:1/0\"\n");
    assert!(
        e.contains("redis.cache_url: must name another server"),
        "{e}"
    );
    // Wrong types, unknown values and keys, a missing url: each named.
    for (text, want) in [
        ("url = 7\n", "redis.url"),
        (
            "url = \"redis://h/0\"\non_failure = \"open\"\n",
            "redis.on_failure",
        ),
        (
            "url = \"redis://h/0\"\non_failure = 3\n",
            "redis.on_failure",
        ),
        (
            "url = \"redis://h/0\"\non_failure = { rates = \"maybe\" }\n",
            "redis.on_failure",
        ),
        ("url = \"redis://h/0\"\nttl = 5\n", "redis"),
        ("timeout_ms = 5\n", "missing field `url`"),
    ] {
        let e = errs(text);
        assert!(e.contains(want), "{text:?}: missing {want:?} in:\n{e}");
    }
}

#[test]
fn redis_settings_resolve_with_their_defaults_and_per_use_failure_modes() {
    let base = "[models.\"gpt-4o-mini\"]\nprovider = \"p\"\n[providers.p]\nkind = \"openai\"\napi_key = \"k\"\n";
    let c = load_str(
        &format!("{base}[redis]\nurl = \"redis://h/0\"\n"),
        &Vars::only(&[]),
    )
    .unwrap();
    let r = c.redis.unwrap();
    assert_eq!(
        (r.timeout_ms, r.reservation_ttl_ms, r.prefix.as_str()),
        (10, 300_000, "sy")
    );
    assert_eq!(r.budgets_on_failure(), OnFailure::Local);
    let c = load_str(
        &format!("{base}[redis]\nurl = \"redis://h/0\"\non_failure = {{ budgets = \"closed\" }}\n"),
        &Vars::only(&[]),
    )
    .unwrap();
    let r = c.redis.unwrap();
    assert_eq!(
        (r.budgets_on_failure(), r.rates_on_failure()),
        (OnFailure::Closed, OnFailure::Local)
    );
    assert!(load_str(base, &Vars::only(&[])).unwrap().redis.is_none());
}
