//! The operator kit (deploy/grafana, deploy/prometheus) names only metrics the gateway serves:
//! every `switchyard_…` name in the dashboard and the rule files must be a family of a live
//! `/metrics` (the real binary, `demo` with `[redis]` so the Redis families exist too), with
//! `_bucket`/`_sum`/`_count` allowed on histograms. Recorded series (`level:metric:op`) are the
//! rule files' own and are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use switchyard_e2e::Running;
use switchyard_e2e::redis::RedisServer;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every metric name in `text`: `switchyard_[a-z0-9_]+` not inside a recorded series' name
/// (neither preceded nor followed by `:`), nor inside a longer word.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("switchyard_").map(|i| i + from) {
        let mut end = i + "switchyard_".len();
        while end < bytes.len() && matches!(bytes[end], b'a'..=b'z' | b'0'..=b'9' | b'_') {
            end += 1;
        }
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let inside_word = before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let recorded = before == Some(b':') || bytes.get(end) == Some(&b':');
        if !inside_word && !recorded {
            out.insert(text[i..end].to_owned());
        }
        from = end;
    }
    out
}

/// (name, type) of every `# TYPE` line.
fn families(exposition: &str) -> Vec<(String, String)> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_owned(), t.trim().to_owned()))
        .collect()
}

fn served(name: &str, families: &[(String, String)]) -> bool {
    families.iter().any(|(f, kind)| {
        f == name
            || (kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.as_str())))
    })
}

#[test]
fn metric_names_are_found_and_recorded_series_skipped() {
    let names = metric_names(
        "sum(rate(switchyard_requests_total{a=\"b\"}[5m])) route:switchyard_x:rate5m \
         record: model:switchyard_cost_usd:rate5m_per_min xswitchyard_y switchyard_ttft_seconds_bucket",
    );
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "switchyard_requests_total",
            "switchyard_ttft_seconds_bucket"
        ]
    );
    let f = vec![("switchyard_ttft_seconds".to_owned(), "histogram".to_owned())];
    assert!(served("switchyard_ttft_seconds_bucket", &f));
    assert!(!served("switchyard_ttft_seconds_total", &f));
}

#[tokio::test]
async fn every_metric_in_the_operator_kit_exists_in_a_live_metrics() {
    let files = [
        "grafana/switchyard.json",
        "prometheus/alerts.yml",
        "prometheus/recording.yml",
    ];
    let mut used: Vec<(String, &str)> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(deploy_dir().join(f))
            .unwrap_or_else(|e| panic!("deploy/{f}: {e}"));
        let names = metric_names(&text);
        assert!(names.len() >= 5, "deploy/{f} names only {names:?}");
        used.extend(names.into_iter().map(|n| (n, f)));
    }
    // With [redis], so that `switchyard_redis_up` is served; without a redis-server here the
    // Redis families are the only ones allowed to be missing.
    let redis = RedisServer::start();
    let overrides = redis
        .as_ref()
        .map(|r| format!("[redis]\nurl = \"{}\"\n", r.url()))
        .unwrap_or_default();
    let gw = Running::builder().demo_with(&overrides);
    let http = reqwest::Client::new();
    // One answered request, so that the request families have samples as well as their TYPE.
    let answered = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(&serde_json::json!({"model": "gpt-4o-mini", "max_tokens": 8,
                                  "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status().as_u16(), 200);
    let text = http
        .get(format!("{}/metrics", gw.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let families = families(&text);
    assert!(families.len() > 20, "{text}");
    let missing: Vec<String> = used
        .iter()
        .filter(|(n, _)| !served(n, &families))
        .filter(|(n, _)| redis.is_some() || !n.starts_with("switchyard_redis_"))
        .map(|(n, f)| format!("{n} (deploy/{f})"))
        .collect();
    assert!(
        missing.is_empty(),
        "names in the operator kit that /metrics does not serve: {missing:?}\nserved: {:?}",
        families.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
}
