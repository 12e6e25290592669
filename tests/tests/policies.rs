//! `switchyard demo` runs the four shipped policies on every request (built by
//! `policies/build.sh`, loaded from the repository's `policies/` folder).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use switchyard_e2e::Running;

#[tokio::test]
async fn the_demo_runs_all_four_policies_on_every_request() {
    let gw = Running::demo();
    let http = reqwest::Client::new();
    let listing: Value = http
        .get(format!("{}/ai/policies", gw.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let active: Vec<&str> = listing["policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "active")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        active,
        ["context-budget", "cost-cap", "pii-redact", "prefer-local"],
        "{listing}"
    );
    for route in ["auto", "cheap", "fast", "reliable"] {
        let v: Value = http
            .post(format!("{}/ai/route", gw.base_url))
            .json(&json!({"route": route, "prompt": "Write to ann@example.com", "max_tokens": 32}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ran: Vec<&str> = v["routing"]["policies"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|r| r["policy"].as_str().unwrap().split('@').next().unwrap())
            .collect();
        assert_eq!(
            ran,
            ["pii-redact", "context-budget", "cost-cap", "prefer-local"],
            "{route}: {v}"
        );
    }
    // The address never reaches the log: policies annotate counts, not values.
    assert!(
        gw.log().iter().all(|l| !l.contains("ann@example.com")),
        "the e-mail address was logged"
    );
}
