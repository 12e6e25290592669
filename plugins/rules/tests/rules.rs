//! Each rule at its boundary, and the host's wording of each refusal (the host prints these).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use switchyard_policy_rules::{
    BLOCKED_HEADERS, ContextView, DecisionView, DenialView, EditRule, EditView, MAX_DECISION_BYTES,
    MAX_EDITS, MessageOp, RuleError, validate,
};

/// Two messages, two candidates, `max_tokens` 100.
const CTX: ContextView = ContextView {
    messages: 2,
    candidates: 2,
    max_tokens: Some(100),
};

fn check<'a>(edits: &[EditView<'a>]) -> Result<(), RuleError<'a>> {
    validate(DecisionView::Allow(edits.iter().copied()), CTX)
}

/// The refusal of `edits`, which must break a rule in edit `at`.
fn refusal<'a>(edits: &[EditView<'a>], at: usize) -> (EditRule<'a>, String) {
    let err = check(edits).unwrap_err();
    match err {
        RuleError::Edit { at: got, rule } if got == at => (rule, err.to_string()),
        other => panic!("{edits:?}: expected a refusal of edit {at}, got {other:?}"),
    }
}

fn header<'a>(name: &'a str, value: &'a str) -> EditView<'a> {
    EditView::SetHeader { name, value }
}

fn annotate<'a>(key: &'a str, value: &'a str) -> EditView<'a> {
    EditView::Annotate { key, value }
}

#[test]
fn accepts_every_kind_of_edit_at_its_limits() {
    let name = format!("x-{}", "a".repeat(62));
    let text = "v".repeat(1024);
    let key = "k".repeat(64);
    check(&[
        EditView::DropMessage(0),
        EditView::ReplaceMessage {
            index: 1,
            content: "r",
        },
        // At the number of messages: appends.
        EditView::InsertMessage {
            index: 2,
            content: "i",
        },
        EditView::SetMaxTokens(100),
        EditView::SetCandidates(&[1, 0]),
        header(&name, &text),
        header("x-team-2", " ~"),
        annotate(&key, &text),
        annotate("k", ""),
    ])
    .unwrap();
    assert_eq!(check(&[]), Ok(()));
}

