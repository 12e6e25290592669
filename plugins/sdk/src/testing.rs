//! Helpers for a policy's native tests (feature `testing`; for `[dev-dependencies]` only).
//!
//! Builders for the request context, so that unit tests state only what matters to them:
//!
//! ```ignore
//! use switchyard_policy::testing::{candidate, ctx, edits, message};
//!
//! #[test]
//! fn short_prompts_stay() {
//!     let mut c = ctx(vec![message(Role::User, 10)], vec![candidate("m", 1, 1, 10)]);
//!     c.max_tokens = Some(256);
//!     assert!(edits(&my_policy::evaluate(c)).is_empty());
//! }
//! ```
//!
//! and a runner for the manifest's test cases (`policy.toml` + `tests/*.json`), the way
//! `switchyard policy test DIR` runs them on the compiled component:
//!
//! ```ignore
//! #[test]
//! fn manifest_cases() {
//!     let n = switchyard_policy::testing::run_manifest_tests(env!("CARGO_MANIFEST_DIR"), my_policy::evaluate);
//!     assert_eq!(n, Ok(3));
//! }
//! ```
//!
//! It reads `policy.toml` (unknown fields are errors, as in the host), builds each case's
//! [`RequestCtx`] from its input JSON with the host's defaults (content withheld unless the
//! manifest grants `read-content`, config merged over the manifest's `[config]`), calls the
//! policy, checks the decision with the host's rules ([`crate::validate`]) and compares it, as
//! JSON, with the expected file.

use crate::{Candidate, Decision, Edit, Message, RequestCtx, Role};

#[cfg(feature = "testing")]
mod manifest;

#[cfg(feature = "testing")]
pub use manifest::{
    ABI, Manifest, ManifestTest, ctx_from_json, decision_to_json, load_manifest, run_case,
    run_manifest_tests,
};

/// A message as the host sends it without `read-content`: no text (`content_len` 0), not
/// tool-related.
pub fn message(role: Role, tokens: u32) -> Message {
    Message {
        role,
        content: None,
        content_len: 0,
        tokens,
        tool_related: false,
    }
}

/// A message with its text, as the host sends it with `read-content`; `content_len` is the
/// text's length in bytes.
pub fn text_message(role: Role, tokens: u32, text: &str) -> Message {
    Message {
        content: Some(text.to_owned()),
        content_len: u32::try_from(text.len()).unwrap_or(u32::MAX),
        ..message(role, tokens)
    }
}

/// A remote candidate from provider `p` with a 128 000-token context window and 4096 output
/// tokens; prices in micro-dollars per million tokens, `prompt_tokens` as the router counted them.
pub fn candidate(
    model: &str,
    input_price: u64,
    output_price: u64,
    prompt_tokens: u32,
) -> Candidate {
    Candidate {
        model: model.into(),
        provider: "p".into(),
        context_window: 128_000,
        max_output_tokens: 4096,
        input_price,
        output_price,
        score: 0.0,
        local: false,
        prompt_tokens,
        estimated_cost: 0,
    }
}

/// A request with these messages and candidates and the defaults a test case's input gets:
/// `request_id` "test", `tenant` "", `route` "auto", no `max_tokens`, budgets, headers or config.
pub fn ctx(messages: Vec<Message>, candidates: Vec<Candidate>) -> RequestCtx {
    RequestCtx {
        request_id: "test".into(),
        tenant: String::new(),
        route: "auto".into(),
        messages,
        max_tokens: None,
        candidates,
        token_budget: None,
        cost_budget: None,
        headers: vec![],
        config: vec![],
    }
}

/// The edits of an allow decision, in order; empty for a denial.
pub fn edits(decision: &Decision) -> Vec<Edit> {
    match decision {
        Decision::Allow(e) => e.clone(),
        Decision::Deny(_) => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DecisionBuilder, deny};

    #[test]
    fn builders() {
        let m = text_message(Role::User, 3, "héllo");
        assert_eq!((m.content.as_deref(), m.content_len), (Some("héllo"), 6));
        assert_eq!(message(Role::User, 3).content, None);
        let c = ctx(vec![m], vec![candidate("m", 1, 2, 3)]);
        assert_eq!((c.messages.len(), c.candidates[0].prompt_tokens), (1, 3));
        let mut d = DecisionBuilder::new();
        d.set_max_tokens(5);
        assert_eq!(edits(&d.allow()), vec![Edit::SetMaxTokens(5)]);
        assert!(edits(&deny(402, "c", "r")).is_empty());
    }
}
