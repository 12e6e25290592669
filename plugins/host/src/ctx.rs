//! The host's side of the contract, in plain Rust with serde: what a policy is given
//! ([`PolicyInput`]) and what it answers ([`Decision`]). The manifest test files use these shapes,
//! and the gateway builds a [`PolicyInput`] per request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputMessage {
    pub role: Role,
    /// The text; withheld from the policy unless it has `read-content`.
    #[serde(default)]
    pub content: String,
    /// Tokens for the first candidate's tokenizer; counted by the host when absent.
    #[serde(default)]
    pub tokens: Option<u32>,
    #[serde(default)]
    pub tool_related: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputCandidate {
    pub model: String,
    pub provider: String,
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub input_price: u64,
    pub output_price: u64,
    #[serde(default)]
    pub score: f64,
    #[serde(default)]
    pub local: bool,
    /// Defaults to the sum of the messages' tokens.
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub estimated_cost: u64,
}

/// Everything a policy may learn about a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    #[serde(default = "test_id")]
    pub request_id: String,
    #[serde(default)]
    pub tenant: String,
    #[serde(default = "auto")]
    pub route: String,
    pub messages: Vec<InputMessage>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    pub candidates: Vec<InputCandidate>,
    #[serde(default)]
    pub token_budget: Option<u32>,
    #[serde(default)]
    pub cost_budget: Option<u64>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Merged over the manifest's `[config]` (test files only; the gateway leaves it empty).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

fn test_id() -> String {
    "test".to_owned()
}

fn auto() -> String {
    "auto".to_owned()
}

/// A message a policy adds or puts in place of another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edit {
    DropMessage(u32),
    ReplaceMessage(u32, NewMessage),
    InsertMessage(u32, NewMessage),
    SetMaxTokens(u32),
    SetCandidates(Vec<u32>),
    SetHeader(String, String),
    Annotate(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Denial {
    pub status: u16,
    pub code: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow(Vec<Edit>),
    Deny(Denial),
}

impl Decision {
    pub fn edits(&self) -> &[Edit] {
        match self {
            Decision::Allow(e) => e,
            Decision::Deny(_) => &[],
        }
    }
}

/// Applies a decision's message edits to `messages`. Indices are those of the list the policy
/// saw; inserts at `i` go before the original message `i` (at `len` = append), in edit order.
/// The decision must have been validated against a list of this length.
pub fn apply_message_edits<T>(
    messages: Vec<T>,
    edits: &[Edit],
    mut make: impl FnMut(&NewMessage) -> T,
    mut replace: impl FnMut(&mut T, &NewMessage),
) -> Vec<T> {
    let n = messages.len();
    let mut dropped = vec![false; n];
    let mut inserts: Vec<(usize, &NewMessage)> = Vec::new();
    let mut replaces: Vec<(usize, &NewMessage)> = Vec::new();
    for e in edits {
        match e {
            Edit::DropMessage(i) => {
                if let Some(d) = dropped.get_mut(*i as usize) {
                    *d = true;
                }
            }
            Edit::InsertMessage(i, m) => inserts.push((*i as usize, m)),
            Edit::ReplaceMessage(i, m) => replaces.push((*i as usize, m)),
            _ => {}
        }
    }
    if inserts.is_empty() && replaces.is_empty() && !dropped.contains(&true) {
        return messages;
    }
    let mut out = Vec::with_capacity(n + inserts.len());
    for (i, mut m) in messages.into_iter().enumerate() {
        out.extend(
            inserts
                .iter()
                .filter(|(at, _)| *at == i)
                .map(|(_, nm)| make(nm)),
        );
        if dropped[i] {
            continue;
        }
        for (_, nm) in replaces.iter().filter(|(at, _)| *at == i) {
            replace(&mut m, nm);
        }
        out.push(m);
    }
    out.extend(
        inserts
            .iter()
            .filter(|(at, _)| *at >= n)
            .map(|(_, nm)| make(nm)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nm(s: &str) -> NewMessage {
        NewMessage {
            role: Role::User,
            content: s.to_owned(),
        }
    }

    #[test]
    fn edits_index_the_list_the_policy_saw() {
        let msgs: Vec<String> = ["s", "u1", "a1", "u2"].map(String::from).to_vec();
        let edits = vec![
            Edit::DropMessage(1),
            Edit::DropMessage(2),
            Edit::InsertMessage(1, nm("note")),
            Edit::ReplaceMessage(3, nm("U2")),
            Edit::InsertMessage(4, nm("end")),
            Edit::Annotate("k".into(), "v".into()),
        ];
        let out = apply_message_edits(
            msgs,
            &edits,
            |m| m.content.clone(),
            |t, m| *t = m.content.clone(),
        );
        assert_eq!(out, vec!["s", "note", "U2", "end"]);
    }

    #[test]
    fn decision_json_shape_is_stable() {
        let d = Decision::Allow(vec![
            Edit::DropMessage(1),
            Edit::ReplaceMessage(2, nm("x")),
            Edit::SetCandidates(vec![1, 0]),
            Edit::SetHeader("x-a".into(), "b".into()),
        ]);
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(
            j,
            r#"{"allow":[{"drop_message":1},{"replace_message":[2,{"role":"user","content":"x"}]},{"set_candidates":[1,0]},{"set_header":["x-a","b"]}]}"#
        );
        assert_eq!(serde_json::from_str::<Decision>(&j).unwrap(), d);
        let deny: Decision =
            serde_json::from_str(r#"{"deny":{"status":402,"code":"c","reason":"r"}}"#).unwrap();
        assert!(matches!(deny, Decision::Deny(Denial { status: 402, .. })));
    }
}
