//! Wire-fixture helpers shared by the provider adapters' tests: fixture files, golden bodies, error tables and SSE playback through the real framing and driver.

use std::path::PathBuf;

use futures::StreamExt;

use http::HeaderMap;
use serde_json::Value;

use crate::{MapError, ProviderError, StreamParser, parse_stream};
use switchyard_types::StreamEvent;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wire")
        .join(name)
}

pub(crate) fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Compare with a golden file, or rewrite it when `UPDATE_FIXTURES=1`.
pub(crate) fn assert_golden(name: &str, actual: &Value) {
    if std::env::var("UPDATE_FIXTURES").as_deref() == Ok("1") {
        let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
        std::fs::create_dir_all(fixture_path("")).unwrap();
        std::fs::write(fixture_path(name), text).unwrap();
        return;
    }
    let expected: Value = serde_json::from_str(&fixture(name)).unwrap();
    let mut diffs = Vec::new();
    json_diff("", &expected, actual, &mut diffs);
    let diffs = diffs.join("\n");
    assert!(
        diffs.is_empty(),
        "{name} (UPDATE_FIXTURES=1 rewrites it):\n{diffs}"
    );
}

fn json_diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for key in e.keys().chain(a.keys().filter(|k| !e.contains_key(*k))) {
                let p = format!("{path}/{key}");
                match (e.get(key), a.get(key)) {
                    (Some(e), Some(a)) => json_diff(&p, e, a, out),
                    (Some(e), None) => out.push(format!("{p}: missing (expected {e})")),
                    (None, Some(a)) => out.push(format!("{p}: unexpected {a}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                json_diff(&format!("{path}/{i}"), e, a, out);
            }
        }
        _ if expected != actual => out.push(format!("{path}: expected {expected}, got {actual}")),
        _ => {}
    }
}

/// Every case of an error-table fixture: `{status, headers?, body, kind, retryable,
/// retry_after?}`, the body a JSON value or (as a string) the raw text.
pub(crate) fn check_error_table(name: &str, map_error: MapError) {
    let cases: Vec<Value> = serde_json::from_str(&fixture(name)).unwrap();
    for case in cases {
        let mut headers = HeaderMap::new();
        for (k, v) in case["headers"].as_object().into_iter().flatten() {
            let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            headers.insert(name, v.as_str().unwrap().parse().unwrap());
        }
        let body = match &case["body"] {
            Value::String(raw) => raw.clone(),
            other => other.to_string(),
        };
        let status = case["status"].as_u64().unwrap() as u16;
        let err = map_error(status, &headers, body.as_bytes());
        let wait = err.retry_after.map(|d| d.as_secs());
        let got = (err.kind.label(), err.retryable, wait, err.status);
        let want = (
            case["kind"].as_str().unwrap(),
            case["retryable"].as_bool().unwrap(),
            case["retry_after"].as_u64(),
            Some(status),
        );
        assert_eq!(got, want, "{name}: {case}");
    }
}

/// Run SSE text through the real framing and driver, in small chunks.
pub(crate) fn run_sse<P>(text: &str, parser: P) -> (Vec<StreamEvent>, Option<ProviderError>)
where
    P: StreamParser<eventsource_stream::Event>,
{
    use eventsource_stream::Eventsource;
    let chunks: Vec<Result<Vec<u8>, std::convert::Infallible>> =
        text.as_bytes().chunks(17).map(|c| Ok(c.to_vec())).collect();
    let items = futures::stream::iter(chunks)
        .eventsource()
        .map(|r| r.map_err(|e| ProviderError::malformed("sse", e)));
    let stream = parse_stream(items, parser, crate::DEFAULT_MAX_RESPONSE_BYTES);
    let results = futures::executor::block_on(stream.collect::<Vec<_>>());
    let (mut events, mut error) = (Vec::new(), None);
    for r in results {
        match r {
            Ok(e) => events.push(e),
            Err(e) => error = Some(e),
        }
    }
    (events, error)
}
