//! Streaming attempts: hold the stream until its first content token (`prime`), then watch the
//! rest (`watch`): a gap longer than the route's `idle` while waiting for the upstream is a
//! stall (a failure of the model), the route's total deadline (only when set) cuts the stream
//! without blaming the model, and the stream's end — success, failure, or the client walking
//! away — is recorded in the model's health exactly once.
//!
//! IMPORTANT: the idle timer runs only while the consumer waits for the next event. The
//! consumer is the stream's pump (`pump.rs`), which waits on the client separately: time a
//! slow client makes the pump wait is never counted against the upstream.

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

/// Events an upstream may send before its first content: more is a protocol error (a hostile
/// upstream could otherwise grow the head without bound until the TTFT deadline).
const MAX_HEAD_EVENTS: usize = 256;

/// A stream whose first content (or its finish, for an empty answer) has arrived.
pub struct Primed {
    /// Events read while waiting, in order, the first content event last.
    pub head: VecDeque<StreamEvent>,
    /// The rest of the upstream stream.
    pub tail: EventStream,
}

/// Read events until the answer has started (content, a tool call, a forwarded native event
/// the client sees as the answer, such as thinking, or a finish). An error or an end before
/// that is returned as the error.
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
                if head.len() >= MAX_HEAD_EVENTS {
                    let mut err = ProviderError::new(
                        ErrorKind::MalformedResponse,
                        format!("no content in the stream's first {MAX_HEAD_EVENTS} events"),
                    );
                    err.retryable = false;
                    return Err(err);
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
    /// The longest wait for the upstream's next event.
    pub idle: Duration,
    /// The request's total deadline, when the route sets one for streams.
    pub deadline: Option<Instant>,
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
        ttft,
        idle: w.idle,
        deadline: w.deadline,
        timer: Box::pin(tokio::time::sleep(w.idle)),
        waiting_since: None,
        upstream_time: Duration::ZERO,
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
    /// Recorded (success, failure or neutral end); yields nothing more.
    Done,
}

struct Watched {
    inner: EventStream,
    health: Arc<ModelHealth>,
    _in_flight: InFlight,
    entry: CatalogEntry,
    ttft: Duration,
    idle: Duration,
    deadline: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    /// When the consumer began waiting for the next event (None: it has not asked since the
    /// last one).
    waiting_since: Option<Instant>,
    /// Time spent waiting for the upstream after the first token: what TPOT learns from.
    upstream_time: Duration,
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
        let total = self.ttft + self.upstream_time;
        self.health
            .record_success(Instant::now(), self.ttft, total, out);
    }

    fn fail(&mut self, err: &ProviderError) {
        self.state = State::Done;
        self.health
            .record_failure(Instant::now(), err, self.ttft + self.upstream_time);
    }

    /// The route's total deadline: a limit of the request (its length is the client's
    /// `max_tokens`, its pace partly the client's reading), not a failure of the model.
    fn past_deadline(&mut self) -> ProviderError {
        self.state = State::Done;
        self.health.record_abandoned(Instant::now());
        ProviderError::new(
            ErrorKind::Timeout,
            "the route's total deadline (total_ms) passed mid-stream",
        )
    }
}