#[test]
fn at_most_max_edits_and_the_count_is_checked_before_the_edits() {
    let edits = vec![annotate("k", "v"); MAX_EDITS];
    assert_eq!(check(&edits), Ok(()));
    let edits = vec![annotate("k", "v"); MAX_EDITS + 1];
    let err = check(&edits).unwrap_err();
    assert_eq!(err, RuleError::TooManyEdits(257));
    assert_eq!(err.to_string(), "257 edits, over the limit of 256");
    // A hostile length is refused without walking the edits.
    let never = (0..100_000u32).map(|_| -> EditView<'static> { unreachable!() });
    assert_eq!(
        validate(DecisionView::Allow(never), CTX),
        Err(RuleError::TooManyEdits(100_000))
    );
}

#[test]
fn message_indices_refer_to_the_messages_as_received() {
    let cases = [
        (
            EditView::DropMessage(2),
            MessageOp::Drop,
            "drop-message 2: there are 2 messages",
        ),
        (
            EditView::ReplaceMessage {
                index: u32::MAX,
                content: "",
            },
            MessageOp::Replace,
            "replace-message 4294967295: there are 2 messages",
        ),
        (
            EditView::InsertMessage {
                index: 3,
                content: "",
            },
            MessageOp::Insert,
            "insert-message 3: there are 2 messages (insert at most at 2)",
        ),
    ];
    for (edit, op, text) in cases {
        let (rule, msg) = refusal(&[edit], 0);
        assert!(matches!(rule, EditRule::MessageIndex { op: o, messages: 2, .. } if o == op));
        assert_eq!(msg, format!("edit 0: {text}"));
    }
}

#[test]
fn a_message_is_dropped_or_replaced_once() {
    let drop = EditView::DropMessage(1);
    let replace = EditView::ReplaceMessage {
        index: 1,
        content: "",
    };
    let cases = [
        (drop, drop, "edit 1: drop-message 1: dropped twice"),
        (replace, drop, "edit 1: drop-message 1: also replaced"),
        (drop, replace, "edit 1: replace-message 1: also dropped"),
        (
            replace,
            replace,
            "edit 1: replace-message 1: replaced twice",
        ),
    ];
    for (first, second, text) in cases {
        let (rule, msg) = refusal(&[first, second], 1);
        assert!(
            matches!(rule, EditRule::MessageTwice { index: 1, .. }),
            "{rule:?}"
        );
        assert_eq!(msg, text);
    }
    // Inserting before a dropped or replaced message is fine, as often as wanted.
    let insert = EditView::InsertMessage {
        index: 1,
        content: "",
    };
    assert_eq!(check(&[drop, insert, insert]), Ok(()));
    assert_eq!(check(&[EditView::DropMessage(0), replace]), Ok(()));
}

#[test]
fn max_tokens_only_lowers_and_never_to_zero() {
    let (rule, msg) = refusal(&[EditView::SetMaxTokens(0)], 0);
    assert_eq!(
        (rule, msg.as_str()),
        (EditRule::MaxTokensZero, "edit 0: set-max-tokens 0")
    );
    let (rule, msg) = refusal(&[EditView::SetMaxTokens(101)], 0);
    assert_eq!(
        rule,
        EditRule::MaxTokensRaise {
            requested: 101,
            current: 100
        }
    );
    assert_eq!(
        msg,
        "edit 0: set-max-tokens 101 would raise max_tokens from 100"
    );
    // Without a max_tokens in the request, any positive value lowers the model's default.
    let open = ContextView {
        max_tokens: None,
        ..CTX
    };
    let edits = [EditView::SetMaxTokens(u32::MAX)];
    assert_eq!(validate(DecisionView::Allow(edits), open), Ok(()));
    let edits = [EditView::SetMaxTokens(0)];
    assert!(validate(DecisionView::Allow(edits), open).is_err());
}

#[test]
fn candidates_are_set_once_non_empty_distinct_and_in_range() {
    let (rule, msg) = refusal(
        &[EditView::SetCandidates(&[0]), EditView::SetCandidates(&[1])],
        1,
    );
    assert_eq!(rule, EditRule::CandidatesTwice(&[1]));
    assert_eq!(msg, "edit 1: set-candidates given twice");
    let (rule, msg) = refusal(&[EditView::SetCandidates(&[])], 0);
    assert_eq!(rule, EditRule::CandidatesEmpty);
    assert_eq!(
        msg,
        "edit 0: set-candidates is empty (deny the request instead)"
    );
    let (rule, msg) = refusal(&[EditView::SetCandidates(&[1, 2])], 0);
    assert_eq!(
        rule,
        EditRule::CandidateIndex {
            list: &[1, 2],
            index: 2,
            candidates: 2
        }
    );
    assert_eq!(msg, "edit 0: set-candidates: 2 but there are 2 candidates");
    let (rule, msg) = refusal(&[EditView::SetCandidates(&[0, 1, 0])], 0);
    assert_eq!(
        rule,
        EditRule::CandidateRepeated {
            list: &[0, 1, 0],
            index: 0
        }
    );
    assert_eq!(msg, "edit 0: set-candidates: 0 listed twice");
}

#[test]
fn header_names_are_lower_case_x_names_and_not_blocked() {
    let long = format!("x-{}", "a".repeat(63));
    for name in [
        "authorization",
        "x-",
        "X-Team",
        "x-team_1",
        "x-a b",
        long.as_str(),
    ] {
        let (rule, msg) = refusal(&[header(name, "v")], 0);
        assert_eq!(rule, EditRule::HeaderName(name));
        assert_eq!(
            msg,
            format!("edit 0: set-header '{name}': names must be lower-case and start with x-")
        );
    }
    for name in BLOCKED_HEADERS
        .iter()
        .copied()
        .chain(["x-switchyard-route"])
    {
        let (rule, msg) = refusal(&[header(name, "v")], 0);
        assert_eq!(rule, EditRule::HeaderBlocked(name));
        assert_eq!(msg, format!("edit 0: set-header '{name}' is not allowed"));
    }
    // Only the exact names are blocked, and only the gateway's prefix.
    assert_eq!(
        check(&[header("x-api-key-id", "v"), header("x-switchyard", "v")]),
        Ok(())
    );
}

#[test]
fn header_values_are_short_printable_ascii() {
    let long = "v".repeat(1025);
    for value in ["a\nb", "tab\t", "\u{7f}", "é", long.as_str()] {
        let (rule, msg) = refusal(&[header("x-a", value)], 0);
        assert_eq!(rule, EditRule::HeaderValue("x-a"));
        assert_eq!(
            msg,
            "edit 0: set-header 'x-a': the value must be printable ASCII, at most 1024 bytes"
        );
    }
    assert_eq!(check(&[header("x-a", "")]), Ok(()));
}

#[test]
fn annotation_keys_and_values_are_bounded() {
    let long_key = "k".repeat(65);
    for key in ["", long_key.as_str()] {
        let (rule, msg) = refusal(&[annotate(key, "v")], 0);
        assert_eq!(rule, EditRule::AnnotationKey(key));
        assert_eq!(msg, "edit 0: annotate: keys are 1-64 bytes");
    }
    let long = "v".repeat(1025);
    let (rule, msg) = refusal(&[annotate("k", &long)], 0);
    assert_eq!(rule, EditRule::AnnotationValue("k"));
    assert_eq!(msg, "edit 0: annotate 'k': values are at most 1024 bytes");
}

#[test]
fn strings_add_up_to_at_most_max_decision_bytes() {
    let big = "m".repeat(MAX_DECISION_BYTES - 3);
    let replace = EditView::ReplaceMessage {
        index: 0,
        content: &big,
    };
    // Insert text, header values (not names) and annotation keys and values all count.
    let insert = EditView::InsertMessage {
        index: 0,
        content: "i",
    };
    let full = [
        replace,
        insert,
        header("x-name-not-counted", "h"),
        annotate("k", ""),
    ];
    assert_eq!(check(&full), Ok(()));
    for last in [
        annotate("k", ""),
        header("x-b", "h"),
        EditView::InsertMessage {
            index: 2,
            content: "i",
        },
    ] {
        let mut over = full.to_vec();
        over.push(last);
        let (rule, msg) = refusal(&over, 4);
        assert_eq!(rule, EditRule::TooLarge);
        assert_eq!(msg, "edit 4: decision is over 1048576 bytes");
    }
}

#[test]
fn the_first_broken_rule_is_reported() {
    let (rule, _) = refusal(
        &[
            annotate("k", "v"),
            EditView::DropMessage(9),
            header("bad", ""),
        ],
        1,
    );
    assert!(matches!(rule, EditRule::MessageIndex { index: 9, .. }));
}

fn deny(status: u16, code: &str, reason: &str) -> Result<(), String> {
    let d = DenialView {
        status,
        code,
        reason,
    };
    validate(DecisionView::<'_, [EditView<'_>; 0]>::Deny(d), CTX).map_err(|e| e.to_string())
}

