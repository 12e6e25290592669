//! The host stays authoritative: every decision is checked before anything is applied.
//!
//! The rules themselves live in `switchyard-policy-rules`, shared with the guest SDK so that a
//! policy's own tests apply exactly these; this module only shows the host's types to them.

use switchyard_policy_rules::{self as rules, ContextView, DecisionView, DenialView, EditView};

use crate::ctx::{Decision, Edit, PolicyInput};

pub use switchyard_policy_rules::{MAX_DECISION_BYTES, MAX_EDITS};

/// Checks `decision` against the context it answers. The error names the first problem.
pub fn validate(decision: &Decision, input: &PolicyInput) -> Result<(), String> {
    let view = match decision {
        Decision::Deny(d) => DecisionView::Deny(DenialView {
            status: d.status,
            code: &d.code,
            reason: &d.reason,
        }),
        Decision::Allow(edits) => DecisionView::Allow(edits.iter().map(edit_view)),
    };
    let ctx = ContextView {
        messages: input.messages.len(),
        candidates: input.candidates.len(),
        max_tokens: input.max_tokens,
    };
    rules::validate(view, ctx).map_err(|e| e.to_string())
}

fn edit_view(edit: &Edit) -> EditView<'_> {
    match edit {
        Edit::DropMessage(i) => EditView::DropMessage(*i),
        Edit::ReplaceMessage(i, m) => EditView::ReplaceMessage {
            index: *i,
            content: &m.content,
        },
        Edit::InsertMessage(i, m) => EditView::InsertMessage {
            index: *i,
            content: &m.content,
        },
        Edit::SetMaxTokens(t) => EditView::SetMaxTokens(*t),
        Edit::SetCandidates(list) => EditView::SetCandidates(list),
        Edit::SetHeader(name, value) => EditView::SetHeader { name, value },
        Edit::Annotate(key, value) => EditView::Annotate { key, value },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The rules are tested in `switchyard-policy-rules`; this checks that each host type reaches
    /// the rule it should.
    #[test]
    fn refuses_each_kind_of_bad_edit() {
        let nm = NewMessage {
            role: Role::User,
            content: String::new(),
        };
        let cases: Vec<(Vec<Edit>, &str)> = vec![
            (vec![Edit::DropMessage(2)], "there are 2 messages"),
            (
                vec![Edit::ReplaceMessage(2, nm.clone())],
                "edit 0: replace-message 2: there are 2 messages",
            ),
            (
                vec![Edit::InsertMessage(3, nm)],
                "insert-message 3: there are 2 messages (insert at most at 2)",
            ),
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
        let deny = |status, code: &str, reason: &str| {
            validate(
                &Decision::Deny(Denial {
                    status,
                    code: code.into(),
                    reason: reason.into(),
                }),
                &input(),
            )
        };
        let ok = |status| deny(status, "no", "");
        assert!(ok(402).is_ok() && ok(503).is_ok());
        assert!(ok(200).is_err() && ok(500).is_err());
        let err = deny(402, "No", "").unwrap_err();
        assert!(err.contains("deny code 'No'"), "{err}");
        let err = deny(402, "no", &"r".repeat(1025)).unwrap_err();
        assert!(err.contains("deny reason is over 1024 bytes"), "{err}");
    }
}
