//! One simulated exchange, independent of wire format: counting, seeding, the fault to inject,
//! latency and the answer to give (playback lives in `playback.rs`).
//! IMPORTANT: the `Tracker` lives as long as the response is being produced (it moves into the
//! body stream); it is armed only across awaits, so dropping a body or a sleeping handler counts
//! as a cancellation while errors returned at once never do.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::playback::pause;
use super::profile::{Fault, SplitMix64, mix};
use super::text::{Strings, chunk4, count_u32, fill_schema, push_words, word_pieces, words};
use super::wire::unix_now;
use super::{ModelState, Sim};

/// The most `x-sim-pad-bytes` may add to one word.
const MAX_PAD: u32 = 1 << 20;

/// Why a request is refused, rendered by each format in its own error shape.
pub(crate) enum Reject {
    /// A request the real API would reject as invalid (400).
    Invalid {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// Credentials missing.
    NoAuth,
    /// An injected fault that is an HTTP error.
    Fault(Fault),
}

impl Reject {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Reject::Invalid {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// An invalid parameter, with OpenAI's `param` and `code`.
    pub(crate) fn param(
        message: impl Into<String>,
        param: impl Into<String>,
        code: &'static str,
    ) -> Self {
        Reject::Invalid {
            message: message.into(),
            param: Some(param.into()),
            code: Some(code),
        }
    }
}

/// Per-request overrides from `x-sim-*` headers.
#[derive(Default)]
struct Overrides {
    fault: Option<Fault>,
    seed: Option<u64>,
    tokens: Option<u32>,
    ttft: Option<Duration>,
    tpot: Option<Duration>,
    pad: Option<u32>,
}

impl Overrides {
    fn parse(headers: &HeaderMap) -> Result<Self, String> {
        fn get<'h>(h: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, String> {
            h.get(name)
                .map(|v| {
                    v.to_str()
                        .map(str::trim)
                        .map_err(|_| format!("{name}: not ASCII"))
                })
                .transpose()
        }
        fn num<T: std::str::FromStr>(h: &HeaderMap, name: &str) -> Result<Option<T>, String> {
            get(h, name)?
                .map(|v| {
                    v.parse()
                        .map_err(|_| format!("{name}: invalid number `{v}`"))
                })
                .transpose()
        }
        let ms = |name: &str| num::<f64>(headers, name).map(|v| v.map(super::profile::millis));
        Ok(Self {
            fault: get(headers, "x-sim-fault")?
                .map(|v| v.parse().map_err(|e: super::SimError| e.to_string()))
                .transpose()?,
            seed: num(headers, "x-sim-seed")?,
            tokens: num(headers, "x-sim-tokens")?,
            ttft: ms("x-sim-ttft-ms")?,
            tpot: ms("x-sim-tpot-ms")?,
            pad: num(headers, "x-sim-pad-bytes")?,
        })
    }
}

/// What happens to the exchange's counters when its tracker drops.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ended,
    Completed,
    Cancelled,
}

/// In-flight counter and drop guard of one exchange.
pub(crate) struct Tracker {
    state: Arc<ModelState>,
    pub(super) outcome: Outcome,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        match self.outcome {
            Outcome::Completed => self.state.completed.fetch_add(1, Ordering::Relaxed),
            Outcome::Cancelled => self.state.cancelled.fetch_add(1, Ordering::Relaxed),
            Outcome::Ended => 0,
        };
    }
}

/// What the request asks the model to produce, as decided by the wire format.
pub(crate) enum Shape<'a> {
    Text,
    JsonObject,
    JsonSchema(&'a Value),
    Tool {
        name: &'a str,
        params: Option<&'a Value>,
    },
}

pub(crate) enum AnswerKind {
    Text,
    Json,
    Tool {
        id: String,
        name: String,
        args: Value,
    },
}

/// The generated answer. `text` is the content (tool calls: the arguments as JSON text).
pub(crate) struct Answer {
    pub(crate) kind: AnswerKind,
    pub(crate) text: String,
    pub(crate) tokens: u32,
    /// Cut short by the request's max tokens.
    pub(crate) truncated: bool,
}

impl Answer {
    /// The stream chunks: one per token.
    pub(crate) fn pieces(&self) -> Vec<&str> {
        match self.kind {
            AnswerKind::Text => word_pieces(&self.text).collect(),
            _ => chunk4(&self.text).collect(),
        }
    }
}

pub(crate) struct SimCall {
    pub(crate) fault: Option<Fault>,
    pub(crate) ttft: Duration,
    pub(crate) tpot: Duration,
    /// Filler after each word of a text answer (`x-sim-pad-bytes`): large tokens, so a
    /// stream moves many bytes at a modest token rate.
    pub(crate) pad: usize,
    /// Answer length before the request's own cap.
    want_tokens: u32,
    text_rng: SplitMix64,
    ids: SplitMix64,
    pub(crate) created: u64,
    pub(super) tracker: Tracker,
    pub(super) closing: CancellationToken,
}

impl Sim {
    /// Counts a request refused before an exchange starts.
    pub(crate) fn count_rejected(&self, model: &str) {
        self.state(model).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A request id for answers without an exchange.
    pub(crate) fn loose_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("req_{:016x}", mix(self.seed ^ n))
    }

