//! The rules a policy's decision must follow, stated once.
//!
//! This crate owns the decision rules: the limits, the blocked headers, the header-name and
//! denial rules, and the per-edit rules (valid indices, a message touched at most once,
//! `set-max-tokens` only lowering, `set-candidates` once with distinct valid indices). The host
//! (`switchyard-plugins`) refuses a decision that breaks them; the guest SDK
//! (`switchyard-policy`) checks them in a policy's own tests. Each describes its decision as a
//! [`DecisionView`] over its own types and calls [`validate`], so the two cannot drift apart.
//! It also holds the ranges of a manifest's input limits ([`input_limits`]), which both check.
//!
//! Std only, no dependencies: the SDK builds it for `wasm32-wasip2` from the `policies/` workspace.

mod error;

use std::collections::{BTreeMap, BTreeSet};

pub use error::{EditRule, MessageOp, RuleError};

/// Most edits in one decision.
pub const MAX_EDITS: usize = 256;
/// Total bytes of message text, header values and annotations (keys and values) in one decision.
pub const MAX_DECISION_BYTES: usize = 1 << 20;
/// Longest header name or denial code, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest header value, in bytes.
pub const MAX_HEADER_VALUE: usize = 1024;
/// Longest annotation key, in bytes (keys are never empty).
pub const MAX_ANNOTATION_KEY: usize = 64;
/// Longest annotation value, in bytes.
pub const MAX_ANNOTATION_VALUE: usize = 1024;
/// Longest denial reason, in bytes.
pub const MAX_REASON: usize = 1024;

/// The input limits a manifest may set (`[limits] max_input_bytes`, `max_messages`): their
/// defaults and the largest values allowed. A request over a policy's limit is the caller's
/// error (413), refused before any policy runs, so these also say what "normal-size input" is
/// for a policy's health.
pub mod input_limits {
    /// Default bytes of text (message text with `read-content`, headers, ids) given to one
    /// evaluation.
    pub const DEFAULT_MAX_INPUT_BYTES: u64 = 1 << 20;
    /// The largest `max_input_bytes` a manifest may set. It must also be at most half of the
    /// policy's memory cap, so that the input leaves the policy room to work.
    pub const MAX_INPUT_BYTES: u64 = 32 << 20;
    /// Default messages given to one evaluation (long agent conversations stay well below).
    pub const DEFAULT_MAX_MESSAGES: u64 = 4096;
    /// The largest `max_messages` a manifest may set.
    pub const MAX_MESSAGES: u64 = 65_536;
}

/// Upstream headers a policy may never set, even with an `x-` name: they carry credentials or
/// identify the client to the network.
pub const BLOCKED_HEADERS: &[&str] = &[
    "x-api-key",
    "x-goog-api-key",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];
/// The gateway's own headers; a policy may not set any of them either.
pub const RESERVED_HEADER_PREFIX: &str = "x-switchyard-";

/// One edit, as much of it as the rules look at. Borrowed, so that building it copies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditView<'a> {
    DropMessage(u32),
    ReplaceMessage { index: u32, content: &'a str },
    InsertMessage { index: u32, content: &'a str },
    SetMaxTokens(u32),
    SetCandidates(&'a [u32]),
    SetHeader { name: &'a str, value: &'a str },
    Annotate { key: &'a str, value: &'a str },
}

/// A denial: HTTP status, machine-readable code, human-readable reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenialView<'a> {
    pub status: u16,
    pub code: &'a str,
    pub reason: &'a str,
}

/// A decision: allow with edits (any iterator of [`EditView`]s that knows its length, so that an
/// oversized list is refused before it is walked), or deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionView<'a, E> {
    Allow(E),
    Deny(DenialView<'a>),
}

/// What a decision is checked against: the request as the policy saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextView {
    /// Number of messages (edit indices refer to this list).
    pub messages: usize,
    /// Number of candidates (`set-candidates` indices refer to this list).
    pub candidates: usize,
    /// The request's `max_tokens`, if it set one.
    pub max_tokens: Option<u32>,
}

/// Checks `decision` against the request it answers. The error names the first broken rule.
pub fn validate<'a, E>(decision: DecisionView<'a, E>, ctx: ContextView) -> Result<(), RuleError<'a>>
where
    E: IntoIterator<Item = EditView<'a>>,
    E::IntoIter: ExactSizeIterator,
{
    match decision {
        DecisionView::Deny(d) => check_denial(d),
        DecisionView::Allow(edits) => {
            let edits = edits.into_iter();
            if edits.len() > MAX_EDITS {
                return Err(RuleError::TooManyEdits(edits.len()));
            }
            let mut seen = Seen::default();
            for (at, edit) in edits.enumerate() {
                seen.check(edit, ctx)
                    .map_err(|rule| RuleError::Edit { at, rule })?;
            }
            Ok(())
        }
    }
}

