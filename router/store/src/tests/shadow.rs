//! Shadow rows (migration 0004): a row of its own naming the request it copies, with its own
//! figures and (optionally) its answer's text.

use super::*;

fn shadow(id: &str, of: &str, ts_ms: i64, text: Option<&str>) -> RequestRecord {
    let mut r = with_key(row(id, ts_ms), "key_s", 4_321, 12, 34);
    r.model = Some("claude-3-5-haiku".to_owned());
    r.provider = Some("anthropic".to_owned());
    r.shadow_of = Some(of.to_owned());
    r.response_text = text.map(str::to_owned);
    r
}

pub(super) async fn shadow_rows_name_their_original_and_keep_their_text(store: &Store) {
    let original = with_key(row("req_orig", 100), "key_s", 1_000, 12, 30);
    let mut first = shadow(
        "req_sh_b",
        "req_orig",
        102,
        Some("Bonjour — 你好 \"quoted\" ✓"),
    );
    first.attempts = full_row().attempts;
    // Later in time, earlier by id: "oldest first" is the timestamp's doing.
    let second = shadow("req_sh_a", "req_orig", 103, None);
    let nul = shadow("req_sh_nul", "req_other", 104, Some("a\0b"));
    assert_eq!(
        store
            .insert_batch(&[second.clone(), original.clone(), first.clone(), nul])
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store.get_request("req_orig").await.unwrap(),
        Some(original.clone())
    );
    assert_eq!(
        store.get_request("req_sh_b").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.shadows_of("req_orig").await.unwrap(),
        vec![first, second]
    );
    // NUL cannot be stored in Postgres text: both backends replace it, and the batch went in.
    let back = store.shadows_of("req_other").await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].response_text.as_deref(), Some("a\u{FFFD}b"));
    assert!(store.shadows_of("req_sh_b").await.unwrap().is_empty());
    assert!(store.shadows_of("req_none").await.unwrap().is_empty());
    // The shadow's own figures are counted under its model, like any row of it.
    let history = store.model_history(0).await.unwrap();
    let haiku = history
        .iter()
        .find(|h| h.model == "claude-3-5-haiku")
        .unwrap();
    assert_eq!((haiku.requests, haiku.cost_picousd), (3, 3 * 4_321));
    // Retention takes shadows like any other row.
    assert_eq!(store.purge_before(103).await.unwrap(), 2);
    assert_eq!(
        store
            .shadows_of("req_orig")
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        vec!["req_sh_a"]
    );
}
