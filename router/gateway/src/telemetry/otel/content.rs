//! Prompt and completion text as the GenAI conventions' `gen_ai.input.messages` and
//! `gen_ai.output.messages` (JSON: `[{"role", "parts": [{"type": "text", "content"}]}]`),
//! only with `content = true`. Each attribute holds at most about `max` bytes of text: texts
//! are cut (on a character boundary, marked `…`) and later messages dropped once it is spent.

use serde_json::{Value as Json, json};

use super::*;
use switchyard_types::Message;

/// A message's own overhead against the budget, so many empty messages still run it out.
const PER_MESSAGE: usize = 32;

struct Budget(usize);

impl Budget {
    /// `text`, cut to what is left; `None` once nothing is.
    fn take<'t>(&mut self, text: &'t str) -> Option<Cow<'t, str>> {
        if self.0 == 0 {
            return None;
        }
        self.0 = self.0.saturating_sub(PER_MESSAGE.min(self.0));
        if text.len() <= self.0 {
            self.0 -= text.len();
            return Some(Cow::Borrowed(text));
        }
        let mut cut = self.0;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.0 = 0;
        Some(Cow::Owned(format!("{}…", &text[..cut])))
    }
}

fn message(
    role: &str,
    text: &str,
    calls: &[switchyard_types::ToolCall],
    budget: &mut Budget,
) -> Option<Json> {
    let text = budget.take(text)?;
    let mut parts = Vec::new();
    if !text.is_empty() {
        parts.push(json!({"type": "text", "content": text}));
    }
    for call in calls {
        let Some(args) = budget.take(&call.function.arguments) else {
            break;
        };
        parts.push(json!({
            "type": "tool_call",
            "id": call.id,
            "name": call.function.name,
            "arguments": args,
        }));
    }
    Some(json!({"role": role, "parts": parts}))
}

/// The request's messages (as sent upstream).
pub(super) fn input(request: &ChatRequest, max: usize) -> String {
    let mut budget = Budget(max);
    let messages: Vec<Json> = request
        .messages
        .iter()
        .map_while(|m: &Message| message(m.role.as_str(), &m.text(), m.tool_calls(), &mut budget))
        .collect();
    Json::Array(messages).to_string()
}

/// A complete answer's choices.
pub(super) fn output_of(response: &ChatResponse, max: usize) -> String {
    let mut budget = Budget(max);
    let messages: Vec<Json> = response
        .choices
        .iter()
        .map_while(|c| {
            let m = &c.message;
            let mut out = message("assistant", &m.text(), m.tool_calls(), &mut budget)?;
            out["finish_reason"] = json!(finish_reason(c.finish_reason));
            Some(out)
        })
        .collect();
    Json::Array(messages).to_string()
}

/// A streamed answer, as accumulated.
pub(super) fn output_of_stream(acc: &StreamAccumulator, max: usize) -> String {
    let mut budget = Budget(max);
    let mut out = message("assistant", &acc.text, &acc.tool_calls, &mut budget)
        .unwrap_or_else(|| json!({"role": "assistant", "parts": []}));
    if let Some(f) = acc.finish {
        out["finish_reason"] = json!(finish_reason(f));
    }
    Json::Array(vec![out]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_bounded_and_stays_json() {
        let long = "é".repeat(10_000);
        let mut request: ChatRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": long}]
        }))
        .unwrap();
        let out = input(&request, 1000);
        assert!(out.len() < 1000 + 200, "{}", out.len());
        let v: Json = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["role"], "system");
        assert_eq!(v[0]["parts"][0]["content"], "be brief");
        assert!(v[1]["parts"][0]["content"].as_str().unwrap().ends_with('…'));
        // A thousand empty messages still spend the budget.
        request.messages = vec![Message::new(switchyard_types::Role::User, ""); 1000];
        let v: Json = serde_json::from_str(&input(&request, 320)).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 10);
    }
}