fn check_denial(d: DenialView<'_>) -> Result<(), RuleError<'_>> {
    if !((400..=499).contains(&d.status) || d.status == 503) {
        return Err(RuleError::DenyStatus(d.status));
    }
    let code_ok = !d.code.is_empty()
        && d.code.len() <= MAX_NAME
        && d.code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !code_ok {
        return Err(RuleError::DenyCode(d.code));
    }
    if d.reason.len() > MAX_REASON {
        return Err(RuleError::DenyReason { code: d.code });
    }
    Ok(())
}

/// What the edits so far have used up: the rules that span edits need it.
#[derive(Default)]
struct Seen {
    /// Messages dropped or replaced so far, and how: each may be touched once.
    touched: BTreeMap<u32, MessageOp>,
    candidates_set: bool,
    bytes: usize,
}

impl Seen {
    fn check<'a>(&mut self, edit: EditView<'a>, ctx: ContextView) -> Result<(), EditRule<'a>> {
        match edit {
            EditView::DropMessage(index) => self.touch(MessageOp::Drop, index, ctx.messages)?,
            EditView::ReplaceMessage { index, content } => {
                self.touch(MessageOp::Replace, index, ctx.messages)?;
                self.add(content.len());
            }
            EditView::InsertMessage { index, content } => {
                // Inserting at `messages` appends, so that index is valid here.
                if !usize::try_from(index).is_ok_and(|i| i <= ctx.messages) {
                    return Err(EditRule::MessageIndex {
                        op: MessageOp::Insert,
                        index,
                        messages: ctx.messages,
                    });
                }
                self.add(content.len());
            }
            EditView::SetMaxTokens(requested) => {
                if requested == 0 {
                    return Err(EditRule::MaxTokensZero);
                }
                if let Some(current) = ctx.max_tokens
                    && requested > current
                {
                    return Err(EditRule::MaxTokensRaise { requested, current });
                }
            }
            EditView::SetCandidates(list) => self.set_candidates(list, ctx.candidates)?,
            EditView::SetHeader { name, value } => {
                check_header(name, value)?;
                self.add(value.len());
            }
            EditView::Annotate { key, value } => {
                if key.is_empty() || key.len() > MAX_ANNOTATION_KEY {
                    return Err(EditRule::AnnotationKey(key));
                }
                if value.len() > MAX_ANNOTATION_VALUE {
                    return Err(EditRule::AnnotationValue(key));
                }
                self.add(key.len());
                self.add(value.len());
            }
        }
        if self.bytes > MAX_DECISION_BYTES {
            return Err(EditRule::TooLarge);
        }
        Ok(())
    }

    fn touch<'a>(
        &mut self,
        op: MessageOp,
        index: u32,
        messages: usize,
    ) -> Result<(), EditRule<'a>> {
        if !below(index, messages) {
            return Err(EditRule::MessageIndex {
                op,
                index,
                messages,
            });
        }
        match self.touched.insert(index, op) {
            Some(earlier) => Err(EditRule::MessageTwice { op, index, earlier }),
            None => Ok(()),
        }
    }

    fn set_candidates<'a>(
        &mut self,
        list: &'a [u32],
        candidates: usize,
    ) -> Result<(), EditRule<'a>> {
        if self.candidates_set {
            return Err(EditRule::CandidatesTwice(list));
        }
        self.candidates_set = true;
        if list.is_empty() {
            return Err(EditRule::CandidatesEmpty);
        }
        // Bounded by `candidates`: every index is checked to be in range before it is kept.
        let mut seen = BTreeSet::new();
        for &index in list {
            if !below(index, candidates) {
                return Err(EditRule::CandidateIndex {
                    list,
                    index,
                    candidates,
                });
            }
            if !seen.insert(index) {
                return Err(EditRule::CandidateRepeated { list, index });
            }
        }
        Ok(())
    }

    fn add(&mut self, len: usize) {
        // Saturating: a single huge string must fail the size rule, not wrap past it.
        self.bytes = self.bytes.saturating_add(len);
    }
}

fn check_header<'a>(name: &'a str, value: &'a str) -> Result<(), EditRule<'a>> {
    let name_ok = name.len() > 2
        && name.len() <= MAX_NAME
        && name.starts_with("x-")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(EditRule::HeaderName(name));
    }
    if BLOCKED_HEADERS.contains(&name) || name.starts_with(RESERVED_HEADER_PREFIX) {
        return Err(EditRule::HeaderBlocked(name));
    }
    if value.len() > MAX_HEADER_VALUE || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(EditRule::HeaderValue(name));
    }
    Ok(())
}

/// `index < len`, without a cast that could truncate on a narrow target.
fn below(index: u32, len: usize) -> bool {
    usize::try_from(index).is_ok_and(|i| i < len)
}
