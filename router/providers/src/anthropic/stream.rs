//! The Anthropic stream parser: named SSE events → canonical events (reference §2.1).
//!
//! Tool calls are indexed by their ordinal among the answer's tool calls, not by content block.
//! In JSON mode the answer tool's `input_json_delta` fragments are the answer text. Usage is
//! emitted once, at `message_stop`; a body that ends before `message_stop` was cut. A forwarded
//! event (native requests) of a block the hub does not model (thinking, its signature,
//! citations) is marked as the answer: the client sees it, so it starts the answer as text does.

use std::collections::HashMap;

use serde::Deserialize;

use super::{WireBlock, WireError, WireUsage, finish_reason, kind_for_type, refine};
use crate::{ProviderError, StreamParser, over_limit, tool_index};
use switchyard_types::{FinishReason, StreamEvent};

/// One SSE event's data. Every event type shares this flat shape; absent fields are `None`.
#[derive(Debug, Deserialize)]
struct WireEvent {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    message: Option<WireMessageStart>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    content_block: Option<WireBlock>,
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct WireMessageStart {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Debug, Deserialize)]
struct WireDelta {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

/// What an open content block streams into.
#[derive(Debug, Clone, Copy)]
enum OpenBlock {
    Text,
    /// A client tool call: its ordinal among the answer's tool calls, and whether any argument
    /// text has been sent.
    Tool {
        ordinal: u32,
        has_args: bool,
    },
    /// The JSON-mode answer tool: its input is streamed as content.
    Answer {
        has_text: bool,
    },
    Other,
}

/// Content blocks one answer may open (text, thinking, tool use…): the wire's block index keys
/// the open blocks, so a hostile index cannot grow them without bound.
const MAX_CONTENT_BLOCKS: u32 = 4 * crate::MAX_TOOL_CALLS;

/// Named SSE events → canonical events. The stream is complete only at `message_stop`.
#[derive(Debug)]
pub struct EventParser {
    json_tool: Option<String>,
    /// Forward every event as received too (`StreamEvent::Native`): the request came through
    /// `/v1/messages` with its native body.
    native: bool,
    blocks: HashMap<u32, OpenBlock>,
    tool_calls: u32,
    usage: WireUsage,
    finished: bool,
    stopped: bool,
}

impl EventParser {
    pub fn new(json_tool: Option<String>) -> Self {
        EventParser {
            json_tool,
            native: false,
            blocks: HashMap::new(),
            tool_calls: 0,
            usage: WireUsage::default(),
            finished: false,
            stopped: false,
        }
    }

    /// Also forward each event as received (for a native `/v1/messages` request).
    pub fn forwarding(mut self, native: bool) -> Self {
        self.native = native;
        self
    }

    fn block_start(
        &mut self,
        index: u32,
        block: WireBlock,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), ProviderError> {
        if index >= MAX_CONTENT_BLOCKS {
            return Err(over_limit(format!(
                "content block index {index} is beyond the limit of {MAX_CONTENT_BLOCKS} blocks"
            )));
        }
        let open = match (block.kind.as_str(), block.name) {
            ("text", _) => {
                if let Some(text) = block.text.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::Content(text));
                }
                OpenBlock::Text
            }
            ("tool_use", Some(name)) if self.json_tool.as_deref() == Some(name.as_str()) => {
                OpenBlock::Answer { has_text: false }
            }
            ("tool_use", Some(name)) => {
                let ordinal = tool_index(self.tool_calls)?;
                self.tool_calls += 1;
                out.push(StreamEvent::ToolCall {
                    index: ordinal,
                    id: block.id,
                    name: Some(name),
                    arguments: String::new(),
                });
                OpenBlock::Tool {
                    ordinal,
                    has_args: false,
                }
            }
            _ => OpenBlock::Other,
        };
        self.blocks.insert(index, open);
        Ok(())
    }

    fn block_delta(&mut self, index: u32, delta: WireDelta, out: &mut Vec<StreamEvent>) {
        let fragment = match delta.kind.as_deref() {
            Some("text_delta") => delta.text,
            Some("input_json_delta") => delta.partial_json,
            _ => None,
        };
        let Some(fragment) = fragment.filter(|f| !f.is_empty()) else {
            return;
        };
        match self.blocks.get_mut(&index) {
            Some(OpenBlock::Tool { ordinal, has_args }) => {
                *has_args = true;
                out.push(StreamEvent::ToolCall {
                    index: *ordinal,
                    id: None,
                    name: None,
                    arguments: fragment,
                });
            }
            Some(OpenBlock::Answer { has_text }) => {
                *has_text = true;
                out.push(StreamEvent::Content(fragment));
            }
            Some(OpenBlock::Text) | None if delta.kind.as_deref() == Some("text_delta") => {
                out.push(StreamEvent::Content(fragment));
            }
            _ => {}
        }
    }

    /// A tool called with no arguments still gets `{}`, as in the non-streamed answer.
    fn block_stop(&mut self, index: u32, out: &mut Vec<StreamEvent>) {
        match self.blocks.remove(&index) {
            Some(OpenBlock::Tool {
                ordinal,
                has_args: false,
            }) => out.push(StreamEvent::ToolCall {
                index: ordinal,
                id: None,
                name: None,
                arguments: "{}".to_owned(),
            }),
            Some(OpenBlock::Answer { has_text: false }) => {
                out.push(StreamEvent::Content("{}".to_owned()));
            }
            _ => {}
        }
    }
}

