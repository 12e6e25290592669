//! Playback of a prepared answer: the unary body after its planned latency, or the stream's
//! frames on their schedule, each shaped by the exchange's fault (reset, cut:N, malformed,
//! stream-error, endless, big-event, redirect). IMPORTANT: the stream owns the exchange's `Tracker`; its drop decides whether
//! the exchange counts as completed, cancelled by the client, or neither.

use std::io;
use std::ops::Range;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::header::{CACHE_CONTROL, HOST, LOCATION};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio_util::sync::CancellationToken;

use super::call::{Outcome, SimCall, Tracker};
use super::profile::Fault;
use super::wire::respond;

impl SimCall {
    /// A complete (non-streaming) 200 after ttft + tokens·tpot; `reset`/`cut` drop the connection
    /// mid-body, `malformed` sends half the body. None = shutting down.
    pub(crate) async fn unary(
        mut self,
        body: String,
        tokens: u32,
        headers: HeaderMap,
    ) -> Option<Response> {
        if !self.wait(self.planned(tokens)).await {
            return None;
        }
        let body = match self.fault {
            Some(Fault::Endless) => {
                let mut tracker = self.tracker;
                tracker.outcome = Outcome::Cancelled;
                endless(b"{\"choices\":[", tracker, self.closing)
            }
            Some(Fault::BigEvent { kib }) => Body::from(pad_json(body, 0, kib)),
            Some(Fault::Reset | Fault::Cut { .. }) => {
                let bytes = Bytes::from(body);
                let half = bytes.slice(..bytes.len() / 2);
                let sent = futures::stream::iter([Ok::<_, io::Error>(half)]);
                Body::from_stream(sent.chain(futures::stream::once(abort_after_flush())))
            }
            Some(Fault::Malformed) => Body::from(truncate_half(&body, 0..body.len())),
            _ => Body::from(body),
        };
        Some(respond(StatusCode::OK, "application/json", body, headers))
    }

    /// A streaming 200: headers now, then `frames` on their schedule, shaped by the fault.
    /// `error_frame` builds the format's in-stream error for `stream-error`.
    pub(crate) fn stream(
        self,
        frames: Frames,
        error_frame: impl FnOnce() -> Frame,
        content_type: &'static str,
        headers: HeaderMap,
    ) -> Response {
        let mut list = frames.list;
        let mut headers = headers;
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        let end = match self.fault {
            Some(Fault::Endless) => {
                let mut tracker = self.tracker;
                tracker.outcome = Outcome::Cancelled;
                let body = endless(b"data: {\"choices\":[", tracker, self.closing);
                return respond(StatusCode::OK, content_type, body, headers);
            }
            Some(Fault::BigEvent { kib }) => {
                if let Some(f) = list.iter_mut().find(|f| f.content) {
                    f.text = pad_json(std::mem::take(&mut f.text), f.json.start, kib);
                }
                End::Clean
            }
            Some(Fault::Reset) => {
                list.clear();
                End::Abort
            }
            Some(Fault::Cut { chunks }) => {
                keep_content(&mut list, chunks);
                End::Abort
            }
            Some(Fault::StreamError) => {
                keep_content(&mut list, 2);
                let mut err = error_frame();
                err.delay = frames.tpot;
                list.push(err);
                End::Interrupted
            }
            Some(Fault::Malformed) => {
                if let Some(first) = list.first_mut() {
                    first.text = truncate_half(&first.text, first.json.clone());
                }
                End::Clean
            }
            _ => End::Clean,
        };
        let mut tracker = self.tracker;
        tracker.outcome = Outcome::Cancelled;
        let playback = Playback {
            frames: list.into_iter(),
            end,
            tracker,
            closing: self.closing,
        };
        respond(StatusCode::OK, content_type, playback.into_body(), headers)
    }

    /// `redirect`: 307 to this simulator under its other loopback name, so a client that
    /// follows it crosses hosts and is counted at `/_sim/redirected`. None for other faults.
    pub(crate) fn redirect(&self, request: &HeaderMap) -> Option<Response> {
        if self.fault != Some(Fault::Redirect) {
            return None;
        }
        let host = request
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let port = host.rsplit_once(':').map_or("80", |(_, p)| p);
        let other = if host.starts_with("localhost") {
            "127.0.0.1"
        } else {
            "localhost"
        };
        let mut headers = HeaderMap::new();
        let location = format!("http://{other}:{port}/_sim/redirected");
        if let Ok(v) = HeaderValue::from_str(&location) {
            headers.insert(LOCATION, v);
        }
        Some(respond(
            StatusCode::TEMPORARY_REDIRECT,
            "text/plain",
            Body::empty(),
            headers,
        ))
    }
}

/// 16 KiB of JSON whitespace: the unit of `endless` and `big-event` bodies.
static SPACES: [u8; 16 << 10] = [b' '; 16 << 10];

/// `head`, then whitespace until the client hangs up (or the sim shuts down). The tracker rides
/// along, so a client that leaves counts the exchange as cancelled.
fn endless(head: &'static [u8], tracker: Tracker, closing: CancellationToken) -> Body {
    let first = futures::stream::once(async move { Ok::<_, io::Error>(Bytes::from_static(head)) });
    let rest = futures::stream::unfold(tracker, |tracker| async move {
        Some((Ok(Bytes::from_static(&SPACES)), tracker))
    });
    Body::from_stream(first.chain(rest).take_until(closing.cancelled_owned()))
}

