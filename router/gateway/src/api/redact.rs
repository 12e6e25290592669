//! Error texts on read endpoints, by caller. A policy's load error or stderr and an upstream's
//! error message can hold another tenant's prompt, a file path or an upstream's account detail;
//! only the admin key sees them in full. Everyone else gets the error's class: the text up to
//! its first `:`, cut to a few words of plain characters.

use serde_json::Value;

use crate::keys::Caller;

/// JSON fields that carry free error text.
const TEXT_FIELDS: &[&str] = &[
    "last_error",
    "load_error",
    "stderr",
    "error",
    "detail",
    "message",
];

/// At most this many characters of a summary.
const SUMMARY_CHARS: usize = 48;

/// Redact `value` in place unless `caller` is the admin.
pub fn for_caller(caller: Option<&Caller>, value: &mut Value) {
    if caller != Some(&Caller::Admin) {
        redact(value);
    }
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(text) if TEXT_FIELDS.contains(&k.as_str()) => {
                        *text = summary(text);
                    }
                    other => redact(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The class of an error text, sanitised and short.
pub fn summary(text: &str) -> String {
    let head = text.split([':', '\n']).next().unwrap_or("");
    let mut out: String = head
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.'))
        .take(SUMMARY_CHARS)
        .collect();
    let out_len = out.trim().len();
    if out_len == 0 {
        out = "error".to_owned();
    }
    format!("{} (the admin key sees the full text)", out.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn texts_are_cut_to_their_class_for_others() {
        let mut v = json!({"providers": {"p": {"models": [{
            "last_error": "server_error: upstream said: tenant acme prompt 'secret plan' <script>",
            "breaker": "open",
        }]}}, "policies": [{"load_error": "/etc/policies/x/policy.toml: bad", "name": "x"}]});
        for_caller(Some(&Caller::Other), &mut v);
        let e = v["providers"]["p"]["models"][0]["last_error"]
            .as_str()
            .unwrap();
        assert_eq!(e, "server_error (the admin key sees the full text)");
        assert_eq!(v["providers"]["p"]["models"][0]["breaker"], "open");
        let l = v["policies"][0]["load_error"].as_str().unwrap();
        assert!(!l.contains('/') && !l.contains("bad"), "{l}");
        assert_eq!(v["policies"][0]["name"], "x");
    }

    #[test]
    fn the_admin_sees_everything() {
        let mut v = json!({"last_error": "timeout: after 30 s, account 1234"});
        let before = v.clone();
        for_caller(Some(&Caller::Admin), &mut v);
        assert_eq!(v, before);
        for_caller(None, &mut v);
        assert_ne!(v, before);
    }

    #[test]
    fn hostile_text_is_bounded() {
        let long = "x".repeat(10_000);
        assert!(summary(&long).len() < 100);
        assert_eq!(
            summary("\u{202e}<img>"),
            "img (the admin key sees the full text)"
        );
    }
}
