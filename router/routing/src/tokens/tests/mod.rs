//! Fixtures shared by the token-count tests: the cookbook conversation, a tool exchange, and
//! counters that force exact or estimated counting whatever the process-wide table state.

mod counts;
mod fallback;

use serde_json::json;
use tiktoken_rs::{ChatCompletionRequestMessage as TkMessage, num_tokens_from_messages};

use super::tables::{Counter, Encoding};
use super::*;
use switchyard_types::{
    Content, ContentPart, FunctionCall, FunctionDef, ImageUrl, JsonSchemaFormat, Message,
    ResponseFormat, Role, Tool, ToolCall,
};

use TokenizerFamily::{Cl100k, Claude, Gemini, Llama, O200k};

const ALL: [TokenizerFamily; 5] = [O200k, Cl100k, Claude, Gemini, Llama];

/// Counts with the tables loaded, whatever the process-wide state.
fn exact_counter(encoding: Encoding) -> Counter {
    Counter::Exact(encoding.load().expect("embedded table builds"))
}

fn estimate_counter(_: Encoding) -> Counter {
    Counter::Estimate
}

fn exact(family: TokenizerFamily, request: &ChatRequest) -> TokenCount {
    RequestTokens::with_counter(request, exact_counter).get(family)
}

fn estimated(family: TokenizerFamily, request: &ChatRequest) -> TokenCount {
    RequestTokens::with_counter(request, estimate_counter).get(family)
}

fn named(role: Role, name: &str, text: &str) -> Message {
    Message {
        name: Some(name.to_owned()),
        ..Message::new(role, text)
    }
}

/// The example conversation of OpenAI's "How to count tokens with tiktoken" cookbook.
fn cookbook() -> Vec<Message> {
    vec![
        Message::new(
            Role::System,
            "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
        ),
        named(
            Role::System,
            "example_user",
            "New synergies will help drive top-line growth.",
        ),
        named(
            Role::System,
            "example_assistant",
            "Things working well together will increase revenue.",
        ),
        named(
            Role::System,
            "example_user",
            "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
        ),
        named(
            Role::System,
            "example_assistant",
            "Let's talk later when we're less busy about how to do better.",
        ),
        Message::new(
            Role::User,
            "This late pivot means we don't have time to boil the ocean for the client deliverable.",
        ),
    ]
}

/// A tool-calling exchange: assistant calls, tool results, a refusal.
fn tool_conversation() -> Vec<Message> {
    let call = |id: &str, name: &str, arguments: &str| ToolCall {
        id: id.to_owned(),
        kind: "function".to_owned(),
        function: FunctionCall {
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        },
    };
    let result = |id: &str, text: &str| Message {
        tool_call_id: Some(id.to_owned()),
        ..Message::new(Role::Tool, text)
    };
    vec![
        Message::new(Role::Developer, "Answer with the tools when you can."),
        Message::new(
            Role::User,
            "What's the weather in Paris and in Tokyo right now?",
        ),
        Message {
            content: None,
            tool_calls: Some(vec![
                call(
                    "call_1",
                    "get_weather",
                    r#"{"city":"Paris","unit":"celsius"}"#,
                ),
                call(
                    "call_2",
                    "get_weather",
                    r#"{"city":"Tokyo","unit":"celsius"}"#,
                ),
            ]),
            ..Message::new(Role::Assistant, "")
        },
        result("call_1", r#"{"temp":18,"sky":"overcast"}"#),
        result("call_2", r#"{"temp":24,"sky":"clear"}"#),
        Message {
            refusal: Some("I can't share the exact location of people.".to_owned()),
            ..Message::new(
                Role::Assistant,
                "Paris is 18 °C and overcast; Tokyo 24 °C and clear.",
            )
        },
    ]
}

/// The same messages as tiktoken-rs' own input type.
fn to_tiktoken(messages: &[Message]) -> Vec<TkMessage> {
    messages
        .iter()
        .map(|m| TkMessage {
            role: m.role.as_str().to_owned(),
            content: m.content.as_ref().map(Content::text),
            name: m.name.clone(),
            function_call: None,
            tool_calls: m
                .tool_calls()
                .iter()
                .map(|c| tiktoken_rs::FunctionCall {
                    name: c.function.name.clone(),
                    arguments: c.function.arguments.clone(),
                })
                .collect(),
            refusal: m.refusal.clone(),
        })
        .collect()
}

fn weather_tool() -> Tool {
    Tool {
        kind: "function".to_owned(),
        function: FunctionDef {
            name: "get_weather".to_owned(),
            description: Some("Current weather for a city.".to_owned()),
            parameters: Some(json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city"]
            })),
            strict: None,
        },
    }
}

const ENGLISH: [&str; 4] = [
    "Hello, how are you today? I'd like to book a table for two at 7pm.",
    "The gateway routes each request to the cheapest model that fits the prompt, meets the \
     latency target and has not been failing recently.",
    "Please summarise the attached meeting notes in three bullet points, then list every \
     action item with its owner and due date (e.g. \"Sam - send the Q3 report by Friday\").",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the \
     age of foolishness, it was the epoch of belief, it was the epoch of incredulity.",
];
