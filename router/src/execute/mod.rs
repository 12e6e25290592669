//! Execute: call a provider and hold a streamed answer back until its first content token.
//!
//! IMPORTANT: nothing of a streamed answer reaches the client before `prime` returns `Ok`.
//! Until then an upstream failure is still an ordinary error (a clean HTTP status, or — with
//! routing — a silent move to the next candidate). After it, a failure can only be reported
//! in-stream, as an explicit error event.

use std::collections::VecDeque;

use futures::StreamExt;

use crate::providers::{EventStream, ProviderError};
use crate::types::StreamEvent;

/// A stream whose first content (or its finish, for an empty answer) has arrived.
pub struct Primed {
    /// Events read while waiting, in order, the first content event last.
    pub head: VecDeque<StreamEvent>,
    /// The rest of the upstream stream.
    pub tail: EventStream,
}

/// Read events until the answer has started (content, a tool call, or a finish). An error or an
/// end before that is returned as the error.
pub async fn prime(mut stream: EventStream) -> Result<Primed, ProviderError> {
    let mut head = VecDeque::new();
    loop {
        match stream.next().await {
            Some(Ok(event)) => {
                let started = event.is_content() || matches!(event, StreamEvent::Finish(_));
                head.push_back(event);
                if started {
                    return Ok(Primed { head, tail: stream });
                }
            }
            Some(Err(e)) => return Err(e),
            None => return Err(ProviderError::cut("stream ended before any content")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ErrorKind;
    use crate::types::{FinishReason, Usage};

    fn stream(items: Vec<Result<StreamEvent, ProviderError>>) -> EventStream {
        Box::pin(futures::stream::iter(items))
    }

    #[tokio::test]
    async fn waits_for_the_first_content() {
        let s = stream(vec![
            Ok(StreamEvent::Content(String::new())),
            Ok(StreamEvent::Content("Hi".into())),
            Ok(StreamEvent::Finish(FinishReason::Stop)),
        ]);
        let primed = prime(s).await.unwrap();
        assert_eq!(primed.head.len(), 2);
        let rest: Vec<_> = primed.tail.collect().await;
        assert_eq!(rest.len(), 1);
    }

    #[tokio::test]
    async fn an_error_before_content_is_an_error() {
        let s = stream(vec![
            Ok(StreamEvent::Usage(Usage::new(3, 0))),
            Err(ProviderError::new(ErrorKind::Overloaded, "busy")),
        ]);
        assert_eq!(prime(s).await.err().unwrap().kind, ErrorKind::Overloaded);
        let empty = stream(vec![]);
        assert_eq!(prime(empty).await.err().unwrap().kind, ErrorKind::StreamCut);
    }
}
