//! Backend-independent: URLs and secrets, connecting, SQLite modes, upgrading a 0001 store.

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use super::*;
use crate::error::redact;

#[test]
fn urls_are_shown_without_their_password() {
    assert_eq!(
        redacted_url("postgres://u:hunter2@127.0.0.1:5432/db"),
        "postgres://u:***@127.0.0.1:5432/db"
    );
    assert_eq!(
        redacted_url("sqlite://.switchyard/x.db"),
        "sqlite://.switchyard/x.db"
    );
}

#[tokio::test]
async fn connect_error_never_shows_the_password() {
    let options = StoreOptions {
        max_connections: None,
        acquire_timeout: Duration::from_millis(500),
    };
    for url in [
        "postgres://u:hunter2@127.0.0.1:1/db",
        "postgresql://u:hunter2@127.0.0.1:1/db?sslmode=disable",
    ] {
        let err = Store::connect_with(url, &options).await.unwrap_err();
        assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
        let shown = format!("{err} / {err:?}");
        eprintln!("connect error: {err}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1:1"), "{shown}");
    }
    // A URL sqlx cannot parse.
    let err = Store::connect("postgres://u:hunter2@[::1/db")
        .await
        .unwrap_err();
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn wrong_password_error_never_shows_it() {
    let Some(url) = postgres_url("wrong_password_error_never_shows_it") else {
        return;
    };
    // postgres://user:password@host/...: swap the password for a wrong one.
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, hostpart) = rest.split_once('@').unwrap();
    let user = userinfo.split(':').next().unwrap();
    let bad = format!("{scheme}://{user}:hunter2-wrong@{hostpart}");
    let err = Store::connect(&bad).await.unwrap_err();
    let shown = format!("{err} / {err:?}");
    assert!(matches!(err, StoreError::Connect { .. }), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn unsupported_scheme_is_named() {
    let err = Store::connect("mysql://root:s3cret@localhost/db")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Url(s) if s == "mysql"),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("`mysql`") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(matches!(
        Store::connect("").await.unwrap_err(),
        StoreError::Url(s) if s == "<none>"
    ));
}

#[tokio::test]
async fn sqlite_memory_store_is_shared_and_works() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    // Concurrent users all see the same (single-connection) database.
    let mut handles = Vec::new();
    for i in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .insert_batch(&[row(&format!("req_m{i}"), i)])
                .await
                .unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(store.count().await.unwrap(), 4);
    store.create_key(&key("key_m", "mm", 1)).await.unwrap();
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn sqlite_creates_missing_directories_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/a/b/gateway.db", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    store.insert_batch(&[full_row()]).await.unwrap();
    store.close().await;
    // Reopening runs the (already applied) migrations again and keeps the data.
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(
        store.get_request(&full_row().id).await.unwrap(),
        Some(full_row())
    );
    let Store::Sqlite(s) = &store else {
        unreachable!()
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
    store.close().await;
}

#[test]
fn redact_removes_raw_and_decoded_password() {
    let url = "postgres://user:p%40ss%2Fw0rd@db:5432/x";
    assert_eq!(
        redact("a p%40ss%2Fw0rd b p@ss/w0rd c", url),
        "a *** b *** c"
    );
    assert_eq!(redact("nothing here", "postgres://db/x"), "nothing here");
    assert_eq!(redact("user only", "postgres://user@db/x"), "user only");
}

/// A row as the 0001 schema stored it (no `client_request_id`), in SQL both backends accept.
const LEGACY_ROW: &str = "INSERT INTO requests (id, ts_ms, key_id, endpoint, route, model, \
     provider, status, error_code, stream, cache, prompt_tokens, completion_tokens, \
     cached_tokens, reasoning_tokens, usage_estimated, cost_picousd, latency_ms, ttft_ms, \
     overhead_ms) VALUES ('req_legacy', 7, 'key_old', '/v1/chat/completions', 'default', \
     'gpt-4o-mini', 'openai', 200, NULL, FALSE, 'miss', 1, 2, 0, 0, FALSE, 99, 1.5, NULL, 0.5)";

/// What [`LEGACY_ROW`] reads back as once 0002 has run.
fn legacy_record() -> RequestRecord {
    let mut r = with_key(row("req_legacy", 7), "key_old", 99, 1, 2);
    r.latency_ms = 1.5;
    r
}

/// A store in the field has run 0001 only: connecting runs 0002, keeps its rows (with no
/// client id), and the new column works next to them.
async fn upgraded_store_keeps_old_rows(store: &Store) {
    assert_eq!(
        store.get_request("req_legacy").await.unwrap(),
        Some(legacy_record())
    );
    let mut new = row("req_new", 8);
    new.client_request_id = Some("req_legacy".to_owned());
    store
        .insert_batch(std::slice::from_ref(&new))
        .await
        .unwrap();
    assert_eq!(
        store.requests_by_client_id("req_legacy").await.unwrap(),
        vec![new]
    );
    store
        .add_spend(&[delta("key_old", 0, totals(1, 1, 0, 0))])
        .await
        .unwrap();
    assert_eq!(store.spend("key_old", 0).await.unwrap(), totals(1, 1, 0, 0));
}

#[tokio::test]
async fn sqlite_store_at_0001_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::migrate!("migrations/sqlite")
        .run_to(1, &old)
        .await
        .unwrap();
    sqlx::query(LEGACY_ROW).execute(&old).await.unwrap();
    old.close().await;
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    upgraded_store_keeps_old_rows(&store).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_store_at_0001_is_upgraded() {
    let Some((admin_url, schema, url)) =
        postgres_schema("postgres_store_at_0001_is_upgraded").await
    else {
        return;
    };
    let mut old = PgConnection::connect(&url).await.unwrap();
    sqlx::migrate!("migrations/postgres")
        .run_to(1, &mut old)
        .await
        .unwrap();
    sqlx::query(LEGACY_ROW).execute(&mut old).await.unwrap();
    old.close().await.unwrap();
    let store = Store::connect(&url).await.unwrap();
    upgraded_store_keeps_old_rows(&store).await;
    TestDb {
        store,
        cleanup: Cleanup::Postgres { admin_url, schema },
    }
    .finish()
    .await;
}
