//! Checking a decision the way the host will. The rules are those of `switchyard-policy-rules`,
//! the crate the host runs too; this module shows the WIT types to them and reports a violation
//! as the SDK's [`EditError`].

use std::fmt;

use switchyard_policy_rules::{
    self as rules, ContextView, DecisionView, DenialView, EditRule, EditView, RuleError,
};

use crate::decision::{MAX_DECISION_BYTES, MAX_EDITS};
use crate::{Decision, Edit, RequestCtx};

/// A decision the host would refuse, found by [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// More than [`MAX_EDITS`] edits.
    TooManyEdits(usize),
    /// A message index that is not below the number of messages (inserts: not above it).
    MessageIndex(u32),
    /// The same message is dropped twice, replaced twice, or both dropped and replaced.
    MessageTwice(u32),
    /// `set-candidates` is empty, repeats an index, names one out of range, or comes twice.
    Candidates(Vec<u32>),
    /// `set-max-tokens` of 0, or one that would raise the request's `max_tokens`.
    MaxTokens {
        /// Current `max_tokens`.
        current: Option<u32>,
        /// The value asked for.
        requested: u32,
    },
    /// A header name that is not lower-case `x-...` (at most 64 bytes), or a blocked one.
    HeaderName(String),
    /// A header value that is not printable ASCII of at most [`MAX_TEXT`] bytes.
    ///
    /// [`MAX_TEXT`]: crate::decision::MAX_TEXT
    HeaderValue(String),
    /// An annotation key that is empty or longer than [`MAX_ANNOTATION_KEY`], or a value longer
    /// than [`MAX_TEXT`].
    ///
    /// [`MAX_ANNOTATION_KEY`]: crate::decision::MAX_ANNOTATION_KEY
    /// [`MAX_TEXT`]: crate::decision::MAX_TEXT
    Annotation(String),
    /// Strings over [`MAX_DECISION_BYTES`] in all.
    TooLarge,
    /// A denial whose status is neither 400–499 nor 503.
    DenyStatus(u16),
    /// A denial code that is not 1–64 of `a-z`, `0-9`, `_`, or a reason over [`MAX_TEXT`] bytes.
    ///
    /// [`MAX_TEXT`]: crate::decision::MAX_TEXT
    Denial(String),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyEdits(n) => write!(f, "{n} edits, at most {MAX_EDITS} allowed"),
            Self::MessageIndex(i) => write!(f, "message index {i} out of range"),
            Self::MessageTwice(i) => write!(f, "message {i} dropped or replaced more than once"),
            Self::Candidates(c) => write!(f, "invalid set-candidates {c:?}"),
            Self::MaxTokens { current, requested } => {
                write!(
                    f,
                    "set-max-tokens {requested} (max_tokens is {current:?}): only lowering, never to 0"
                )
            }
            Self::HeaderName(n) => write!(f, "header name {n:?}: lower-case x-..., not blocked"),
            Self::HeaderValue(n) => write!(f, "header {n:?}: value must be printable ASCII"),
            Self::Annotation(k) => {
                write!(f, "annotation {k:?}: key 1-64 bytes, value at most 1 KiB")
            }
            Self::TooLarge => write!(f, "decision over {MAX_DECISION_BYTES} bytes"),
            Self::DenyStatus(s) => write!(f, "deny status {s}: must be 400-499 or 503"),
            Self::Denial(c) => write!(
                f,
                "deny code {c:?}: 1-64 of a-z, 0-9, _; reason at most 1 KiB"
            ),
        }
    }
}

impl std::error::Error for EditError {}

/// Check a decision against `ctx` with the host's rules: at most [`MAX_EDITS`] edits; message
/// indices refer to the messages as received (inserts may use `len`); a message is dropped or
/// replaced at most once, not both; `set-max-tokens` is not 0 and only lowers; `set-candidates`
/// comes once, as a non-empty list of distinct valid indices; header names are lower-case `x-...`
/// (not `x-switchyard-*` nor [`BLOCKED_HEADERS`](crate::decision::BLOCKED_HEADERS)) with
/// printable ASCII values; annotation keys are 1–64 bytes and values at most 1 KiB; a denial has
/// status 400–499 or 503 and a code of `a-z`, `0-9`, `_`.
pub fn validate(decision: &Decision, ctx: &RequestCtx) -> Result<(), EditError> {
    let view = match decision {
        Decision::Allow(edits) => DecisionView::Allow(edits.iter().map(edit_view)),
        Decision::Deny(d) => DecisionView::Deny(DenialView {
            status: d.status,
            code: &d.code,
            reason: &d.reason,
        }),
    };
    rules::validate(view, context(ctx)).map_err(|e| edit_error(e, ctx))
}

/// [`validate`] for an allow decision's edits.
pub(crate) fn validate_edits(edits: &[Edit], ctx: &RequestCtx) -> Result<(), EditError> {
    let view = DecisionView::Allow(edits.iter().map(edit_view));
    rules::validate(view, context(ctx)).map_err(|e| edit_error(e, ctx))
}

fn context(ctx: &RequestCtx) -> ContextView {
    ContextView {
        messages: ctx.messages.len(),
        candidates: ctx.candidates.len(),
        max_tokens: ctx.max_tokens,
    }
}

fn edit_view(edit: &Edit) -> EditView<'_> {
    match edit {
        Edit::DropMessage(i) => EditView::DropMessage(*i),
        Edit::ReplaceMessage((i, m)) => EditView::ReplaceMessage {
            index: *i,
            content: &m.content,
        },
        Edit::InsertMessage((i, m)) => EditView::InsertMessage {
            index: *i,
            content: &m.content,
        },
        Edit::SetMaxTokens(t) => EditView::SetMaxTokens(*t),
        Edit::SetCandidates(list) => EditView::SetCandidates(list),
        Edit::SetHeader((name, value)) => EditView::SetHeader { name, value },
        Edit::Annotate((key, value)) => EditView::Annotate { key, value },
    }
}

