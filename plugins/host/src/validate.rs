//! The host stays authoritative: every decision is checked before anything is applied.

use std::collections::HashSet;

use crate::ctx::{Decision, Edit, PolicyInput};

pub const MAX_EDITS: usize = 256;
/// Total bytes of strings in one decision.
pub const MAX_DECISION_BYTES: usize = 1 << 20;
const MAX_HEADER_VALUE: usize = 1024;
const MAX_ANNOTATION_KEY: usize = 64;
const MAX_ANNOTATION_VALUE: usize = 1024;
const MAX_REASON: usize = 1024;

/// Upstream headers a policy may never set, even with an `x-` name: they carry credentials or
/// identify the client to the network.
const BLOCKED_HEADERS: &[&str] = &[
    "x-api-key",
    "x-goog-api-key",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Checks `decision` against the context it answers. The error names the first problem.
pub fn validate(decision: &Decision, input: &PolicyInput) -> Result<(), String> {
    let edits = match decision {
        Decision::Deny(d) => {
            if !((400..=499).contains(&d.status) || d.status == 503) {
                return Err(format!("deny status {} is not 400-499 or 503", d.status));
            }
            if d.code.is_empty()
                || d.code.len() > 64
                || !d
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(format!(
                    "deny code '{}' must be 1-64 of a-z, 0-9, _",
                    d.code
                ));
            }
            if d.reason.len() > MAX_REASON {
                return Err(format!("deny reason is over {MAX_REASON} bytes"));
            }
            return Ok(());
        }
        Decision::Allow(edits) => edits,
    };
    if edits.len() > MAX_EDITS {
        return Err(format!(
            "{} edits, over the limit of {MAX_EDITS}",
            edits.len()
        ));
    }
    let n = input.messages.len() as u64;
    let c = input.candidates.len() as u64;
    let mut dropped = HashSet::new();
    let mut replaced = HashSet::new();
    let mut set_candidates = false;
    let mut bytes = 0usize;
    for (k, e) in edits.iter().enumerate() {
        let at = |msg: String| format!("edit {k}: {msg}");
        match e {
            Edit::DropMessage(i) => {
                if u64::from(*i) >= n {
                    return Err(at(format!("drop-message {i}: there are {n} messages")));
                }
                if !dropped.insert(*i) {
                    return Err(at(format!("drop-message {i}: dropped twice")));
                }
                if replaced.contains(i) {
                    return Err(at(format!("drop-message {i}: also replaced")));
                }
            }
            Edit::ReplaceMessage(i, m) => {
                if u64::from(*i) >= n {
                    return Err(at(format!("replace-message {i}: there are {n} messages")));
                }
                if dropped.contains(i) {
                    return Err(at(format!("replace-message {i}: also dropped")));
                }
                if !replaced.insert(*i) {
                    return Err(at(format!("replace-message {i}: replaced twice")));
                }
                bytes += m.content.len();
            }
            Edit::InsertMessage(i, m) => {
                if u64::from(*i) > n {
                    return Err(at(format!(
                        "insert-message {i}: there are {n} messages (insert at most at {n})"
                    )));
                }
                bytes += m.content.len();
            }
            Edit::SetMaxTokens(t) => {
                if *t == 0 {
                    return Err(at("set-max-tokens 0".to_owned()));
                }
                if let Some(cur) = input.max_tokens
                    && *t > cur
                {
                    return Err(at(format!(
                        "set-max-tokens {t} would raise max_tokens from {cur}"
                    )));
                }
            }
            Edit::SetCandidates(list) => {
                if set_candidates {
                    return Err(at("set-candidates given twice".to_owned()));
                }
                set_candidates = true;
                if list.is_empty() {
                    return Err(at(
                        "set-candidates is empty (deny the request instead)".to_owned()
                    ));
                }
                let mut seen = HashSet::new();
                for i in list {
                    if u64::from(*i) >= c {
                        return Err(at(format!(
                            "set-candidates: {i} but there are {c} candidates"
                        )));
                    }
                    if !seen.insert(*i) {
                        return Err(at(format!("set-candidates: {i} listed twice")));
                    }
                }
            }
            Edit::SetHeader(name, value) => {
                let valid_name = name.len() > 2
                    && name.len() <= 64
                    && name.starts_with("x-")
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !valid_name {
                    return Err(at(format!(
                        "set-header '{name}': names must be lower-case and start with x-"
                    )));
                }
                if BLOCKED_HEADERS.contains(&name.as_str()) || name.starts_with("x-switchyard-") {
                    return Err(at(format!("set-header '{name}' is not allowed")));
                }
                if value.len() > MAX_HEADER_VALUE
                    || !value.bytes().all(|b| (0x20..0x7f).contains(&b))
                {
                    return Err(at(format!(
                        "set-header '{name}': the value must be printable ASCII, at most {MAX_HEADER_VALUE} bytes"
                    )));
                }
                bytes += value.len();
            }
            Edit::Annotate(key, value) => {
                if key.is_empty() || key.len() > MAX_ANNOTATION_KEY {
                    return Err(at(format!(
                        "annotate: keys are 1-{MAX_ANNOTATION_KEY} bytes"
                    )));
                }
                if value.len() > MAX_ANNOTATION_VALUE {
                    return Err(at(format!(
                        "annotate '{key}': values are at most {MAX_ANNOTATION_VALUE} bytes"
                    )));
                }
                bytes += key.len() + value.len();
            }
        }
        if bytes > MAX_DECISION_BYTES {
            return Err(at(format!("decision is over {MAX_DECISION_BYTES} bytes")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guests check their decisions with the SDK's copy of these rules (the SDK cannot link the
    /// host); the copies must agree, or the SDK would accept what the host refuses.
    #[test]
    fn the_guest_sdk_states_the_same_rules() {
        use switchyard_policy::decision as sdk;
        assert_eq!(sdk::MAX_EDITS, MAX_EDITS);
        assert_eq!(sdk::MAX_DECISION_BYTES, MAX_DECISION_BYTES);
        assert_eq!(sdk::MAX_ANNOTATION_KEY, MAX_ANNOTATION_KEY);
        assert_eq!(sdk::MAX_TEXT, MAX_HEADER_VALUE);
        assert_eq!(sdk::MAX_TEXT, MAX_ANNOTATION_VALUE);
        assert_eq!(sdk::MAX_TEXT, MAX_REASON);
        assert_eq!(sdk::BLOCKED_HEADERS, BLOCKED_HEADERS);
    }
    use crate::ctx::{Denial, InputCandidate, InputMessage, NewMessage, Role};

    fn input() -> PolicyInput {
        let m = |role| InputMessage {
            role,
            content: "hi".into(),
            tokens: Some(1),
            tool_related: false,
        };
        let cand = |model: &str| InputCandidate {
            model: model.into(),
            provider: "p".into(),
            context_window: 1000,
            max_output_tokens: 100,
            input_price: 1,
            output_price: 1,
            score: 0.0,
            local: false,
            prompt_tokens: None,
            estimated_cost: 0,
        };
        PolicyInput {
            request_id: "r".into(),
            tenant: String::new(),
            route: "auto".into(),
            messages: vec![m(Role::System), m(Role::User)],
            max_tokens: Some(100),
            candidates: vec![cand("a"), cand("b")],
            token_budget: None,
            cost_budget: None,
            headers: vec![],
            config: Default::default(),
        }
    }

    fn check(edits: Vec<Edit>) -> Result<(), String> {
        validate(&Decision::Allow(edits), &input())
    }

    #[test]
    fn accepts_good_edits() {
        let nm = NewMessage {
            role: Role::System,
            content: "n".into(),
        };
        check(vec![
            Edit::DropMessage(0),
            Edit::InsertMessage(2, nm.clone()),
            Edit::ReplaceMessage(1, nm),
            Edit::SetMaxTokens(50),
            Edit::SetCandidates(vec![1]),
            Edit::SetHeader("x-team".into(), "search".into()),
            Edit::Annotate("k".into(), "v".into()),
        ])
        .unwrap();
    }

    #[test]
    fn refuses_each_kind_of_bad_edit() {
        let cases: Vec<(Vec<Edit>, &str)> = vec![
            (vec![Edit::DropMessage(2)], "there are 2 messages"),
            (
                vec![Edit::DropMessage(1), Edit::DropMessage(1)],
                "dropped twice",
            ),
            (vec![Edit::SetMaxTokens(101)], "raise"),
            (vec![Edit::SetCandidates(vec![])], "empty"),
            (vec![Edit::SetCandidates(vec![0, 0])], "twice"),
            (vec![Edit::SetCandidates(vec![2])], "2 candidates"),
            (
                vec![Edit::SetHeader("authorization".into(), "x".into())],
                "start with x-",
            ),
            (
                vec![Edit::SetHeader("x-api-key".into(), "x".into())],
                "not allowed",
            ),
            (
                vec![Edit::SetHeader("x-a".into(), "a\nb".into())],
                "printable",
            ),
            (vec![Edit::Annotate(String::new(), "v".into())], "keys"),
            (
                vec![Edit::Annotate("k".into(), "v".into()); 257],
                "over the limit",
            ),
        ];
        for (edits, needle) in cases {
            let err = check(edits.clone()).unwrap_err();
            assert!(err.contains(needle), "{edits:?}: {err}");
        }
        let deny = |status| {
            validate(
                &Decision::Deny(Denial {
                    status,
                    code: "no".into(),
                    reason: String::new(),
                }),
                &input(),
            )
        };
        assert!(deny(402).is_ok() && deny(503).is_ok());
        assert!(deny(200).is_err() && deny(500).is_err());
    }
}
