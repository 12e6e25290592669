//! Between the host's serde types ([`PolicyInput`], [`Decision`]) and the WIT bindings, and what
//! an input weighs against a manifest's input limits.

use std::fmt;

use crate::bindings::switchyard::policy::types as wit;
use crate::ctx::{Decision, Denial, Edit, NewMessage, PolicyInput, Role};
use crate::manifest::{Capability, Manifest};
use crate::policy::TokenCounter;

/// A request over one of a policy's input limits: the caller's error, answered with 413.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputOverLimit {
    /// The manifest key: `limits.max_input_bytes` or `limits.max_messages`.
    pub limit: &'static str,
    pub max: usize,
    pub actual: usize,
}

impl fmt::Display for InputOverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.limit.ends_with("messages") {
            "messages"
        } else {
            "bytes of input"
        };
        write!(
            f,
            "{} {unit}, over its {} of {}",
            self.actual, self.limit, self.max
        )
    }
}

impl std::error::Error for InputOverLimit {}

/// Bytes of text the policy would be given: message text (only with `read-content`), the
/// headers, ids, route and config. Candidates' names come from the gateway's config, not the
/// caller, and are left out.
pub fn input_bytes(manifest: &Manifest, input: &PolicyInput) -> usize {
    let text: usize = if manifest.grants(Capability::ReadContent) {
        input.messages.iter().map(|m| m.content.len()).sum()
    } else {
        0
    };
    let headers: usize = input.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    let config: usize = input.config.iter().map(|(k, v)| k.len() + v.len()).sum();
    text + headers + config + input.request_id.len() + input.tenant.len() + input.route.len()
}

/// Checks `input` against the manifest's input limits.
pub fn check_input(manifest: &Manifest, input: &PolicyInput) -> Result<(), InputOverLimit> {
    let limits = &manifest.limits;
    if input.messages.len() > limits.max_messages {
        return Err(InputOverLimit {
            limit: "limits.max_messages",
            max: limits.max_messages,
            actual: input.messages.len(),
        });
    }
    let bytes = input_bytes(manifest, input);
    if bytes > limits.max_input_bytes {
        return Err(InputOverLimit {
            limit: "limits.max_input_bytes",
            max: limits.max_input_bytes,
            actual: bytes,
        });
    }
    Ok(())
}

/// The WIT context for `input`: text withheld without `read-content`, token counts filled in
/// where the input has none, the manifest's config under the input's.
pub(crate) fn to_wit(
    manifest: &Manifest,
    counter: &dyn TokenCounter,
    input: &PolicyInput,
) -> wit::RequestCtx {
    let read = manifest.grants(Capability::ReadContent);
    let first_model = input
        .candidates
        .first()
        .map(|c| c.model.as_str())
        .unwrap_or("");
    let mut sum = 0u32;
    let messages = input
        .messages
        .iter()
        .map(|m| {
            let tokens = m
                .tokens
                .unwrap_or_else(|| counter.count(first_model, &m.content));
            sum = sum.saturating_add(tokens);
            wit::Message {
                role: role_to_wit(m.role),
                content: read.then(|| m.content.clone()),
                content_len: u32::try_from(m.content.len()).unwrap_or(u32::MAX),
                tokens,
                tool_related: m.tool_related,
            }
        })
        .collect();
    let candidates = input
        .candidates
        .iter()
        .map(|c| wit::Candidate {
            model: c.model.clone(),
            provider: c.provider.clone(),
            context_window: c.context_window,
            max_output_tokens: c.max_output_tokens,
            input_price: c.input_price,
            output_price: c.output_price,
            score: c.score,
            local: c.local,
            prompt_tokens: c.prompt_tokens.unwrap_or(sum),
            estimated_cost: c.estimated_cost,
        })
        .collect();
    let mut config = manifest.config.clone();
    for (k, v) in &input.config {
        match config.iter_mut().find(|(ck, _)| ck == k) {
            Some(slot) => slot.1 = v.clone(),
            None => config.push((k.clone(), v.clone())),
        }
    }
    wit::RequestCtx {
        request_id: input.request_id.clone(),
        tenant: input.tenant.clone(),
        route: input.route.clone(),
        messages,
        max_tokens: input.max_tokens,
        candidates,
        token_budget: input.token_budget,
        cost_budget: input.cost_budget,
        headers: input.headers.clone(),
        config,
    }
}

fn role_to_wit(r: Role) -> wit::Role {
    match r {
        Role::System => wit::Role::System,
        Role::User => wit::Role::User,
        Role::Assistant => wit::Role::Assistant,
        Role::Tool => wit::Role::Tool,
    }
}

fn role_from_wit(r: wit::Role) -> Role {
    match r {
        wit::Role::System => Role::System,
        wit::Role::User => Role::User,
        wit::Role::Assistant => Role::Assistant,
        wit::Role::Tool => Role::Tool,
    }
}

pub(crate) fn from_wit(d: wit::Decision) -> Decision {
    let nm = |m: wit::NewMessage| NewMessage {
        role: role_from_wit(m.role),
        content: m.content,
    };
    match d {
        wit::Decision::Deny(wit::Denial {
            status,
            code,
            reason,
        }) => Decision::Deny(Denial {
            status,
            code,
            reason,
        }),
        wit::Decision::Allow(edits) => Decision::Allow(
            edits
                .into_iter()
                .map(|e| match e {
                    wit::Edit::DropMessage(i) => Edit::DropMessage(i),
                    wit::Edit::ReplaceMessage((i, m)) => Edit::ReplaceMessage(i, nm(m)),
                    wit::Edit::InsertMessage((i, m)) => Edit::InsertMessage(i, nm(m)),
                    wit::Edit::SetMaxTokens(t) => Edit::SetMaxTokens(t),
                    wit::Edit::SetCandidates(c) => Edit::SetCandidates(c),
                    wit::Edit::SetHeader((k, v)) => Edit::SetHeader(k, v),
                    wit::Edit::Annotate((k, v)) => Edit::Annotate(k, v),
                })
                .collect(),
        ),
    }
}
