//! Hub answer → OpenAI Responses: the `response` object and its typed event stream.

use axum::body::Bytes;
use serde_json::{Value, json};

use super::request::Echo;
use crate::api::ApiError;
use crate::api::sse::Render;
use switchyard_types::{ChatResponse, FinishReason, StreamEvent, ToolCall, Usage, new_id};

/// Usage as the Responses API names it.
pub fn usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens()},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens()},
        "total_tokens": u.total_tokens,
    })
}

/// `status` and `incomplete_details` for how the model stopped.
fn status(finish: FinishReason) -> (&'static str, Value) {
    match finish {
        FinishReason::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        FinishReason::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "id": id, "type": "message", "status": status, "role": "assistant",
        "content": if text.is_empty() && status == "in_progress" { json!([]) } else {
            json!([{"type": "output_text", "text": text, "annotations": []}])
        },
    })
}

fn call_item(id: &str, call: &ToolCall, status: &str) -> Value {
    json!({
        "id": id, "type": "function_call", "status": status, "call_id": call.id,
        "name": call.function.name, "arguments": call.function.arguments,
    })
}

/// One answer's identity and the request members it echoes.
pub struct Envelope {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    pub echo: Echo,
}

impl Envelope {
    pub fn new(model: String, echo: Echo) -> Self {
        Envelope {
            id: new_id("resp_"),
            created_at: switchyard_types::unix_now(),
            model,
            echo,
        }
    }

    /// The `response` object with this output and status.
    fn object(&self, status: &str, incomplete: Value, output: Vec<Value>, usage: Value) -> Value {
        let e = &self.echo;
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": incomplete,
            "instructions": e.instructions,
            "max_output_tokens": e.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": e.parallel_tool_calls.unwrap_or(true),
            "previous_response_id": null,
            "reasoning": {"effort": e.reasoning_effort, "summary": null},
            "store": false,
            "temperature": e.temperature.unwrap_or(1.0),
            "text": {"format": e.text_format.clone().unwrap_or_else(|| json!({"type": "text"}))},
            "tool_choice": e.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            "tools": e.tools,
            "top_p": e.top_p.unwrap_or(1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": e.user,
            "metadata": e.metadata,
        })
    }

    /// The complete answer.
    pub fn complete(&self, response: &ChatResponse) -> Value {
        let mut output = Vec::new();
        let choice = response.choices.first();
        if let Some(m) = choice.map(|c| &c.message) {
            let text = m.text();
            if !text.is_empty() {
                output.push(message_item(&new_id("msg_"), &text, "completed"));
            }
            for call in m.tool_calls() {
                output.push(call_item(&new_id("fc_"), call, "completed"));
            }
        }
        let (status, incomplete) = status(choice.map_or(FinishReason::Stop, |c| c.finish_reason));
        self.object(status, incomplete, output, usage(&response.usage))
    }
}

/// The item being streamed.
enum Open {
    None,
    Text {
        id: String,
        text: String,
    },
    Call {
        id: String,
        index: u32,
        call: ToolCall,
    },
}

/// Renders hub stream events as Responses events (`response.created` …
/// `response.completed`), numbering them.
pub struct EventRenderer {
    env: Envelope,
    seq: u64,
    open: Open,
    /// Finished output items, in order.
    done_items: Vec<Value>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl EventRenderer {
    pub fn new(env: Envelope) -> Self {
        EventRenderer {
            env,
            seq: 0,
            open: Open::None,
            done_items: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    fn frame(&mut self, kind: &str, mut data: Value) -> Bytes {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
    }

    fn index(&self) -> usize {
        self.done_items.len()
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        let index = self.index();
        match std::mem::replace(&mut self.open, Open::None) {
            Open::None => {}
            Open::Text { id, text } => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                out.push(self.frame(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "text": text}),
                ));
                out.push(self.frame(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": part}),
                ));
                let item = message_item(&id, &text, "completed");
                out.push(self.frame(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                ));
                self.done_items.push(item);
            }
            Open::Call { id, call, .. } => {
                out.push(self.frame(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index,
                           "arguments": call.function.arguments}),
                ));
                let item = call_item(&id, &call, "completed");
                out.push(self.frame(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                ));
                self.done_items.push(item);
            }
        }
    }
}

impl Render for EventRenderer {
    fn start(&mut self) -> Vec<Bytes> {
        let response = self
            .env
            .object("in_progress", Value::Null, Vec::new(), Value::Null);
        vec![
            self.frame("response.created", json!({"response": response.clone()})),
            self.frame("response.in_progress", json!({"response": response})),
        ]
    }

    fn event(&mut self, ev: &StreamEvent) -> Vec<Bytes> {
        let mut out = Vec::new();
        match ev {
            StreamEvent::Content(delta) => {
                if delta.is_empty() {
                    return out;
                }
                if !matches!(self.open, Open::Text { .. }) {
                    self.close(&mut out);
                    let id = new_id("msg_");
                    let index = self.index();
                    out.push(self.frame(
                        "response.output_item.added",
                        json!({"output_index": index, "item": message_item(&id, "", "in_progress")}),
                    ));
                    out.push(self.frame(
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": index, "content_index": 0,
                               "part": {"type": "output_text", "text": "", "annotations": []}}),
                    ));
                    self.open = Open::Text {
                        id,
                        text: String::new(),
                    };
                }
                let index = self.index();
                if let Open::Text { id, text } = &mut self.open {
                    text.push_str(delta);
                    let id = id.clone();
                    out.push(self.frame(
                        "response.output_text.delta",
                        json!({"item_id": id, "output_index": index, "content_index": 0,
                               "delta": delta}),
                    ));
                }
            }
            StreamEvent::ToolCall {
                index: call_index,
                id: call_id,
                name,
                arguments,
            } => {
                let same = matches!(&self.open, Open::Call { index, .. } if index == call_index);
                if !same {
                    self.close(&mut out);
                    let id = new_id("fc_");
                    let call = ToolCall {
                        id: call_id.clone().unwrap_or_default(),
                        kind: "function".into(),
                        function: switchyard_types::FunctionCall {
                            name: name.clone().unwrap_or_default(),
                            arguments: String::new(),
                        },
                    };
                    let index = self.index();
                    out.push(self.frame(
                        "response.output_item.added",
                        json!({"output_index": index, "item": call_item(&id, &call, "in_progress")}),
                    ));
                    self.open = Open::Call {
                        id,
                        index: *call_index,
                        call,
                    };
                }
                let index = self.index();
                if let Open::Call { id, call, .. } = &mut self.open
                    && !arguments.is_empty()
                {
                    call.function.arguments.push_str(arguments);
                    let id = id.clone();
                    out.push(self.frame(
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": index, "delta": arguments}),
                    ));
                }
            }
            StreamEvent::Finish(f) => self.finish = Some(*f),
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Native { .. } => {}
        }
        out
    }

    fn done(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.close(&mut out);
        let (status, incomplete) = status(self.finish.unwrap_or(FinishReason::Stop));
        let response = self.env.object(
            status,
            incomplete,
            self.done_items.clone(),
            usage(&self.usage.unwrap_or_default()),
        );
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        out.push(self.frame(kind, json!({"response": response})));
        out
    }

    fn error(&mut self, e: &ApiError) -> Bytes {
        // The Responses `error` event, with the OpenAI error object too, so that SDKs raise it.
        let data = json!({"code": e.code, "message": e.message, "param": e.param,
                          "error": e.body()["error"].clone()});
        self.frame("error", data)
    }
}