impl Stream for Watched {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.state == State::Done {
            return Poll::Ready(None);
        }
        let now = Instant::now();
        if this.deadline.is_some_and(|d| now >= d) {
            return Poll::Ready(Some(Err(this.past_deadline())));
        }
        let since = match this.waiting_since {
            Some(since) => since,
            None => {
                let stall_at = now + this.idle;
                let at = this.deadline.map_or(stall_at, |d| d.min(stall_at));
                this.timer.as_mut().reset(at);
                this.waiting_since = Some(now);
                now
            }
        };
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(item) => {
                this.waiting_since = None;
                this.upstream_time += since.elapsed();
                match item {
                    Some(Ok(event)) => {
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
                        Poll::Ready(Some(Ok(event)))
                    }
                    Some(Err(err)) => {
                        this.fail(&err);
                        Poll::Ready(Some(Err(err)))
                    }
                    None => {
                        this.succeed();
                        Poll::Ready(None)
                    }
                }
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    if this.deadline.is_some_and(|d| Instant::now() >= d) {
                        return Poll::Ready(Some(Err(this.past_deadline())));
                    }
                    let err = ProviderError::new(
                        ErrorKind::StreamCut,
                        format!("stalled: no token for {} ms", this.idle.as_millis()),
                    );
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
            // The client went away, stopped reading, or the gateway is shutting down: that
            // says nothing about the model.
            self.health.record_abandoned(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_providers::ErrorKind;
    use switchyard_routing::catalog::Catalog;
    use switchyard_routing::health::HealthConfig;
    use switchyard_types::ids::ModelId;
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

    /// A native stream's thinking is the answer starting (the client sees it): however long
    /// it thinks, the stream primes at its first thinking event, not after the head limit.
    #[tokio::test]
    async fn a_native_thinking_event_starts_the_answer() {
        let native = |frame: &str, answer| {
            Ok(StreamEvent::Native {
                frame: frame.to_owned(),
                answer,
            })
        };
        let mut items = vec![
            native("event: message_start\n", false),
            native("think", true),
        ];
        items.extend((0..2 * MAX_HEAD_EVENTS).map(|_| native("think", true)));
        items.push(Ok(StreamEvent::Content("Hi".into())));
        let primed = prime(stream(items)).await.unwrap();
        assert_eq!(primed.head.len(), 2);
        assert_eq!(
            primed.tail.collect::<Vec<_>>().await.len(),
            2 * MAX_HEAD_EVENTS + 1
        );
        // Framing alone is not the answer: a head of nothing else is still refused.
        let framing = (0..MAX_HEAD_EVENTS + 1).map(|_| native("event: ping\n", false));
        let err = prime(stream(framing.collect())).await.err().unwrap();
        assert_eq!(err.kind, ErrorKind::MalformedResponse);
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

    fn health() -> Arc<ModelHealth> {
        Arc::new(ModelHealth::new(
            ModelId::new("m"),
            Arc::new(HealthConfig::default()),
        ))
    }

    fn watched(tail: EventStream, h: &Arc<ModelHealth>, deadline: Option<Instant>) -> EventStream {
        let entry = Catalog::builtin()
            .unwrap()
            .get("gpt-4o-mini")
            .unwrap()
            .clone();
        let primed = Primed {
            head: VecDeque::from([StreamEvent::Content("first".into())]),
            tail,
        };
        let w = Watch {
            health: h.clone(),
            in_flight: h.start(),
            entry,
            started: Instant::now(),
            idle: Duration::from_secs(1),
            deadline,
        };
        watch(primed, w).tail
    }

    fn content() -> Result<StreamEvent, ProviderError> {
        Ok(StreamEvent::Content("x".into()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_while_waiting_for_the_upstream_is_the_models_failure() {
        let h = health();
        let tail = stream(vec![content()]).chain(futures::stream::pending());
        let mut s = watched(Box::pin(tail), &h, None);
        assert!(s.next().await.unwrap().is_ok());
        let err = s.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::StreamCut);
        assert!(err.message.contains("stalled"), "{err}");
        assert!(s.next().await.is_none());
        drop(s);
        let snap = h.snapshot(Instant::now());
        assert_eq!((snap.consecutive_failures, snap.in_flight), (1, 0));
    }

    /// The consumer (a pump held back by a slow client) waits ten times the idle limit between
    /// reads: the upstream had its events ready, so nothing stalled.
    #[tokio::test(start_paused = true)]
    async fn time_the_consumer_spends_elsewhere_is_not_a_stall() {
        let h = health();
        let mut s = watched(stream(vec![content(), content(), content()]), &h, None);
        let mut n = 0;
        while let Some(item) = s.next().await {
            assert!(item.is_ok(), "{item:?}");
            n += 1;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        assert_eq!(n, 3);
        drop(s);
        let snap = h.snapshot(Instant::now());
        assert_eq!((snap.consecutive_failures, snap.in_flight), (0, 0));
        // TPOT learned from upstream time only: no 10 s per token.
        assert!(snap.tpot_ms < 1_000.0, "{}", snap.tpot_ms);
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_deadline_cuts_the_stream_without_blaming_the_model() {
        let h = health();
        let before = h.snapshot(Instant::now()).reliability;
        let steady = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((content(), ()))
        });
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut s = watched(Box::pin(steady), &h, Some(deadline));
        let mut n = 0;
        let err = loop {
            match s.next().await.unwrap() {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
        };
        assert!((15..=20).contains(&n), "{n} events before the deadline");
        assert_eq!(err.kind, ErrorKind::Timeout);
        drop(s);
        let snap = h.snapshot(Instant::now());
        assert_eq!((snap.consecutive_failures, snap.in_flight), (0, 0));
        assert_eq!(snap.reliability, before);
    }
}