/// `text` with `kib` KiB of whitespace after the `{` that opens its JSON at or after `from`.
fn pad_json(mut text: String, from: usize, kib: u32) -> String {
    let Some(at) = text.get(from..).and_then(|t| t.find('{')) else {
        return text;
    };
    let pad = " ".repeat(kib as usize * 1024);
    text.insert_str(from + at + 1, &pad);
    text
}

/// Keeps the frames up to the `n`-th content frame, and never a terminal one.
fn keep_content(list: &mut Vec<Frame>, n: u32) {
    let mut seen = 0;
    let mut keep = 0;
    for f in list.iter() {
        if f.terminal || (f.content && seen == n) {
            break;
        }
        seen += u32::from(f.content);
        keep += 1;
    }
    list.truncate(keep);
}

/// `text` with the JSON in `json` cut in half: invalid JSON, framing kept.
fn truncate_half(text: &str, json: Range<usize>) -> String {
    let mut cut = json.start + (json.end - json.start) / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..cut]);
    out.push_str(&text[json.end..]);
    out
}

/// The connection drop of `reset` / `cut:N`, after the frames before it have reached the
/// client. IMPORTANT: hyper aborts the connection as soon as the body errors, discarding
/// whatever it had not flushed yet — without this pause a fast client sees "connection closed
/// before message completed" instead of the promised N chunks.
async fn abort_after_flush() -> Result<Bytes, io::Error> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    Err(dropped())
}

fn dropped() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "sim: connection dropped by fault",
    )
}

pub(super) async fn pause(d: Duration, closing: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = closing.cancelled() => false,
    }
}

/// One body frame: `text` = head + JSON + tail, with the JSON's range (for `malformed`).
pub(crate) struct Frame {
    text: String,
    json: Range<usize>,
    delay: Duration,
    content: bool,
    terminal: bool,
}

impl Frame {
    pub(crate) fn new(head: &str, json: &str, tail: &str) -> Self {
        let mut text = String::with_capacity(head.len() + json.len() + tail.len());
        text.push_str(head);
        text.push_str(json);
        text.push_str(tail);
        let json = head.len()..head.len() + json.len();
        Frame {
            text,
            json,
            delay: Duration::ZERO,
            content: false,
            terminal: false,
        }
    }
}

/// Frame roles: content frames carry one token each; terminal ones mark a clean end.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Meta,
    Content,
    Terminal,
    ContentTerminal,
}

/// Builds a stream's frames with their delays: ttft before the first frame, tpot before each
/// content frame after the first, nothing before the others.
pub(crate) struct Frames {
    list: Vec<Frame>,
    ttft: Duration,
    tpot: Duration,
    seen_content: bool,
}

impl Frames {
    pub(crate) fn new(ex: &SimCall, capacity: usize) -> Self {
        Frames {
            list: Vec::with_capacity(capacity),
            ttft: ex.ttft,
            tpot: ex.tpot,
            seen_content: false,
        }
    }

    pub(crate) fn push(&mut self, kind: Kind, head: &str, json: &str, tail: &str) {
        let mut f = Frame::new(head, json, tail);
        f.content = matches!(kind, Kind::Content | Kind::ContentTerminal);
        f.terminal = matches!(kind, Kind::Terminal | Kind::ContentTerminal);
        f.delay = if self.list.is_empty() {
            self.ttft
        } else if f.content && self.seen_content {
            self.tpot
        } else {
            Duration::ZERO
        };
        self.seen_content |= f.content;
        self.list.push(f);
    }
}

#[derive(Clone, Copy)]
enum End {
    /// All frames sent: a completed stream.
    Clean,
    /// Ended early on purpose but cleanly (in-stream error).
    Interrupted,
    /// Ended by dropping the connection.
    Abort,
}

struct Playback {
    frames: std::vec::IntoIter<Frame>,
    end: End,
    tracker: Tracker,
    closing: CancellationToken,
}

impl Playback {
    fn into_body(self) -> Body {
        let stream = futures::stream::unfold(Some(self), |state| async move {
            let mut p = state?;
            let Some(frame) = p.frames.next() else {
                return match p.end {
                    End::Clean => {
                        p.tracker.outcome = Outcome::Completed;
                        None
                    }
                    End::Interrupted => {
                        p.tracker.outcome = Outcome::Ended;
                        None
                    }
                    End::Abort => {
                        p.tracker.outcome = Outcome::Ended;
                        Some((abort_after_flush().await, None))
                    }
                };
            };
            if !frame.delay.is_zero() && !pause(frame.delay, &p.closing).await {
                p.tracker.outcome = Outcome::Ended;
                return Some((Err(io::Error::other("sim: shutting down")), None));
            }
            Some((Ok(Bytes::from(frame.text)), Some(p)))
        });
        Body::from_stream(stream)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn malformed_truncation_keeps_framing() {
        let f = Frame::new("data: ", "{\"a\":\"bcdef\"}", "\n\n");
        let t = truncate_half(&f.text, f.json.clone());
        assert!(t.starts_with("data: {") && t.ends_with("\n\n"));
        assert!(serde_json::from_str::<Value>(t.trim_start_matches("data: ").trim()).is_err());
    }
}
