//! Key scopes (migration 0005): stored and read back on every path a key is loaded by; a key
//! written without the column (a row from before the migration) reads as an ordinary key.

use super::*;

pub(super) async fn key_scopes_round_trip_and_old_rows_have_none(store: &Store) {
    let mut viewer = key("key_view", "ee55", 1_000);
    viewer.scopes = vec!["dashboard".to_owned()];
    let mut both = key("key_both", "ff66", 2_000);
    both.scopes = vec!["dashboard".to_owned(), "models".to_owned()];
    for k in [&viewer, &both] {
        store.create_key(k).await.unwrap();
    }
    assert_eq!(
        store.get_key("key_view").await.unwrap(),
        Some(viewer.clone())
    );
    assert_eq!(store.key_by_hash("ff66").await.unwrap(), Some(both.clone()));
    // As a row from before 0005 is: no scopes column written, so the default applies.
    exec(
        store,
        "INSERT INTO api_keys (id, name, hash, prefix, created_ms, revoked_ms, routes, models, \
         budget_picousd, budget_period, rpm, tpm) VALUES ('key_old', 'old', '0077', 'sk-sy-old', \
         3000, NULL, '[]', '[]', NULL, 'total', NULL, NULL)",
    )
    .await;
    let old = store.get_key("key_old").await.unwrap().unwrap();
    assert_eq!(old.scopes, Vec::<String>::new());
    let listed: Vec<Vec<String>> = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.scopes)
        .collect();
    assert_eq!(
        listed,
        vec![viewer.scopes.clone(), both.scopes.clone(), Vec::new()]
    );
}
