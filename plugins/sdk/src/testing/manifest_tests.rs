use super::*;
use crate::{DecisionBuilder, deny};

fn manifest(read: bool) -> Manifest {
    Manifest {
        dir: PathBuf::new(),
        name: "t".into(),
        wasm: "t.wasm".into(),
        capabilities: if read {
            vec!["read-content".into()]
        } else {
            vec![]
        },
        config: vec![("a".into(), "1".into()), ("b".into(), "x".into())],
        tests: vec![],
    }
}

#[test]
fn input_defaults_and_content_withholding() {
    let input = json!({
        "messages": [{"role": "user", "content": "héllo", "tokens": 3}],
        "candidates": [{"model": "m", "provider": "p", "context_window": 10, "max_output_tokens": 5,
                        "input_price": 1, "output_price": 2}],
        "headers": [["X-A", "b"]],
        "config": {"a": "2", "c": "true"}
    });
    let ctx = ctx_from_json(&input, &manifest(false)).unwrap();
    assert_eq!(ctx.request_id, "test");
    assert_eq!(ctx.route, "auto");
    assert_eq!(ctx.messages[0].content, None);
    assert_eq!(ctx.messages[0].content_len, 6);
    assert_eq!(ctx.candidates[0].prompt_tokens, 3);
    assert_eq!(ctx.headers, vec![("x-a".to_owned(), "b".to_owned())]);
    let cfg: Vec<(&str, &str)> = ctx
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(cfg, vec![("a", "2"), ("b", "x"), ("c", "true")]);
    let ctx = ctx_from_json(&input, &manifest(true)).unwrap();
    assert_eq!(ctx.messages[0].content.as_deref(), Some("héllo"));
}

#[test]
fn input_errors_are_reported() {
    let m = manifest(false);
    assert!(
        ctx_from_json(
            &json!({"messages": [{"role": "user"}], "candidates": []}),
            &m
        )
        .is_err()
    );
    assert!(ctx_from_json(&json!({"messages": [], "candidates": [], "bogus": 1}), &m).is_err());
    assert!(
        ctx_from_json(
            &json!({"messages": [{"role": "x", "tokens": 1}], "candidates": []}),
            &m
        )
        .is_err()
    );
}

#[test]
fn decision_json_format() {
    let mut d = DecisionBuilder::new();
    d.drop_message(1)
        .replace_message(2, Role::User, "x")
        .insert_message(1, Role::System, "note")
        .set_max_tokens(100)
        .set_candidates([1, 0])
        .set_header("x-a", "b")
        .annotate("k", "v");
    let want = json!({"allow": [{"drop_message": 1}, {"replace_message": [2, {"role": "user", "content": "x"}]},
        {"insert_message": [1, {"role": "system", "content": "note"}]}, {"set_max_tokens": 100},
        {"set_candidates": [1, 0]}, {"set_header": ["x-a", "b"]}, {"annotate": ["k", "v"]}]});
    assert_eq!(decision_to_json(&d.allow()), want);
    assert_eq!(
        decision_to_json(&deny(402, "c", "r")),
        json!({"deny": {"status": 402, "code": "c", "reason": "r"}})
    );
}

#[test]
fn manifest_checks() {
    let dir = std::env::temp_dir().join(format!("switchyard-policy-sdk-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    let good = r#"
name = "demo"
version = "0.1.0"
abi = "switchyard:policy@0.1.0"
description = "d"
wasm = "demo.wasm"
capabilities = ["log"]
failure_mode = "open"
order = 5
routes = ["*"]
[limits]
timeout_ms = 5
[config]
n = 2
f = 0.5
[[tests]]
name = "noop"
input = "tests/in.json"
expect = "tests/out.json"
"#;
    std::fs::write(dir.join("policy.toml"), good).unwrap();
    std::fs::write(
        dir.join("tests/in.json"),
        r#"{"messages": [], "candidates": []}"#,
    )
    .unwrap();
    std::fs::write(dir.join("tests/out.json"), r#"{"allow": []}"#).unwrap();
    let m = load_manifest(&dir).unwrap();
    assert_eq!(
        m.config,
        vec![
            ("f".to_owned(), "0.5".to_owned()),
            ("n".to_owned(), "2".to_owned())
        ]
    );
    assert_eq!(run_manifest_tests(&dir, |_| crate::allow()), Ok(1));
    let err = run_manifest_tests(&dir, |_| deny(402, "c", "r")).unwrap_err();
    assert!(err.contains("[noop] expected"), "{err}");
    let err = run_manifest_tests(&dir, |_| deny(200, "c", "r")).unwrap_err();
    assert!(err.contains("refuse"), "{err}");
    std::fs::write(
        dir.join("policy.toml"),
        good.replace("order = 5", "order = 5\nbogus = 1"),
    )
    .unwrap();
    assert!(load_manifest(&dir).unwrap_err().contains("bogus"));
    std::fs::write(dir.join("policy.toml"), good.replace("\"log\"", "\"net\"")).unwrap();
    assert!(load_manifest(&dir).is_err());
    std::fs::write(
        dir.join("policy.toml"),
        good.replace("timeout_ms = 5", "timeout_ms = 500"),
    )
    .unwrap();
    assert!(load_manifest(&dir).unwrap_err().contains("timeout_ms"));
    // The input limits the host reads, with its ranges.
    let limits = |extra: &str| good.replace("timeout_ms = 5", &format!("timeout_ms = 5\n{extra}"));
    std::fs::write(
        dir.join("policy.toml"),
        limits("max_input_bytes = 4096\nmax_messages = 64"),
    )
    .unwrap();
    assert!(load_manifest(&dir).is_ok());
    for (extra, needle) in [
        ("max_input_bytes = 0", "max_input_bytes"),
        ("memory_mb = 2\nmax_input_bytes = 2000000", "over half"),
        ("max_messages = 100000", "max_messages"),
    ] {
        std::fs::write(dir.join("policy.toml"), limits(extra)).unwrap();
        let err = load_manifest(&dir).unwrap_err();
        assert!(err.contains(needle), "{extra}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
