//! Building a [`Decision`]: collect edits, then [`DecisionBuilder::allow`] or [`deny`].
//!
//! The host validates every edit and fails the evaluation on a violation, so the builder keeps the
//! easy rules for you (a message is dropped at most once, header names are lower-cased) and
//! [`DecisionBuilder::validate`] checks the rest against the request with the host's own rules
//! (the `switchyard-policy-rules` crate) — call it in your unit tests.

use std::collections::BTreeSet;

use switchyard_policy_rules as rules;

use crate::check::validate_edits;
use crate::{Decision, Denial, Edit, NewMessage, RequestCtx, Role};

pub use crate::check::{EditError, validate};
pub use switchyard_policy_rules::{
    BLOCKED_HEADERS, MAX_ANNOTATION_KEY, MAX_DECISION_BYTES, MAX_EDITS, MAX_NAME,
};

/// Longest annotation value, header value or denial reason, in bytes.
pub const MAX_TEXT: usize = rules::MAX_HEADER_VALUE;
// One constant stands for three of the host's limits; the build fails if they ever part.
const _: () = assert!(MAX_TEXT == rules::MAX_ANNOTATION_VALUE && MAX_TEXT == rules::MAX_REASON);

fn idx(i: usize) -> u32 {
    // The host sends at most u32::MAX items; an index past that is invalid anyway and the host
    // rejects it, so saturating is enough.
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// The message of a replace or insert edit.
fn new_message(role: Role, content: String) -> NewMessage {
    NewMessage { role, content }
}

/// Collects edits in the order they are added (the host applies them in that order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionBuilder {
    edits: Vec<Edit>,
    dropped: BTreeSet<u32>,
}

impl DecisionBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remove message `index` (of the messages as received). Dropping a message twice is a no-op.
    pub fn drop_message(&mut self, index: usize) -> &mut Self {
        let i = idx(index);
        if self.dropped.insert(i) {
            self.edits.push(Edit::DropMessage(i));
        }
        self
    }

    /// Drop several messages, in the given order.
    pub fn drop_messages(&mut self, indices: impl IntoIterator<Item = usize>) -> &mut Self {
        for i in indices {
            self.drop_message(i);
        }
        self
    }

    /// Replace the text of message `index` (its tool calls are kept).
    pub fn replace_message(
        &mut self,
        index: usize,
        role: Role,
        content: impl Into<String>,
    ) -> &mut Self {
        let m = new_message(role, content.into());
        self.edits.push(Edit::ReplaceMessage((idx(index), m)));
        self
    }

    /// Insert a message before `index` (`index` = number of messages appends it).
    pub fn insert_message(
        &mut self,
        index: usize,
        role: Role,
        content: impl Into<String>,
    ) -> &mut Self {
        let m = new_message(role, content.into());
        self.edits.push(Edit::InsertMessage((idx(index), m)));
        self
    }

    /// Lower `max_tokens` (the host refuses raising it).
    pub fn set_max_tokens(&mut self, max_tokens: u32) -> &mut Self {
        self.edits.push(Edit::SetMaxTokens(max_tokens));
        self
    }

    /// The candidates to try, in this order, by index; the others are vetoed. Must be non-empty
    /// and without repeats.
    pub fn set_candidates(&mut self, order: impl IntoIterator<Item = usize>) -> &mut Self {
        self.edits
            .push(Edit::SetCandidates(order.into_iter().map(idx).collect()));
        self
    }

    /// Veto the candidates for which `vetoed(index)` is true, keeping the others in order.
    /// Returns `false` and adds nothing when that would veto every candidate, or none.
    pub fn veto(&mut self, candidates: usize, vetoed: impl Fn(usize) -> bool) -> bool {
        let keep: Vec<usize> = (0..candidates).filter(|&i| !vetoed(i)).collect();
        if keep.is_empty() || keep.len() == candidates {
            return false;
        }
        self.set_candidates(keep);
        true
    }

    /// Add a header to the upstream request. The name is lower-cased; it must start with `x-`.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.edits
            .push(Edit::SetHeader((name.to_ascii_lowercase(), value.into())));
        self
    }

    /// A note for the logs and the `/ai/route` explanation; never sent upstream. The key is cut
    /// to 64 bytes and the value to 1 KiB (the host's limits), ending in `…` when cut.
    pub fn annotate(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let key = truncate(key.into(), MAX_ANNOTATION_KEY);
        self.edits.push(Edit::Annotate((
            key,
            truncate(value.into(), rules::MAX_ANNOTATION_VALUE),
        )));
        self
    }

    /// The edits so far.
    pub fn edits(&self) -> &[Edit] {
        &self.edits
    }

    /// Whether no edit was added.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// Whether any edit other than `annotate` was added.
    pub fn changes_request(&self) -> bool {
        self.edits.iter().any(|e| !matches!(e, Edit::Annotate(_)))
    }

    /// Check the edits against `ctx` with the host's rules (see [`validate`]).
    pub fn validate(&self, ctx: &RequestCtx) -> Result<(), EditError> {
        validate_edits(&self.edits, ctx)
    }

    /// Finish: allow the request with the collected edits.
    pub fn allow(&self) -> Decision {
        Decision::Allow(self.edits.clone())
    }

    /// Finish by consuming the builder: allow with the collected edits.
    pub fn into_allow(self) -> Decision {
        Decision::Allow(self.edits)
    }
}