/// The SDK's coarser error for a broken rule (its variants predate the shared rules crate and are
/// public API, so several rules share one).
fn edit_error(e: RuleError<'_>, ctx: &RequestCtx) -> EditError {
    let rule = match e {
        RuleError::DenyStatus(s) => return EditError::DenyStatus(s),
        RuleError::DenyCode(code) | RuleError::DenyReason { code } => {
            return EditError::Denial(code.to_owned());
        }
        RuleError::TooManyEdits(n) => return EditError::TooManyEdits(n),
        RuleError::Edit { rule, .. } => rule,
    };
    match rule {
        EditRule::MessageIndex { index, .. } => EditError::MessageIndex(index),
        EditRule::MessageTwice { index, .. } => EditError::MessageTwice(index),
        EditRule::MaxTokensZero => EditError::MaxTokens {
            current: ctx.max_tokens,
            requested: 0,
        },
        EditRule::MaxTokensRaise { requested, current } => EditError::MaxTokens {
            current: Some(current),
            requested,
        },
        EditRule::CandidatesEmpty => EditError::Candidates(Vec::new()),
        EditRule::CandidatesTwice(list)
        | EditRule::CandidateIndex { list, .. }
        | EditRule::CandidateRepeated { list, .. } => EditError::Candidates(list.to_vec()),
        EditRule::HeaderName(name) | EditRule::HeaderBlocked(name) => {
            EditError::HeaderName(name.to_owned())
        }
        EditRule::HeaderValue(name) => EditError::HeaderValue(name.to_owned()),
        EditRule::AnnotationKey(key) | EditRule::AnnotationValue(key) => {
            EditError::Annotation(key.to_owned())
        }
        EditRule::TooLarge => EditError::TooLarge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::MAX_TEXT;
    use crate::testing::{candidate, ctx, message};
    use crate::{Denial, NewMessage, Role};

    /// Each rule reaches the `EditError` a policy's tests see; the rules themselves are tested in
    /// `switchyard-policy-rules`.
    #[test]
    fn each_broken_rule_maps_to_its_edit_error() {
        let mut c = ctx(
            vec![message(Role::System, 1), message(Role::User, 1)],
            vec![candidate("a", 1, 1, 1), candidate("b", 1, 1, 1)],
        );
        c.max_tokens = Some(100);
        let nm = |s: &str| NewMessage {
            role: Role::User,
            content: s.to_owned(),
        };
        let hv = |n: &str, v: &str| Edit::SetHeader((n.to_owned(), v.to_owned()));
        let an = |k: &str, v: &str| Edit::Annotate((k.to_owned(), v.to_owned()));
        let big = "m".repeat(MAX_DECISION_BYTES + 1);
        let cases: Vec<(Vec<Edit>, EditError)> = vec![
            (vec![an("k", "v"); 257], EditError::TooManyEdits(257)),
            (vec![Edit::DropMessage(2)], EditError::MessageIndex(2)),
            (
                vec![Edit::ReplaceMessage((2, nm("")))],
                EditError::MessageIndex(2),
            ),
            (
                vec![Edit::InsertMessage((3, nm("")))],
                EditError::MessageIndex(3),
            ),
            (
                vec![Edit::ReplaceMessage((1, nm(""))), Edit::DropMessage(1)],
                EditError::MessageTwice(1),
            ),
            (
                vec![Edit::SetMaxTokens(0)],
                EditError::MaxTokens {
                    current: Some(100),
                    requested: 0,
                },
            ),
            (
                vec![Edit::SetMaxTokens(101)],
                EditError::MaxTokens {
                    current: Some(100),
                    requested: 101,
                },
            ),
            (
                vec![Edit::SetCandidates(vec![])],
                EditError::Candidates(vec![]),
            ),
            (
                vec![Edit::SetCandidates(vec![1, 1])],
                EditError::Candidates(vec![1, 1]),
            ),
            (
                vec![Edit::SetCandidates(vec![0, 2])],
                EditError::Candidates(vec![0, 2]),
            ),
            (
                vec![Edit::SetCandidates(vec![0]), Edit::SetCandidates(vec![1])],
                EditError::Candidates(vec![1]),
            ),
            (vec![hv("X-A", "v")], EditError::HeaderName("X-A".into())),
            (
                vec![hv("x-api-key", "v")],
                EditError::HeaderName("x-api-key".into()),
            ),
            (
                vec![hv("x-a", "a\nb")],
                EditError::HeaderValue("x-a".into()),
            ),
            (vec![an("", "v")], EditError::Annotation(String::new())),
            (
                vec![an("k", &"v".repeat(MAX_TEXT + 1))],
                EditError::Annotation("k".into()),
            ),
            (
                vec![Edit::InsertMessage((0, nm(&big)))],
                EditError::TooLarge,
            ),
        ];
        for (edits, want) in cases {
            assert_eq!(
                validate(&Decision::Allow(edits.clone()), &c),
                Err(want),
                "{edits:?}"
            );
        }
        let deny = |status, code: &str, reason: &str| {
            let d = Denial {
                status,
                code: code.into(),
                reason: reason.into(),
            };
            validate(&Decision::Deny(d), &c)
        };
        assert_eq!(deny(402, "c", ""), Ok(()));
        assert_eq!(deny(500, "c", ""), Err(EditError::DenyStatus(500)));
        assert_eq!(deny(402, "C", ""), Err(EditError::Denial("C".into())));
        let long = "r".repeat(MAX_TEXT + 1);
        assert_eq!(deny(402, "c", &long), Err(EditError::Denial("c".into())));
    }
}
