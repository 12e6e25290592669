//! Which rule a decision broke. The variants carry what each side needs to report it (the host
//! prints [`RuleError`]'s `Display`; the SDK maps it onto its own `EditError`), borrowed from the
//! decision so that a refusal copies nothing either.
//!
//! Deliberately not `#[non_exhaustive]`: a new rule must break the SDK's exhaustive mapping at
//! compile time rather than fall into a catch-all.

use std::fmt;

use crate::{MAX_ANNOTATION_KEY, MAX_ANNOTATION_VALUE, MAX_DECISION_BYTES, MAX_EDITS};
use crate::{MAX_HEADER_VALUE, MAX_NAME, MAX_REASON};

/// The first rule a decision breaks, found by [`crate::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleError<'a> {
    /// A denial whose status is neither 400–499 nor 503.
    DenyStatus(u16),
    /// A denial code that is not 1–[`MAX_NAME`] bytes of `a-z`, `0-9`, `_`.
    DenyCode(&'a str),
    /// A denial reason over [`MAX_REASON`] bytes; `code` names the denial.
    DenyReason { code: &'a str },
    /// More than [`MAX_EDITS`] edits.
    TooManyEdits(usize),
    /// The edit at position `at` (from 0) breaks `rule`.
    Edit { at: usize, rule: EditRule<'a> },
}

/// A rule one edit breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditRule<'a> {
    /// A message index not below `messages` (inserts: above it).
    MessageIndex {
        op: MessageOp,
        index: u32,
        messages: usize,
    },
    /// A message dropped or replaced (`op`) that an earlier edit already dropped or replaced.
    MessageTwice {
        op: MessageOp,
        index: u32,
        earlier: MessageOp,
    },
    /// `set-max-tokens 0`.
    MaxTokensZero,
    /// `set-max-tokens` above the request's `max_tokens`.
    MaxTokensRaise { requested: u32, current: u32 },
    /// A second `set-candidates` (this is its list).
    CandidatesTwice(&'a [u32]),
    /// An empty `set-candidates` (to refuse everything, deny instead).
    CandidatesEmpty,
    /// A `set-candidates` index not below `candidates`.
    CandidateIndex {
        list: &'a [u32],
        index: u32,
        candidates: usize,
    },
    /// A `set-candidates` index listed twice.
    CandidateRepeated { list: &'a [u32], index: u32 },
    /// A header name that is not lower-case `x-…` of at most [`MAX_NAME`] bytes.
    HeaderName(&'a str),
    /// A header in [`crate::BLOCKED_HEADERS`] or under [`crate::RESERVED_HEADER_PREFIX`].
    HeaderBlocked(&'a str),
    /// A value for this header that is not printable ASCII of at most [`MAX_HEADER_VALUE`] bytes.
    HeaderValue(&'a str),
    /// An annotation key that is empty or over [`MAX_ANNOTATION_KEY`] bytes.
    AnnotationKey(&'a str),
    /// A value for this annotation key over [`MAX_ANNOTATION_VALUE`] bytes.
    AnnotationValue(&'a str),
    /// The strings so far add up to more than [`MAX_DECISION_BYTES`].
    TooLarge,
}

/// The edits that address a message by its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOp {
    Drop,
    Replace,
    Insert,
}

impl MessageOp {
    /// The edit's name in the WIT (`drop-message`, ...).
    pub fn edit_name(self) -> &'static str {
        match self {
            Self::Drop => "drop-message",
            Self::Replace => "replace-message",
            Self::Insert => "insert-message",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Self::Drop => "dropped",
            Self::Replace => "replaced",
            Self::Insert => "inserted",
        }
    }
}

// The texts are the host's: they end up in its `invalid_decision` errors and logs.
impl fmt::Display for RuleError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DenyStatus(s) => write!(f, "deny status {s} is not 400-499 or 503"),
            Self::DenyCode(c) => write!(f, "deny code '{c}' must be 1-{MAX_NAME} of a-z, 0-9, _"),
            Self::DenyReason { .. } => write!(f, "deny reason is over {MAX_REASON} bytes"),
            Self::TooManyEdits(n) => write!(f, "{n} edits, over the limit of {MAX_EDITS}"),
            Self::Edit { at, rule } => write!(f, "edit {at}: {rule}"),
        }
    }
}

impl std::error::Error for RuleError<'_> {}

impl fmt::Display for EditRule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::MessageIndex {
                op: MessageOp::Insert,
                index,
                messages: n,
            } => write!(
                f,
                "insert-message {index}: there are {n} messages (insert at most at {n})"
            ),
            Self::MessageIndex {
                op,
                index,
                messages,
            } => write!(
                f,
                "{} {index}: there are {messages} messages",
                op.edit_name()
            ),
            Self::MessageTwice { op, index, earlier } => {
                let name = op.edit_name();
                if op == earlier {
                    write!(f, "{name} {index}: {} twice", op.past())
                } else {
                    write!(f, "{name} {index}: also {}", earlier.past())
                }
            }
            Self::MaxTokensZero => write!(f, "set-max-tokens 0"),
            Self::MaxTokensRaise { requested, current } => write!(
                f,
                "set-max-tokens {requested} would raise max_tokens from {current}"
            ),
            Self::CandidatesTwice(_) => write!(f, "set-candidates given twice"),
            Self::CandidatesEmpty => {
                write!(f, "set-candidates is empty (deny the request instead)")
            }
            Self::CandidateIndex {
                index, candidates, ..
            } => write!(
                f,
                "set-candidates: {index} but there are {candidates} candidates"
            ),
            Self::CandidateRepeated { index, .. } => {
                write!(f, "set-candidates: {index} listed twice")
            }
            Self::HeaderName(name) => write!(
                f,
                "set-header '{name}': names must be lower-case and start with x-"
            ),
            Self::HeaderBlocked(name) => write!(f, "set-header '{name}' is not allowed"),
            Self::HeaderValue(name) => write!(
                f,
                "set-header '{name}': the value must be printable ASCII, at most {MAX_HEADER_VALUE} bytes"
            ),
            Self::AnnotationKey(_) => {
                write!(f, "annotate: keys are 1-{MAX_ANNOTATION_KEY} bytes")
            }
            Self::AnnotationValue(key) => write!(
                f,
                "annotate '{key}': values are at most {MAX_ANNOTATION_VALUE} bytes"
            ),
            Self::TooLarge => write!(f, "decision is over {MAX_DECISION_BYTES} bytes"),
        }
    }
}
