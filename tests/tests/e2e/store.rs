//! The request log loses no row on SIGTERM under load: every request whose answer reached the
//! client (a status line; for streams, the headers) is exactly one row in `requests`, and there
//! is no other row — on SQLite (a temporary file) and on Postgres (a fresh schema) when
//! `SWITCHYARD_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_e2e::{PgSchema, Running, random_hex, row_for};
use switchyard_store::{RequestLog, Store};

/// Concurrent client tasks.
const TASKS: usize = 16;
/// Load before SIGTERM.
const LOAD_BEFORE_SIGTERM: Duration = Duration::from_secs(2);
/// No task sends after this, whatever happens (the test stays bounded).
const HARD_STOP: Duration = Duration::from_secs(20);

/// What a client task sends, in turn.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// temperature 0: cached after the first of each prompt.
    Deterministic,
    /// temperature 0.8: never cached.
    Sampled,
    /// SSE, with usage.
    Stream,
    /// SSE at temperature 0 (cached streams are replayed).
    DeterministicStream,
    /// `/ai/route` on the `fast` route.
    Route,
    /// A body that does not parse: 400 after admission.
    Invalid,
    /// A model that does not exist: 404 after admission.
    UnknownModel,
}

const KINDS: [Kind; 7] = [
    Kind::Deterministic,
    Kind::Stream,
    Kind::Sampled,
    Kind::Invalid,
    Kind::DeterministicStream,
    Kind::Route,
    Kind::UnknownModel,
];

const MODELS: [&str; 4] = [
    "gpt-4o-mini",
    "gemini-2.0-flash",
    "llama3.2",
    "claude-3-5-haiku",
];

/// One answer the client received.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    status: u16,
    kind: Kind,
    /// The answer started arriving after SIGTERM was sent.
    after_sigterm: bool,
}

/// Figures shared by the tasks.
#[derive(Default)]
struct Shared {
    seq: AtomicU64,
    in_flight: AtomicI64,
    /// Milliseconds from the load's start to SIGTERM; `i64::MAX` until sent.
    sigterm_at_ms: AtomicI64,
}

fn request(
    http: &reqwest::Client,
    base: &str,
    kind: Kind,
    n: u64,
    id: &str,
) -> reqwest::RequestBuilder {
    let model = MODELS[(n % MODELS.len() as u64) as usize];
    let chat = format!("{base}/v1/chat/completions");
    let msg = |text: String| json!([{"role": "user", "content": text}]);
    let body = match kind {
        Kind::Deterministic => json!({
            "model": model, "messages": msg(format!("Say hello {}", n % 3)),
            "temperature": 0, "max_tokens": 8,
        }),
        Kind::Sampled => json!({
            "model": model, "messages": msg(format!("Tell me about {n}")),
            "temperature": 0.8, "max_tokens": 8,
        }),
        Kind::Stream => json!({
            "model": model, "messages": msg(format!("Stream about {n}")),
            "temperature": 0.8, "max_tokens": 8, "stream": true,
            "stream_options": {"include_usage": true},
        }),
        Kind::DeterministicStream => json!({
            "model": model, "messages": msg(format!("Stream hello {}", n % 2)),
            "temperature": 0, "max_tokens": 8, "stream": true,
        }),
        Kind::Route => {
            return http
                .post(format!("{base}/ai/route"))
                .header("x-request-id", id)
                .json(&json!({"route": "fast", "prompt": format!("Route {n}"), "max_tokens": 8}));
        }
        Kind::Invalid => json!({"model": model, "messages": "not a list"}),
        Kind::UnknownModel => json!({
            "model": "no-such-model", "messages": msg("hi".to_owned()),
        }),
    };
    http.post(chat).header("x-request-id", id).json(&body)
}