#[test]
fn denials_use_a_client_error_or_503_and_a_snake_case_code() {
    for status in [400, 402, 429, 499, 503] {
        assert_eq!(deny(status, "c", ""), Ok(()));
    }
    for status in [0, 200, 399, 500, 502, 504] {
        assert_eq!(
            deny(status, "c", ""),
            Err(format!("deny status {status} is not 400-499 or 503"))
        );
    }
    let max_code = "c".repeat(64);
    assert_eq!(deny(402, &max_code, ""), Ok(()));
    assert_eq!(deny(402, "budget_exceeded_2", ""), Ok(()));
    let long_code = "c".repeat(65);
    for code in ["", "Bad", "a-b", "é", long_code.as_str()] {
        assert_eq!(
            deny(402, code, ""),
            Err(format!("deny code '{code}' must be 1-64 of a-z, 0-9, _"))
        );
    }
    assert_eq!(deny(402, "c", &"r".repeat(1024)), Ok(()));
    assert_eq!(
        deny(402, "c", &"r".repeat(1025)),
        Err("deny reason is over 1024 bytes".to_owned())
    );
    let long = "r".repeat(1025);
    let d = DenialView {
        status: 402,
        code: "c",
        reason: &long,
    };
    assert_eq!(
        validate(DecisionView::<'_, [EditView<'_>; 0]>::Deny(d), CTX),
        Err(RuleError::DenyReason { code: "c" })
    );
}