/// Whether a forwarded event shows the client part of the answer that no hub event carries: a
/// block other than text or a tool call (thinking, redacted thinking, server tools, future
/// types) opening, or a delta other than text or tool input (thinking, its signature,
/// citations). Text and tool calls start the answer through their own hub events.
fn starts_answer(kind: &str, data: &WireEvent) -> bool {
    match kind {
        "content_block_start" => data
            .content_block
            .as_ref()
            .is_some_and(|b| !matches!(b.kind.as_str(), "text" | "tool_use")),
        "content_block_delta" => data
            .delta
            .as_ref()
            .and_then(|d| d.kind.as_deref())
            .is_some_and(|k| !matches!(k, "text_delta" | "input_json_delta")),
        _ => false,
    }
}

impl StreamParser<eventsource_stream::Event> for EventParser {
    fn item(
        &mut self,
        event: eventsource_stream::Event,
    ) -> Result<Vec<StreamEvent>, ProviderError> {
        let data: WireEvent = serde_json::from_str(&event.data)
            .map_err(|e| ProviderError::malformed("Anthropic stream event", e))?;
        let kind = data.kind.clone().unwrap_or(event.event);
        let index = data.index.unwrap_or(0);
        let mut out = Vec::new();
        if self.native && kind != "error" {
            out.push(StreamEvent::Native {
                frame: format!("event: {kind}\ndata: {}\n\n", event.data),
                answer: starts_answer(&kind, &data),
            });
        }
        match kind.as_str() {
            "message_start" => {
                if let Some(message) = data.message {
                    self.usage.merge(message.usage);
                }
            }
            "content_block_start" => {
                if let Some(block) = data.content_block {
                    self.block_start(index, block, &mut out)?;
                }
            }
            "content_block_delta" => {
                if let Some(delta) = data.delta {
                    self.block_delta(index, delta, &mut out);
                }
            }
            "content_block_stop" => self.block_stop(index, &mut out),
            "message_delta" => {
                if let Some(usage) = data.usage {
                    self.usage.merge(usage);
                }
                if let Some(stop) = data.delta.and_then(|d| d.stop_reason) {
                    self.finished = true;
                    out.push(StreamEvent::Finish(finish_reason(
                        Some(&stop),
                        self.tool_calls > 0,
                    )));
                }
            }
            "message_stop" if !self.stopped => {
                self.stopped = true;
                if !self.finished {
                    self.finished = true;
                    out.push(StreamEvent::Finish(FinishReason::Stop));
                }
                out.push(StreamEvent::Usage(self.usage.to_usage()));
            }
            "error" => {
                let error = data.error.unwrap_or_default();
                let kind = refine(kind_for_type(&error.kind), &error);
                return Err(ProviderError::new(
                    kind,
                    format!("error event in stream: {}", error.message),
                ));
            }
            _ => {} // ping, events after message_stop, future event types
        }
        Ok(out)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.stopped {
            Ok(Vec::new())
        } else {
            Err(ProviderError::cut(
                "Anthropic stream ended before message_stop",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::fixtures::{fixture, run_sse};
    use switchyard_types::{StreamAccumulator, Usage};

    fn parse(text: &str, json_tool: Option<&str>) -> (Vec<StreamEvent>, Option<ProviderError>) {
        run_sse(text, EventParser::new(json_tool.map(str::to_owned)))
    }

    fn accumulate(events: Vec<StreamEvent>) -> StreamAccumulator {
        let mut acc = StreamAccumulator::default();
        events.into_iter().for_each(|e| acc.push(e));
        acc
    }

    #[test]
    fn text_stream_ends_with_usage_at_message_stop() {
        let (events, error) = parse(&fixture("anthropic_stream_text.sse"), None);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            events,
            vec![
                StreamEvent::Content("Hello".into()),
                StreamEvent::Content(" there".into()),
                StreamEvent::Finish(FinishReason::Stop),
                StreamEvent::Usage(Usage::new(12 + 30, 15).with_cache(30, 0)),
            ]
        );
    }

    #[test]
    fn tool_calls_are_indexed_by_tool_ordinal() {
        let (events, error) = parse(&fixture("anthropic_stream_tool.sse"), None);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            events[1],
            StreamEvent::ToolCall {
                index: 0,
                id: Some("toolu_01".into()),
                name: Some("get_weather".into()),
                arguments: String::new(),
            }
        );
        let acc = accumulate(events);
        assert_eq!(acc.text, "Checking.");
        assert_eq!(acc.tool_calls.len(), 2);
        assert_eq!(acc.tool_calls[0].function.arguments, r#"{"city": "Paris"}"#);
        assert_eq!(acc.tool_calls[1].id, "toolu_02");
        assert_eq!(acc.tool_calls[1].function.name, "get_time");
        assert_eq!(acc.tool_calls[1].function.arguments, "{}");
        assert_eq!(acc.finish, Some(FinishReason::ToolCalls));
        assert_eq!(acc.usage, Some(Usage::new(80, 40)));
    }

    #[test]
    fn json_mode_streams_the_answer_tool_as_content() {
        let sse = fixture("anthropic_stream_tool.sse").replace("get_weather", "weather_report");
        let (events, error) = parse(&sse, Some("weather_report"));
        assert!(error.is_none(), "{error:?}");
        let acc = accumulate(events);
        assert_eq!(acc.text, r#"Checking.{"city": "Paris"}"#);
        assert_eq!(acc.tool_calls.len(), 1);
        assert_eq!(acc.tool_calls[0].function.name, "get_time");

        let only_answer = fixture("anthropic_stream_tool.sse")
            .replace("get_weather", "weather_report")
            .replace(r#""name":"get_time""#, r#""name":"weather_report""#);
        let acc = accumulate(parse(&only_answer, Some("weather_report")).0);
        assert!(acc.tool_calls.is_empty());
        assert_eq!(acc.finish, Some(FinishReason::Stop));
    }

    #[test]
    fn missing_message_stop_is_a_cut() {
        let text = fixture("anthropic_stream_text.sse");
        let cut = &text[..text.find("event: message_stop").unwrap()];
        let (events, error) = parse(cut, None);
        assert!(events.contains(&StreamEvent::Finish(FinishReason::Stop)));
        assert!(!events.iter().any(|e| matches!(e, StreamEvent::Usage(_))));
        assert_eq!(error.unwrap().kind, ErrorKind::StreamCut);
    }

    #[test]
    fn error_events_after_200_map_by_type() {
        let text = fixture("anthropic_stream_text.sse");
        let head = &text[..text.find("event: content_block_stop").unwrap()];
        let frame = |kind: &str| {
            let data = format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"m"}}}}"#);
            format!("{head}event: error\ndata: {data}\n\n")
        };
        let (events, error) = parse(&frame("overloaded_error"), None);
        assert_eq!(events.len(), 2);
        let error = error.unwrap();
        assert_eq!((error.kind, error.retryable), (ErrorKind::Overloaded, true));
        assert_eq!(
            parse(&frame("rate_limit_error"), None).1.unwrap().kind,
            ErrorKind::RateLimited
        );
        assert_eq!(
            parse(&frame("api_error"), None).1.unwrap().kind,
            ErrorKind::Server
        );
    }

    #[test]
    fn hostile_block_indices_and_tool_counts_are_refused() {
        let start = |index: u64, id: usize| {
            format!(
                "event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"toolu_{id}\",\"name\":\"f\",\"input\":{{}}}}}}\n\n"
            )
        };
        let (events, error) = parse(&start(u64::from(u32::MAX), 0), None);
        assert!(events.is_empty());
        let error = error.unwrap();
        assert_eq!(error.kind, ErrorKind::MalformedResponse);
        assert!(!error.retryable && error.message.contains("4294967295"));

        // Tool calls are numbered by the parser: the 257th is one too many.
        let calls = crate::MAX_TOOL_CALLS as usize;
        let many: String = (0..=calls).map(|i| start(i as u64, i)).collect();
        let (events, error) = parse(&many, None);
        assert_eq!(events.len(), calls);
        assert_eq!(error.unwrap().kind, ErrorKind::MalformedResponse);
    }
}