/// Send requests in turn until the gateway stops answering (a connection error).
async fn client_task(
    http: reqwest::Client,
    base: String,
    run: String,
    task: usize,
    shared: Arc<Shared>,
    started: Instant,
) -> (Vec<Seen>, String) {
    let mut seen = Vec::new();
    let mut i = task;
    loop {
        if started.elapsed() > HARD_STOP {
            return (seen, "hard stop".to_owned());
        }
        let n = shared.seq.fetch_add(1, Ordering::Relaxed);
        let kind = KINDS[i % KINDS.len()];
        i += 1;
        let id = format!("e2e-{run}-{n}");
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let sent = request(&http, &base, kind, n, &id).send().await;
        let answered_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let result = match sent {
            // Headers arrived: the gateway answered (for a stream, it started to). Read the
            // body to its end; a body cut short still counts, its row is written on drop.
            Ok(resp) => {
                let status = resp.status().as_u16();
                let echoed = resp
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                assert_eq!(echoed.as_deref(), Some(id.as_str()), "x-request-id echoed");
                let _ = resp.bytes().await;
                Ok(status)
            }
            Err(e) => Err(e),
        };
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok(status) => seen.push(Seen {
                id,
                status,
                kind,
                after_sigterm: answered_ms >= shared.sigterm_at_ms.load(Ordering::SeqCst),
            }),
            Err(e) => return (seen, error_chain(&e)),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// What the load saw, and the process after it exited.
struct LoadRun {
    gw: Running,
    seen: Vec<Seen>,
    in_flight_at_sigterm: i64,
    elapsed: Duration,
    endings: BTreeMap<String, usize>,
}

/// Drive load from `TASKS` tasks, SIGTERM the gateway while it runs, let the tasks run into
/// connection errors, and wait for the process to exit.
async fn sigterm_under_load(gw: Running, run: &str) -> LoadRun {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let shared = Arc::new(Shared {
        sigterm_at_ms: AtomicI64::new(i64::MAX),
        ..Shared::default()
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            tokio::spawn(client_task(
                http.clone(),
                gw.base_url.clone(),
                run.to_owned(),
                t,
                shared.clone(),
                started,
            ))
        })
        .collect();
    tokio::time::sleep(LOAD_BEFORE_SIGTERM).await;
    let in_flight_at_sigterm = shared.in_flight.load(Ordering::SeqCst);
    shared.sigterm_at_ms.store(
        i64::try_from(started.elapsed().as_millis()).unwrap(),
        Ordering::SeqCst,
    );
    gw.sigterm();
    let mut seen = Vec::new();
    let mut endings = BTreeMap::new();
    for t in tasks {
        let (s, ending) = t.await.unwrap();
        seen.extend(s);
        // Group endings by their innermost cause (the URL in the outer message differs).
        let short = ending.rsplit(": ").next().unwrap_or(&ending).to_owned();
        *endings.entry(short).or_insert(0) += 1;
    }
    let gw = tokio::task::spawn_blocking(move || {
        let mut gw = gw;
        let status = gw.wait_exit();
        assert!(
            status.success(),
            "switchyard exited with {status}; log:\n{}",
            gw.log_lines().join("\n")
        );
        gw
    })
    .await
    .unwrap();
    LoadRun {
        gw,
        seen,
        in_flight_at_sigterm,
        elapsed: started.elapsed(),
        endings,
    }
}

/// The checks shared by both backends. `store` holds only this run's rows.
async fn check(backend: &str, load: &LoadRun, store: &Store) {
    let responses = load.seen.len();
    let rows = usize::try_from(RequestLog::count(store).await.unwrap()).unwrap();
    let mut missing = Vec::new();
    let mut wrong_status = Vec::new();
    for s in &load.seen {
        match row_for(store, &s.id).await {
            None => missing.push(s.id.clone()),
            Some(row) if row.status != s.status => {
                wrong_status.push(format!(
                    "{} {:?}: client {} row {}",
                    s.id, s.kind, s.status, row.status
                ));
            }
            Some(_) => {}
        }
    }
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for s in &load.seen {
        *by_status.entry(s.status).or_default() += 1;
    }
    let streams = load
        .seen
        .iter()
        .filter(|s| matches!(s.kind, Kind::Stream | Kind::DeterministicStream))
        .count();
    let after = load.seen.iter().filter(|s| s.after_sigterm).count();
    eprintln!(
        "[{backend}] SIGTERM under load: requests answered={responses} rows={rows} \
         lost={} extra={} (streams={streams}, by status {by_status:?}); in flight at \
         SIGTERM={}, answered after SIGTERM={after}; elapsed={:.2?}; tasks ended by {:?}",
        missing.len(),
        rows.saturating_sub(responses - missing.len()),
        load.in_flight_at_sigterm,
        load.elapsed,
        load.endings,
    );

    assert!(
        load.in_flight_at_sigterm > 0,
        "SIGTERM must land while requests are in flight"
    );
    assert!(
        by_status.get(&200).copied().unwrap_or(0) > 0
            && by_status.get(&400).copied().unwrap_or(0) > 0,
        "the mix must include answers and refusals: {by_status:?}"
    );
    assert!(missing.is_empty(), "[{backend}] rows lost: {missing:?}");
    assert!(
        wrong_status.is_empty(),
        "[{backend}] statuses differ: {wrong_status:?}"
    );
    assert_eq!(
        rows, responses,
        "[{backend}] rows in the store vs answers the clients received"
    );

    let flushed = load.gw.log_event("request log flushed").unwrap_or_else(|| {
        panic!(
            "no `request log flushed` line; log:\n{}",
            load.gw.log_lines().join("\n")
        )
    });
    assert_eq!(flushed["dropped"], json!(0), "{flushed}");
    assert_eq!(flushed["failed"], json!(0), "{flushed}");
    assert_eq!(
        flushed["written"].as_u64(),
        Some(responses as u64),
        "{flushed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_no_rows_sqlite() {
    let run = random_hex(6);
    let gw = Running::demo();
    let load = sigterm_under_load(gw, &run).await;
    let store = Store::connect(load.gw.store_url()).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    check("sqlite", &load, &store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_no_rows_postgres() {
    let Some(schema_guard) =
        PgSchema::create("e2e_sigterm", "sigterm_under_load_loses_no_rows_postgres").await
    else {
        return;
    };
    let run = random_hex(6);
    let (schema, url) = (schema_guard.name.clone(), schema_guard.url.clone());
    let gw = Running::builder().store_url(&url).demo();
    let load = sigterm_under_load(gw, &run).await;
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    let Store::Postgres(pg) = &store else {
        unreachable!()
    };
    let current: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert_eq!(current, schema, "the store reads the run's schema");
    // Check first, drop the schema whatever the outcome, then report.
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(check(
        "postgres", &load, &store,
    )))
    .await;
    store.close().await;
    schema_guard.drop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// On a quiet gateway, one request of each kind: each answer is one row under the id the
/// client chose (or the `req_…` id generated for it), with the status, stream flag and model
/// the client saw.
#[tokio::test]
async fn every_answer_is_one_row_with_the_clients_request_id() {
    let mut gw = Running::demo();
    let http = reqwest::Client::new();
    let run = random_hex(6);
    let mut seen = Vec::new();
    for (n, kind) in KINDS.iter().enumerate() {
        let id = format!("quiet-{run}-{n}");
        let resp = request(&http, &gw.base_url, *kind, n as u64, &id)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-request-id"], id.as_str());
        let status = resp.status().as_u16();
        let _ = resp.bytes().await.unwrap();
        seen.push((id, status, *kind));
    }
    // A request without an id gets a generated one.
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(generated.starts_with("req_"), "{generated}");
    let body: Value = resp.json().await.unwrap();
    seen.push((generated, 200, Kind::Sampled));
    assert!(body["choices"].is_array(), "{body}");

    let status = tokio::task::spawn_blocking(move || {
        let s = gw.terminate();
        (s, gw)
    })
    .await
    .unwrap();
    let (status, gw) = status;
    assert!(status.success(), "{status}");
    let store = Store::connect(gw.store_url()).await.unwrap();
    assert_eq!(
        RequestLog::count(&store).await.unwrap(),
        i64::try_from(seen.len()).unwrap()
    );
    for (id, status, kind) in &seen {
        let row = row_for(&store, id)
            .await
            .unwrap_or_else(|| panic!("no row for {id} ({kind:?})"));
        assert_eq!(row.status, *status, "{id} {kind:?}");
        let streamed = matches!(kind, Kind::Stream | Kind::DeterministicStream);
        assert_eq!(
            row.stream,
            streamed && *status == 200,
            "{id} {kind:?}: {row:?}"
        );
        if *status == 200 {
            assert!(row.model.is_some(), "{row:?}");
            assert!(row.completion_tokens > 0, "{row:?}");
        }
    }
    store.close().await;
}
