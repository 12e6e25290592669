//! Streaming attempts: hold the stream until its first content token (`prime`), then watch the
//! rest (`watch`): a stall longer than the route's TTFT or a stream past the total deadline is
//! cut with an explicit error, and the stream's end — success, failure, or the client walking
//! away — is recorded in the model's health exactly once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use switchyard_providers::{ErrorKind, EventStream, ProviderError};
use switchyard_routing::catalog::CatalogEntry;
use switchyard_routing::health::{InFlight, ModelHealth};
use switchyard_types::StreamEvent;

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

/// What the watcher records into, and its limits.
pub(super) struct Watch {
    pub health: Arc<ModelHealth>,
    /// Held until the stream ends: the model counts this request in flight until then.
    pub in_flight: InFlight,
    /// Prices, to record the cost once the final usage arrives.
    pub entry: CatalogEntry,
    pub started: Instant,
    /// The longest gap allowed between two events.
    pub stall: Duration,
    pub deadline: Instant,
}

/// Wrap a primed stream's tail so that its end is recorded in `health`, stalls and the total
/// deadline are enforced, and the in-flight mark lasts as long as the stream.
pub(super) fn watch(primed: Primed, w: Watch) -> Primed {
    let ttft = w.started.elapsed();
    let watched = Watched {
        inner: primed.tail,
        health: w.health,
        _in_flight: w.in_flight,
        entry: w.entry,
        started: w.started,
        ttft,
        stall: w.stall,
        deadline: w.deadline,
        timer: Box::pin(tokio::time::sleep_until(
            w.deadline.min(Instant::now() + w.stall),
        )),
        output_tokens: count_tokens(&primed.head),
        usage_tokens: None,
        state: State::Running,
    };
    Primed {
        head: primed.head,
        tail: Box::pin(watched),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Recorded (success or failure); yields nothing more.
    Done,
}

struct Watched {
    inner: EventStream,
    health: Arc<ModelHealth>,
    _in_flight: InFlight,
    entry: CatalogEntry,
    started: Instant,
    ttft: Duration,
    stall: Duration,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    /// Content events seen: the output token count when the upstream reports no usage.
    output_tokens: u32,
    usage_tokens: Option<u32>,
    state: State,
}

fn count_tokens(events: &VecDeque<StreamEvent>) -> u32 {
    events.iter().filter(|e| e.is_content()).count() as u32
}

impl Watched {
    fn succeed(&mut self) {
        self.state = State::Done;
        let out = self.usage_tokens.unwrap_or(self.output_tokens);
        self.health
            .record_success(Instant::now(), self.ttft, self.started.elapsed(), out);
    }

    fn fail(&mut self, err: &ProviderError) {
        self.state = State::Done;
        self.health
            .record_failure(Instant::now(), err, self.started.elapsed());
    }
}

impl Stream for Watched {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.state == State::Done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(event))) => {
                match &event {
                    StreamEvent::Usage(u) => {
                        this.usage_tokens = Some(u.completion_tokens);
                        let cost = this.entry.usage_cost(u);
                        this.health.record_usage(
                            Instant::now(),
                            u.prompt_tokens,
                            u.completion_tokens,
                            cost,
                        );
                    }
                    e if e.is_content() => this.output_tokens += 1,
                    _ => {}
                }
                let next = this.deadline.min(Instant::now() + this.stall);
                this.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(event)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.fail(&err);
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(None) => {
                this.succeed();
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let what = if Instant::now() >= this.deadline {
                        "the request's total deadline passed mid-stream".to_owned()
                    } else {
                        format!("stalled: no token for {} ms", this.stall.as_millis())
                    };
                    let err = ProviderError::new(ErrorKind::StreamCut, what);
                    this.fail(&err);
                    Poll::Ready(Some(Err(err)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.state == State::Running {
            // The client went away: that says nothing about the model.
            self.health.record_abandoned(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_providers::ErrorKind;
    use switchyard_types::{FinishReason, Usage};

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