/// `s` cut to at most `max` bytes at a character boundary, ending in `…` when cut.
pub fn truncate(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let keep = max.saturating_sub('…'.len_utf8());
    let cut = (0..=keep)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    let mut out = s.get(..cut).unwrap_or_default().to_owned();
    if max >= '…'.len_utf8() {
        out.push('…');
    }
    out
}

/// Allow the request unchanged.
pub fn allow() -> Decision {
    Decision::Allow(Vec::new())
}

/// Refuse the request with an HTTP `status` (400–499 or 503), a machine-readable `code`
/// (`a-z`, `0-9`, `_`) and a human-readable `reason` (cut to 1 KiB), both sent to the client.
pub fn deny(status: u16, code: impl Into<String>, reason: impl Into<String>) -> Decision {
    let reason = truncate(reason.into(), rules::MAX_REASON);
    Decision::Deny(Denial {
        status,
        code: code.into(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{candidate, ctx, message};

    fn ctx3() -> RequestCtx {
        let mut c = ctx(
            vec![
                message(Role::System, 1),
                message(Role::User, 1),
                message(Role::User, 1),
            ],
            vec![candidate("a", 1, 1, 1000), candidate("b", 1, 1, 1000)],
        );
        c.max_tokens = Some(100);
        c
    }

    #[test]
    fn collects_edits_in_order() {
        let mut d = DecisionBuilder::new();
        assert!(d.is_empty());
        d.drop_message(1)
            .drop_message(1)
            .replace_message(2, Role::User, "x")
            .insert_message(1, Role::System, "note")
            .set_max_tokens(50)
            .set_candidates([1, 0])
            .set_header("X-A", "b")
            .annotate("k", "v");
        assert!(d.changes_request());
        assert_eq!(d.edits().len(), 7, "duplicate drop ignored");
        assert_eq!(d.edits()[5], Edit::SetHeader(("x-a".into(), "b".into())));
        assert_eq!(d.validate(&ctx3()), Ok(()));
        match d.allow() {
            Decision::Allow(e) => assert_eq!(e.len(), 7),
            Decision::Deny(_) => unreachable!(),
        }
    }

    #[test]
    fn validate_applies_the_host_rules() {
        let c = ctx3();
        let check = |f: &dyn Fn(&mut DecisionBuilder)| {
            let mut d = DecisionBuilder::new();
            f(&mut d);
            d.validate(&c)
        };
        assert_eq!(
            check(&|d| {
                d.drop_message(3);
            }),
            Err(EditError::MessageIndex(3))
        );
        assert_eq!(
            check(&|d| {
                d.insert_message(3, Role::User, "");
            }),
            Ok(())
        );
        assert_eq!(
            check(&|d| {
                d.insert_message(4, Role::User, "");
            }),
            Err(EditError::MessageIndex(4))
        );
        assert!(
            check(&|d| {
                d.set_max_tokens(101);
            })
            .is_err()
        );
        assert!(
            check(&|d| {
                d.set_candidates([]);
            })
            .is_err()
        );
        assert!(
            check(&|d| {
                d.set_candidates([0, 0]);
            })
            .is_err()
        );
        assert!(
            check(&|d| {
                d.set_candidates([2]);
            })
            .is_err()
        );
        assert!(
            check(&|d| {
                d.set_header("authorization", "x");
            })
            .is_err()
        );
        assert!(
            check(&|d| {
                for _ in 0..=MAX_EDITS {
                    d.annotate("k", "v");
                }
            })
            .is_err()
        );
        let mut dup = DecisionBuilder::new();
        dup.edits = vec![Edit::DropMessage(0), Edit::DropMessage(0)];
        assert_eq!(dup.validate(&c), Err(EditError::MessageTwice(0)));
        assert!(!EditError::MessageTwice(0).to_string().is_empty());
        assert!(validate(&deny(402, "Bad-Code", "r"), &c).is_err());
        assert_eq!(validate(&deny(503, "c", "r"), &c), Ok(()));
        assert_eq!(
            validate(&deny(500, "c", "r"), &c),
            Err(EditError::DenyStatus(500))
        );
    }

    #[test]
    fn long_texts_are_cut_at_the_host_limits() {
        let mut d = DecisionBuilder::new();
        d.annotate("k".repeat(100), "é".repeat(1000));
        let Edit::Annotate((k, v)) = &d.edits()[0] else {
            unreachable!()
        };
        assert_eq!(k.len(), 64);
        assert!(v.len() <= MAX_TEXT && v.ends_with('…'));
        assert_eq!(d.validate(&ctx3()), Ok(()));
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert_eq!(truncate("abcdef".into(), 2), "");
        let Decision::Deny(dn) = deny(402, "c", "x".repeat(5000)) else {
            unreachable!()
        };
        assert_eq!(dn.reason.len(), MAX_TEXT);
    }

    #[test]
    fn veto_keeps_order_and_never_empties() {
        let mut d = DecisionBuilder::new();
        assert!(!d.veto(3, |_| true));
        assert!(!d.veto(3, |_| false));
        assert!(d.veto(3, |i| i == 1));
        assert_eq!(d.edits(), &[Edit::SetCandidates(vec![0, 2])]);
    }

    #[test]
    fn allow_and_deny() {
        assert_eq!(allow(), Decision::Allow(vec![]));
        assert_eq!(
            deny(402, "budget_exceeded", "too dear"),
            Decision::Deny(Denial {
                status: 402,
                code: "budget_exceeded".into(),
                reason: "too dear".into()
            })
        );
        assert_eq!(DecisionBuilder::new().into_allow(), allow());
    }
}
