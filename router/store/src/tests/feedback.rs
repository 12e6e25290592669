//! Feedback on answered requests: one per request, read back for a rebuild, gone with its row.

use super::*;

fn feedback(request_id: &str, ts_ms: i64, score: f64) -> FeedbackRecord {
    FeedbackRecord {
        request_id: request_id.to_owned(),
        ts_ms,
        key_id: Some("key_f".to_owned()),
        model: "gpt-4o-mini".to_owned(),
        route: "default".to_owned(),
        task: None,
        score,
        comment: None,
    }
}

pub(super) async fn feedback_round_trip_and_once_per_request(store: &Store) {
    let full = full_row();
    store
        .insert_batch(std::slice::from_ref(&full))
        .await
        .unwrap();
    // The request's task tag is kept on its row.
    let stored = store.get_request(&full.id).await.unwrap().unwrap();
    assert_eq!(stored.task.as_deref(), Some("code/sql"));
    let mut f = feedback(&full.id, 10, 0.25);
    f.task = stored.task.clone();
    f.comment = Some("trop verbeux — 太长了 \"quoted\" \0 nul".to_owned());
    assert!(store.add_feedback(&f).await.unwrap());
    let back = store.get_feedback(&full.id).await.unwrap().unwrap();
    // NUL cannot be stored in Postgres text: both backends replace it.
    assert_eq!(
        back.comment.as_deref(),
        Some("trop verbeux — 太长了 \"quoted\" \u{FFFD} nul")
    );
    assert_eq!(back.score, 0.25);
    assert_eq!(back.task.as_deref(), Some("code/sql"));
    // A second feedback on the same request is refused and the first one kept.
    assert!(
        !store
            .add_feedback(&feedback(&full.id, 11, 1.0))
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_feedback(&full.id).await.unwrap().unwrap().score,
        0.25
    );
    assert_eq!(store.get_feedback("req_none").await.unwrap(), None);
    // Feedback needs its request row.
    assert!(
        store
            .add_feedback(&feedback("req_none", 12, 1.0))
            .await
            .is_err()
    );
}

pub(super) async fn recent_feedback_is_newest_first_bounded_and_purged_with_its_request(
    store: &Store,
) {
    let rows: Vec<RequestRecord> = (0..5).map(|i| row(&format!("req_f{i}"), 100 + i)).collect();
    store.insert_batch(&rows).await.unwrap();
    for (i, r) in rows.iter().enumerate() {
        let mut f = feedback(&r.id, 1_000 + i as i64, i as f64 / 4.0);
        f.comment = Some("left out of a rebuild".to_owned());
        assert!(store.add_feedback(&f).await.unwrap());
    }
    let recent = store.recent_feedback(1_001, 3).await.unwrap();
    let ids: Vec<&str> = recent.iter().map(|f| f.request_id.as_str()).collect();
    assert_eq!(ids, vec!["req_f4", "req_f3", "req_f2"]);
    assert!(recent.iter().all(|f| f.comment.is_none()));
    assert_eq!(recent[0].score, 1.0);
    assert!(store.recent_feedback(0, 0).await.unwrap().is_empty());
    assert!(store.recent_feedback(0, -5).await.unwrap().is_empty());
    // Retention deletes feedback with its request.
    assert_eq!(store.purge_before(102).await.unwrap(), 2);
    let left = store.recent_feedback(0, 100).await.unwrap();
    assert_eq!(left.len(), 3);
    assert_eq!(store.get_feedback("req_f0").await.unwrap(), None);
}
