//! The pre-load estimate and background loading.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;
use crate::tokens::tables;

#[test]
fn pre_load_estimate_is_at_least_the_exact_count_for_english() {
    for text in ENGLISH {
        let estimate = tables::estimate(text);
        for encoding in [Encoding::O200k, Encoding::Cl100k] {
            let exact = exact_counter(encoding).count(text);
            assert!(
                estimate >= exact,
                "{encoding:?} {text:?}: {estimate} < {exact}"
            );
        }
    }
    // The same holds for whole requests in every family, and the fallback says it is a guess.
    let mut requests = vec![
        ChatRequest::new("m", cookbook()),
        ChatRequest::new("m", tool_conversation()),
    ];
    requests.push(ChatRequest::new(
        "m",
        ENGLISH
            .iter()
            .map(|t| Message::new(Role::User, *t))
            .collect(),
    ));
    for request in &requests {
        for family in ALL {
            let (guess, known) = (estimated(family, request), exact(family, request));
            assert!(
                guess.tokens >= known.tokens,
                "{family:?}: {guess:?} < {known:?}"
            );
            assert!(!guess.exact);
        }
    }
}

#[test]
fn pre_load_estimate_covers_non_latin_scripts() {
    for text in [
        "你好，世界！今天天气很好。",
        "こんにちは、世界。",
        "Привет, мир! Как дела?",
        "🎉🚀 ok 👍🏽",
    ] {
        let estimate = tables::estimate(text);
        for encoding in [Encoding::O200k, Encoding::Cl100k] {
            let exact = exact_counter(encoding).count(text);
            assert!(
                estimate >= exact,
                "{encoding:?} {text:?}: {estimate} < {exact}"
            );
        }
    }
    assert_eq!(tables::estimate(""), 0);
}

#[test]
fn spawn_loader_returns_while_the_load_is_still_running() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<bool>();
    tables::spawn_loader(move || {
        // A "load" that can only finish after the caller has got control back.
        let released = release_rx.recv_timeout(Duration::from_secs(60)).is_ok();
        let _ = done_tx.send(released);
    });
    // Getting here while the loader still waits shows that spawning did not wait for it.
    release_tx.send(()).expect("loader still waiting");
    assert!(done_rx.recv().expect("loader reports"));
}

#[test]
fn warm_up_loads_both_tables_in_the_background() {
    warm_up();
    warm_up(); // idempotent
    let deadline = Instant::now() + Duration::from_secs(300);
    while !is_loaded() {
        assert!(Instant::now() < deadline, "tables never loaded");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(count_text(O200k, "hello world").exact);
    assert!(count_text(Cl100k, "hello world").exact);
}
