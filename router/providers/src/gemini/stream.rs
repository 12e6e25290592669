//! The Gemini stream parser: `alt=sse` frames → canonical events (reference §3).
//!
//! Each `data:` frame is a whole `GenerateContentResponse` with the new parts; function calls
//! arrive whole. There is no terminator: a stream is complete only if a frame carried a
//! `finishReason`, and the last `usageMetadata` seen is the total.

use super::{UsageMetadata, WireResponse, classify, finish_reason};
use crate::{ProviderError, StreamParser, tool_index};
use switchyard_types::{FinishReason, StreamEvent};

/// `data:` frames → canonical events. `json_tool` names the JSON-mode answer function, whose
/// arguments are streamed as content.
#[derive(Debug, Default)]
pub struct FrameParser {
    json_tool: Option<String>,
    tool_calls: u32,
    usage: Option<UsageMetadata>,
    finished: bool,
}

impl FrameParser {
    pub fn new(json_tool: Option<String>) -> Self {
        FrameParser {
            json_tool,
            ..FrameParser::default()
        }
    }
}

impl StreamParser<eventsource_stream::Event> for FrameParser {
    fn item(
        &mut self,
        event: eventsource_stream::Event,
    ) -> Result<Vec<StreamEvent>, ProviderError> {
        let frame: WireResponse = serde_json::from_str(&event.data)
            .map_err(|e| ProviderError::malformed("Gemini stream frame", e))?;
        if let Some(error) = frame.error {
            let mut err = classify(None, &error);
            err.message = format!("error in stream: {}", err.message);
            return Err(err);
        }
        if frame.usage_metadata.is_some() {
            self.usage = frame.usage_metadata;
        }
        let mut out = Vec::new();
        let Some(candidate) = frame.candidates.into_iter().next() else {
            if frame.prompt_feedback.and_then(|f| f.block_reason).is_some() && !self.finished {
                self.finished = true;
                out.push(StreamEvent::Finish(FinishReason::ContentFilter));
            }
            return Ok(out);
        };
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(call) = part.function_call {
                let call = call.into_tool_call();
                if self.json_tool.as_deref() == Some(call.function.name.as_str()) {
                    out.push(StreamEvent::Content(call.function.arguments));
                    continue;
                }
                out.push(StreamEvent::ToolCall {
                    index: tool_index(self.tool_calls)?,
                    id: Some(call.id),
                    name: Some(call.function.name),
                    arguments: call.function.arguments,
                });
                self.tool_calls += 1;
            } else if let Some(text) = part.text.filter(|t| !t.is_empty() && !part.thought) {
                out.push(StreamEvent::Content(text));
            }
        }
        if let Some(reason) = candidate.finish_reason
            && !self.finished
        {
            self.finished = true;
            out.push(StreamEvent::Finish(finish_reason(
                &reason,
                self.tool_calls > 0,
            )));
        }
        Ok(out)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if !self.finished {
            return Err(ProviderError::cut(
                "Gemini stream ended without a finishReason",
            ));
        }
        let usage = self.usage.map(|u| StreamEvent::Usage(u.to_usage()));
        Ok(usage.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::fixtures::{fixture, run_sse};
    use switchyard_types::{StreamAccumulator, Usage};

    fn parse(text: &str, json_tool: Option<&str>) -> (Vec<StreamEvent>, Option<ProviderError>) {
        run_sse(text, FrameParser::new(json_tool.map(str::to_owned)))
    }

    #[test]
    fn text_stream_ends_at_eof_with_the_last_usage() {
        let (events, error) = parse(&fixture("gemini_stream_text.sse"), None);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            events,
            vec![
                StreamEvent::Content("18C".into()),
                StreamEvent::Content(" and cloudy.".into()),
                StreamEvent::Finish(FinishReason::Stop),
                StreamEvent::Usage(Usage::new(25, 6)),
            ]
        );
    }

    #[test]
    fn function_calls_stream_whole_with_generated_ids() {
        let (events, error) = parse(&fixture("gemini_stream_tool.sse"), None);
        assert!(error.is_none(), "{error:?}");
        let mut acc = StreamAccumulator::default();
        events.into_iter().for_each(|e| acc.push(e));
        assert_eq!(acc.tool_calls.len(), 2);
        assert!(acc.tool_calls[0].id.starts_with("call_"));
        assert_eq!(acc.tool_calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(acc.tool_calls[1].function.name, "get_time");
        assert_eq!(acc.finish, Some(FinishReason::ToolCalls));
        assert_eq!(acc.usage, Some(Usage::new(40, 20).with_reasoning(8)));
    }

    #[test]
    fn json_mode_streams_the_answer_function_as_content() {
        let sse = fixture("gemini_stream_tool.sse").replace("get_weather", "weather_report");
        let (events, _) = parse(&sse, Some("weather_report"));
        assert_eq!(
            events[0],
            StreamEvent::Content(r#"{"city":"Paris"}"#.into())
        );
        assert!(matches!(&events[1], StreamEvent::ToolCall { index: 0, .. }));
    }

    #[test]
    fn eof_without_finish_is_a_cut_and_error_frames_map() {
        let text = fixture("gemini_stream_text.sse");
        let first = &text[..text.find("\r\n\r\n").unwrap() + 4];
        let (events, error) = parse(first, None);
        assert_eq!(events, vec![StreamEvent::Content("18C".into())]);
        assert_eq!(error.unwrap().kind, ErrorKind::StreamCut);

        let frame =
            r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#;
        let (events, error) = parse(&format!("{first}data: {frame}\r\n\r\n"), None);
        assert_eq!(events.len(), 1);
        assert_eq!(error.unwrap().kind, ErrorKind::Overloaded);
        let frame = r#"{"error":{"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#;
        let (_, error) = parse(&format!("data: {frame}\n\n"), None);
        assert_eq!(error.unwrap().kind, ErrorKind::RateLimited);
    }

    #[test]
    fn a_blocked_prompt_finishes_as_content_filter() {
        let frame = r#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":7}}"#;
        let (events, error) = parse(&format!("data: {frame}\n\n"), None);
        assert!(error.is_none());
        let usage = StreamEvent::Usage(Usage::new(7, 0));
        assert_eq!(
            events,
            vec![StreamEvent::Finish(FinishReason::ContentFilter), usage]
        );
    }

    #[test]
    fn too_many_function_calls_are_refused() {
        let part = r#"{"functionCall":{"name":"f","args":{}}}"#;
        let parts = vec![part; crate::MAX_TOOL_CALLS as usize + 1].join(",");
        let frame = format!(r#"{{"candidates":[{{"content":{{"parts":[{parts}]}}}}]}}"#);
        let (events, error) = parse(&format!("data: {frame}\n\n"), None);
        assert!(events.is_empty());
        let error = error.unwrap();
        assert_eq!(error.kind, ErrorKind::MalformedResponse);
        assert!(error.message.contains("256"), "{}", error.message);
    }
}
