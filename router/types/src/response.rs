//! The canonical chat response and usage (OpenAI's `chat.completion` object).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Message;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    #[serde(default = "completion_object")]
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// An embeddings answer: one vector per input, in input order (`choices` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<Vec<Vec<f32>>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn completion_object() -> String {
    "chat.completion".to_owned()
}

impl ChatResponse {
    /// The first choice's message (the gateway only asks for n = 1).
    pub fn message(&self) -> Option<&Message> {
        self.choices.first().map(|c| &c.message)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: Message,
    pub finish_reason: FinishReason,
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// Why the model stopped. Deserialisation is tolerant: OpenAI-compatible servers send their own
/// words (`eos`, `max_tokens`), mapped to the nearest OpenAI value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", from = "String")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    FunctionCall,
}

impl From<String> for FinishReason {
    fn from(s: String) -> Self {
        match s.as_str() {
            "length" | "max_tokens" => FinishReason::Length,
            "tool_calls" | "tool_use" => FinishReason::ToolCalls,
            "function_call" => FinishReason::FunctionCall,
            "content_filter" => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        }
    }
}

/// Token usage, normalised: `prompt_tokens` includes cached input (as OpenAI and Gemini count
/// it; Anthropic's parts are summed by its adapter), `completion_tokens` includes reasoning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Input tokens read from the provider's prompt cache (billed at the cached price).
    #[serde(default)]
    pub cached_tokens: u32,
    /// Input tokens written to the provider's prompt cache (Anthropic bills these above input).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Usage {
    pub fn new(prompt: u32, completion: u32) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: None,
            completion_tokens_details: None,
        }
    }

    /// Add another answer's usage (a request that made several calls).
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        if let Some(o) = other.prompt_tokens_details {
            let d = self.prompt_tokens_details.get_or_insert_default();
            d.cached_tokens = d.cached_tokens.saturating_add(o.cached_tokens);
            d.cache_write_tokens = d.cache_write_tokens.saturating_add(o.cache_write_tokens);
        }
        if let Some(o) = other.completion_tokens_details {
            let d = self.completion_tokens_details.get_or_insert_default();
            d.reasoning_tokens = d.reasoning_tokens.saturating_add(o.reasoning_tokens);
        }
    }

    pub fn with_cache(mut self, cached_read: u32, cache_write: u32) -> Self {
        if cached_read > 0 || cache_write > 0 {
            self.prompt_tokens_details = Some(PromptTokensDetails {
                cached_tokens: cached_read,
                cache_write_tokens: cache_write,
            });
        }
        self
    }

    pub fn with_reasoning(mut self, reasoning: u32) -> Self {
        if reasoning > 0 {
            self.completion_tokens_details = Some(CompletionTokensDetails {
                reasoning_tokens: reasoning,
            });
        }
        self
    }

    pub fn cached_tokens(&self) -> u32 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }

    pub fn cache_write_tokens(&self) -> u32 {
        self.prompt_tokens_details
            .map_or(0, |d| d.cache_write_tokens)
    }

    pub fn reasoning_tokens(&self) -> u32 {
        self.completion_tokens_details
            .map_or(0, |d| d.reasoning_tokens)
    }
}
