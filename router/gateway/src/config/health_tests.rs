use std::time::Duration;

use crate::config::{ConfigErrors, Vars, load_str};
use switchyard_routing::health::HealthConfig;
use switchyard_types::ids::ModelId;

const BASE: &str = r#"
[providers.openai]
kind = "openai"
api_key = "sk"
[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:11434/v1"
[models."gpt-4o-mini"]
provider = "openai"
[models."gpt-4o"]
provider = "openai"
[models.mine]
provider = "local"
catalog = "custom"
[catalog.custom]
kind = "local"
context_window = 8192
max_output = 1024
tokenizer = "llama"
"#;

fn load(extra: &str) -> Result<crate::config::Config, ConfigErrors> {
    load_str(&format!("{BASE}{extra}"), &Vars::only(&[]))
}

fn errors(extra: &str) -> Vec<(String, String)> {
    let Err(e) = load(extra) else {
        panic!("accepted: {extra}");
    };
    e.0.into_iter().map(|e| (e.path, e.message)).collect()
}

fn for_model(c: &crate::config::Config, name: &str) -> HealthConfig {
    let model = &c.models[&ModelId::new(name)];
    c.health.for_model(model, &HealthConfig::default())
}

#[test]
fn health_tables_layer_over_the_defaults_the_catalog_and_each_other() {
    let c = load(
        r#"
[health]
breaker_base_ms = 5000
breaker_max_ms = 60000
breaker_failures = 3
breaker_failure_rate = 0.5
breaker_window = 10
prior_success = 19
prior_failure = 1
ttft_tau_ms = 2000
tpot_tau_ms = 40000
success_tau_ms = 120000
quota_disable_ms = 300000
ttft_ms = 700
tpot_ms = 30
[models."gpt-4o".health]
breaker_failures = 8
ttft_ms = 250
"#,
    )
    .unwrap();
    let ms = Duration::from_millis;
    let mini = for_model(&c, "gpt-4o-mini");
    assert_eq!(
        (mini.breaker_base, mini.breaker_max, mini.breaker_failures),
        (ms(5000), ms(60000), 3)
    );
    assert_eq!((mini.breaker_failure_rate, mini.breaker_window), (0.5, 10));
    assert_eq!((mini.prior_success, mini.prior_failure), (19.0, 1.0));
    assert_eq!(
        (
            mini.ttft_tau,
            mini.tpot_tau,
            mini.success_tau,
            mini.quota_disable
        ),
        (ms(2000), ms(40000), ms(120_000), ms(300_000))
    );
    // The catalog's prior for the model wins over `[health]`'s, which is for models without.
    let entry = &c.models[&ModelId::new("gpt-4o-mini")].entry;
    assert_eq!(
        mini.default_ttft,
        Duration::from_secs_f64(entry.ttft_ms.unwrap() / 1000.0)
    );
    let mine = for_model(&c, "mine");
    assert_eq!((mine.default_ttft, mine.default_tpot), (ms(700), ms(30)));
    // A model's own table wins over both, field by field.
    let big = for_model(&c, "gpt-4o");
    assert_eq!((big.breaker_failures, big.default_ttft), (8, ms(250)));
    assert_eq!(big.breaker_base, ms(5000));
    let summary = c.summary();
    assert!(
        summary.contains("health: [health] breaker_base_ms = 5000"),
        "{summary}"
    );
    assert!(
        summary.contains("gpt-4o: breaker_failures = 8, ttft_ms = 250"),
        "{summary}"
    );
    // Nothing set: the defaults and the catalog priors, and no health line.
    let c = load("").unwrap();
    let mut want = HealthConfig::default().with_catalog_priors(entry);
    assert_eq!(for_model(&c, "gpt-4o-mini"), want);
    want = HealthConfig::default();
    assert_eq!(for_model(&c, "mine"), want);
    assert!(!c.summary().contains("health:"));
}

#[test]
fn careless_health_values_are_refused_by_path() {
    let cases = [
        ("[health]\nbreaker_base_ms = 0", "health.breaker_base_ms"),
        (
            "[health]\nbreaker_max_ms = 100000000",
            "health.breaker_max_ms",
        ),
        ("[health]\nbreaker_base_ms = -5", "health.breaker_base_ms"),
        ("[health]\nbreaker_failures = 0", "health.breaker_failures"),
        (
            "[health]\nbreaker_failure_rate = 0.0",
            "health.breaker_failure_rate",
        ),
        (
            "[health]\nbreaker_failure_rate = 1.5",
            "health.breaker_failure_rate",
        ),
        (
            "[health]\nbreaker_failure_rate = nan",
            "health.breaker_failure_rate",
        ),
        ("[health]\nbreaker_window = 0", "health.breaker_window"),
        ("[health]\nbreaker_window = 33", "health.breaker_window"),
        ("[health]\nprior_success = -1", "health.prior_success"),
        ("[health]\nprior_failure = inf", "health.prior_failure"),
        (
            "[health]\nprior_success = 0\nprior_failure = 0",
            "health.prior_success",
        ),
        ("[health]\nttft_tau_ms = 0", "health.ttft_tau_ms"),
        ("[health]\nsuccess_tau_ms = 0", "health.success_tau_ms"),
        ("[health]\nquota_disable_ms = 0", "health.quota_disable_ms"),
        ("[health]\nttft_ms = 0", "health.ttft_ms"),
        ("[health]\ntpot_ms = -3", "health.tpot_ms"),
        (
            "[health]\nbreaker_base_ms = 90000\nbreaker_max_ms = 60000",
            "health.breaker_base_ms",
        ),
        ("[health]\nbreaker_fails = 3", "health.breaker_fails"),
        ("[health]\nttft_ms = \"fast\"", "health.ttft_ms"),
        (
            "[models.\"gpt-4o\".health]\nbreaker_window = 64",
            "models.gpt-4o.health.breaker_window",
        ),
        (
            "[models.\"gpt-4o\".health]\ncolour = 1",
            "models.gpt-4o.health.colour",
        ),
        // A model's period against `[health]`'s: the model's table is to blame.
        (
            "[health]\nbreaker_max_ms = 10000\n[models.\"gpt-4o\".health]\nbreaker_base_ms = 20000",
            "models.gpt-4o.health.breaker_base_ms",
        ),
    ];
    for (extra, path) in cases {
        let found = errors(extra);
        assert!(
            found.iter().any(|(p, _)| p == path),
            "{extra}: want an error at {path}, got {found:?}"
        );
    }
    // A broken `[health]` is reported once, not again for every model.
    let found = errors(
        "[health]\nbreaker_base_ms = 90000\nbreaker_max_ms = 60000\n[models.\"gpt-4o\".health]\nttft_ms = 100",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    let (_, message) = &found[0];
    assert!(message.contains("breaker_max_ms"), "{message}");
    // An unknown key is named.
    let found = errors("[health]\nbreaker_fails = 3");
    assert!(found[0].1.contains("breaker_fails"), "{found:?}");
}