    /// Starts an exchange: counts it, seeds it, picks its fault (header, then scripted, then
    /// `error_rate`) and samples its latency. Err = an invalid `x-sim-*` header.
    pub(crate) fn begin(&self, model: &str, headers: &HeaderMap) -> Result<SimCall, String> {
        let ov = Overrides::parse(headers)?;
        let state = self.state(model);
        let seq = state.requests.fetch_add(1, Ordering::Relaxed);
        let seed = match ov.seed {
            Some(s) => mix(s),
            None => mix(mix(self.seed ^ state.hash).wrapping_add(seq)),
        };
        let base = SplitMix64::new(seed);
        let mut fault_rng = base.fork(1);
        let mut latency_rng = base.fork(2);
        let p = &state.profile;
        let fault = ov
            .fault
            .or_else(|| self.faults.draw(model, &mut fault_rng))
            .or_else(|| {
                let fire = p.error_rate > 0.0 && fault_rng.next_f64() < p.error_rate;
                fire.then_some(p.error_fault)
            });
        if fault.is_some() {
            state.faults.fetch_add(1, Ordering::Relaxed);
        }
        let ttft = ov.ttft.unwrap_or_else(|| p.ttft.sample(&mut latency_rng));
        let tpot = ov.tpot.unwrap_or_else(|| p.tpot.sample(&mut latency_rng));
        let want_tokens = ov.tokens.unwrap_or(p.output_tokens);
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(SimCall {
            fault,
            ttft,
            tpot,
            pad: ov.pad.map_or(0, |p| p.min(MAX_PAD) as usize),
            want_tokens,
            text_rng: base.fork(3),
            ids: base.fork(4),
            created: unix_now(),
            tracker: Tracker {
                state,
                outcome: Outcome::Ended,
            },
            closing: self.closing.clone(),
        })
    }
}

impl SimCall {
    /// `len` hex digits from the exchange's id stream.
    pub(crate) fn hex(&mut self, len: usize) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(len + 16);
        while s.len() < len {
            let _ = write!(s, "{:016x}", self.ids.next_u64());
        }
        s.truncate(len);
        s
    }

    /// The answer for `shape`, capped by the request's `max_tokens`.
    pub(crate) fn answer(
        &mut self,
        shape: Shape<'_>,
        max_tokens: Option<u32>,
        tool_prefix: &str,
    ) -> Answer {
        let n = max_tokens.map_or(self.want_tokens, |m| m.min(self.want_tokens));
        // Only answers whose length follows `n` can be cut short: text and the json_object wrapper.
        let capped = max_tokens.is_some_and(|m| m < self.want_tokens);
        let truncated = capped && matches!(shape, Shape::Text | Shape::JsonObject);
        let (kind, text) = match shape {
            Shape::Text => {
                let text = words(&mut self.text_rng, n);
                (AnswerKind::Text, self.padded(text))
            }
            Shape::JsonObject => {
                let mut text = String::from("{\"answer\":\"");
                push_words(&mut text, &mut self.text_rng, n);
                text.push_str("\"}");
                (AnswerKind::Json, text)
            }
            Shape::JsonSchema(schema) => {
                let v = fill_schema(schema, &mut Strings::Words(&mut self.text_rng));
                (AnswerKind::Json, v.to_string())
            }
            Shape::Tool { name, params } => {
                let args = params.map_or_else(
                    || Value::Object(serde_json::Map::new()),
                    |s| fill_schema(s, &mut Strings::Sample),
                );
                let id = format!("{tool_prefix}{}", self.hex(24));
                let text = args.to_string();
                (
                    AnswerKind::Tool {
                        id,
                        name: name.to_owned(),
                        args,
                    },
                    text,
                )
            }
        };
        let (kind, text) = if self.fault == Some(Fault::BadJson) {
            spoil(kind, text)
        } else {
            (kind, text)
        };
        let tokens = match kind {
            AnswerKind::Text => n,
            _ => count_u32(chunk4(&text).count()),
        };
        Answer {
            kind,
            text,
            tokens,
            truncated,
        }
    }

    /// `text` with `pad` dots after each word (each word stays one token and one chunk).
    fn padded(&self, text: String) -> String {
        if self.pad == 0 {
            return text;
        }
        let filler = ".".repeat(self.pad);
        let mut out = String::with_capacity(text.len() * 2 + self.pad * text.len() / 4);
        for piece in super::text::word_pieces(&text) {
            out.push_str(piece);
            out.push_str(&filler);
        }
        out
    }

    /// Planned time to produce `tokens` in one piece: ttft + tokens·tpot.
    pub(crate) fn planned(&self, tokens: u32) -> Duration {
        self.tpot
            .checked_mul(tokens)
            .and_then(|t| t.checked_add(self.ttft))
            .unwrap_or(Duration::MAX)
    }

    /// Waits `d` (not at all when zero) with the tracker armed. False = shutting down.
    pub(super) async fn wait(&mut self, d: Duration) -> bool {
        if d.is_zero() {
            return true;
        }
        self.tracker.outcome = Outcome::Cancelled;
        let go_on = pause(d, &self.closing).await;
        self.tracker.outcome = Outcome::Ended;
        go_on
    }

    /// `hang`: never answers; returns only when the sim shuts down (the caller then answers 503).
    /// A client that goes away first drops this future and is counted as cancelled.
    pub(crate) async fn hang(mut self) {
        self.tracker.outcome = Outcome::Cancelled;
        self.closing.cancelled().await;
        self.tracker.outcome = Outcome::Ended;
    }
}

/// `bad-json`: what a model that ignored the requested format sends — JSON text cut short after
/// a chatty preamble, or tool arguments that miss the schema.
fn spoil(kind: AnswerKind, text: String) -> (AnswerKind, String) {
    match kind {
        AnswerKind::Json => {
            let mut cut = text.len() / 2;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            (kind, format!("Sure! Here is the JSON: {}", &text[..cut]))
        }
        AnswerKind::Tool { id, name, .. } => {
            let args = serde_json::json!({"unexpected": true});
            let text = args.to_string();
            (AnswerKind::Tool { id, name, args }, text)
        }
        AnswerKind::Text => (kind, text),
    }
}
