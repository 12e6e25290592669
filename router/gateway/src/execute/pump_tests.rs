//! The pump on paused time: a reading client gets everything; a client that stops reading is
//! cut after `write_stall` with its upstream dropped; a slow reader is not; `abort` ends the
//! stream with an error; a dropped body tells the observer before anything else runs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::*;

const STALL: Duration = Duration::from_secs(5);

#[derive(Clone, Default)]
struct Log(Arc<Mutex<(usize, Option<String>)>>);

impl Log {
    fn events(&self) -> usize {
        self.0.lock().unwrap().0
    }
    fn end(&self) -> Option<String> {
        self.0.lock().unwrap().1.clone()
    }
}

impl Observer for Log {
    fn event(&mut self, _: &StreamEvent) {
        self.0.lock().unwrap().0 += 1;
    }
    fn end(&mut self, how: Ended<'_>) {
        let mut log = self.0.lock().unwrap();
        assert!(log.1.is_none(), "ended twice");
        log.1 = Some(how.code().unwrap_or("finished").to_owned());
    }
}

/// An upstream that reports when it is dropped (its connection closed).
struct Upstream {
    inner: EventStream,
    dropped: Arc<AtomicBool>,
}

impl Stream for Upstream {
    type Item = Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

fn content() -> Item {
    Ok(StreamEvent::Content("x".into()))
}

/// `inner` behind a pump; the stream, the observer's log and the upstream's drop flag.
fn start(inner: EventStream, abort: &CancellationToken) -> (EventStream, Log, Arc<AtomicBool>) {
    let dropped = Arc::new(AtomicBool::new(false));
    let upstream = Upstream {
        inner,
        dropped: dropped.clone(),
    };
    let primed = Primed {
        head: VecDeque::new(),
        tail: Box::pin(upstream),
    };
    let log = Log::default();
    let limits = PumpLimits {
        write_stall: STALL,
        abort: abort.clone(),
    };
    (pump(primed, log.clone(), limits).tail, log, dropped)
}

#[tokio::test(start_paused = true)]
async fn a_reading_client_gets_everything_then_the_end() {
    let items: Vec<Item> = (0..100).map(|_| content()).collect();
    let (stream, log, dropped) = start(
        Box::pin(futures::stream::iter(items)),
        &CancellationToken::new(),
    );
    let got: Vec<Item> = stream.collect().await;
    assert_eq!(got.len(), 100);
    assert!(got.iter().all(Result::is_ok), "a clean end adds no error");
    assert_eq!((log.events(), log.end()), (100, Some("finished".into())));
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_and_its_upstream_dropped() {
    let endless = futures::stream::repeat_with(content);
    let (mut stream, log, dropped) = start(Box::pin(endless), &CancellationToken::new());
    assert!(stream.next().await.unwrap().is_ok());
    // The client reads nothing more. Just before the stall time nothing has happened...
    tokio::time::sleep(STALL - Duration::from_millis(100)).await;
    assert_eq!(log.end(), None);
    assert!(!dropped.load(Ordering::SeqCst));
    // ...and just after it, the upstream is gone and the end is recorded as the client's.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(dropped.load(Ordering::SeqCst), "upstream still open");
    assert_eq!(log.end(), Some("client_stalled".into()));
    // The pump read a bounded amount: the queue, the event it held, the one already taken.
    assert_eq!(log.events(), CHANNEL_EVENTS + 2);
    // A client that comes back reads what was queued, then an error: never a clean end.
    let rest: Vec<Item> = stream.collect().await;
    assert_eq!(rest.len(), CHANNEL_EVENTS + 1);
    let last = rest.last().unwrap().as_ref().unwrap_err();
    assert!(last.message.contains("did not read"), "{last}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_is_not_cut() {
    let items: Vec<Item> = (0..3 * CHANNEL_EVENTS).map(|_| content()).collect();
    let (mut stream, log, _) = start(
        Box::pin(futures::stream::iter(items)),
        &CancellationToken::new(),
    );
    let mut n = 0;
    while let Some(item) = stream.next().await {
        assert!(item.is_ok());
        n += 1;
        tokio::time::sleep(STALL / 2).await;
    }
    assert_eq!(n, 3 * CHANNEL_EVENTS);
    assert_eq!(log.end(), Some("finished".into()));
}

#[tokio::test(start_paused = true)]
async fn abort_ends_the_stream_with_an_error_and_drops_the_upstream() {
    let abort = CancellationToken::new();
    let two_then_silence =
        futures::stream::iter([content(), content()]).chain(futures::stream::pending());
    let (mut stream, log, dropped) = start(Box::pin(two_then_silence), &abort);
    assert!(stream.next().await.unwrap().is_ok());
    assert!(stream.next().await.unwrap().is_ok());
    abort.cancel();
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(err.message.contains("shutting down"), "{err}");
    assert!(stream.next().await.is_none());
    assert_eq!(log.end(), Some("server_shutdown".into()));
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_body_tells_the_observer_at_once() {
    let silence = futures::stream::iter([content()]).chain(futures::stream::pending());
    let (mut stream, log, dropped) = start(Box::pin(silence), &CancellationToken::new());
    assert!(stream.next().await.unwrap().is_ok());
    drop(stream);
    // Synchronously, before the pump task has run again.
    assert_eq!(log.end(), Some("client_closed".into()));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(dropped.load(Ordering::SeqCst));

    // Dropped while the pump waits for room: the client had stopped reading.
    let endless = futures::stream::repeat_with(content);
    let (stream, log, _) = start(Box::pin(endless), &CancellationToken::new());
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(stream);
    assert_eq!(log.end(), Some("client_stalled".into()));
}
