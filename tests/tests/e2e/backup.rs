//! `switchyard store backup|restore` with the real binary: an online backup while the demo
//! serves, refusals (a store in use, an existing store without --force, a file that is not a
//! store, Postgres), and the round trip: after a restore the rows, the key and its spend are
//! what the backup held, and the key still authenticates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_e2e::{Running, binary, random_hex, sqlite_url};
use switchyard_store::{RequestLog, Store};

/// Runs `switchyard store ARGS`: (success, stdout + stderr).
fn store(args: &[&str]) -> (bool, String) {
    let out = Command::new(binary())
        .arg("store")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn chat(http: &reqwest::Client, gw: &Running, key: &str, n: usize) {
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": format!("Count to {n}.")}],
        "temperature": 0.7,
        "max_tokens": 12,
    });
    let resp = http
        .post(format!("{}/v1/chat/completions", gw.base_url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// Waits until the running gateway's writer has put `n` rows in the store.
async fn rows_reach(url: &str, n: i64) {
    let store = Store::connect(url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.count().await.unwrap() < n {
        assert!(Instant::now() < deadline, "the log never reached {n} rows");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
}

async fn spend(http: &reqwest::Client, gw: &Running, admin: &str, id: &str) -> Value {
    let resp = http
        .get(format!("{}/admin/keys/{id}/spend", gw.base_url))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_serving_and_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let url = sqlite_url(&db);
    let backup = dir.path().join("backup.db");
    let admin = random_hex(16);
    let http = reqwest::Client::new();

    let first = Running::builder()
        .env("SWITCHYARD_ADMIN_KEY", &admin)
        .store_url(&url)
        .demo();
    let (key, key_id) = first.create_key(&http, &admin, "kept").await;
    for n in 0..4 {
        chat(&http, &first, &key, n).await;
    }
    rows_reach(&url, 4).await;
    // And the ledger has written the four answers' spend.
    let deadline = Instant::now() + Duration::from_secs(10);
    while spend(&http, &first, &admin, &key_id).await["history"][0]["requests"] != 4 {
        assert!(Instant::now() < deadline, "the spend was never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_backup = spend(&http, &first, &admin, &key_id).await["history"].clone();

    // Online: the gateway keeps serving (and writing) during the backup.
    let (ok, out) = store(&["backup", path(&backup), "--url", &url]);
    assert!(ok, "{out}");
    assert!(out.contains("4 requests, 1 keys"), "{out}");
    for n in 4..6 {
        chat(&http, &first, &key, n).await;
    }
    // A backup never overwrites; a restore refuses a store in use, and one without --force.
    let (ok, out) = store(&["backup", path(&backup), "--url", &url]);
    assert!(!ok && out.contains("exists"), "{out}");
    let (ok, out) = store(&["restore", path(&backup), "--url", &url]);
    assert!(!ok && out.contains("--force"), "{out}");
    let (ok, out) = store(&["restore", path(&backup), "--url", &url, "--force"]);
    assert!(!ok && out.contains("in use"), "{out}");
    let status = tokio::task::spawn_blocking(move || {
        let mut first = first;
        first.terminate()
    })
    .await
    .unwrap();
    assert!(status.success());

    // Not a store, or a store of another kind: refused, the store untouched.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "not a database at all, just some text").unwrap();
    let (ok, out) = store(&["restore", path(&junk), "--url", &url, "--force"]);
    assert!(
        !ok && out.contains("not a Switchyard SQLite store"),
        "{out}"
    );
    let (ok, out) = store(&["backup", path(&junk), "--url", "postgres://u:secret@db/x"]);
    assert!(
        !ok && out.contains("pg_dump") && !out.contains("secret"),
        "{out}"
    );
    let (ok, out) = store(&["restore", path(&backup), "--url", "postgres://u:pw@db/x"]);
    assert!(!ok && out.contains("pg_restore"), "{out}");

    // The round trip: the six-row store is replaced by the four-row backup.
    let (ok, out) = store(&["restore", path(&backup), "--url", &url, "--force"]);
    assert!(ok, "{out}");
    assert!(out.contains("4 requests, 1 keys"), "{out}");
    let restored = Store::connect(&url).await.unwrap();
    assert_eq!(restored.count().await.unwrap(), 4);
    restored.close().await;

    let second = Running::builder()
        .env("SWITCHYARD_ADMIN_KEY", &admin)
        .store_url(&url)
        .demo();
    // The key and its spend are the backup's, to the picodollar, and the key still works.
    assert_eq!(
        spend(&http, &second, &admin, &key_id).await["history"],
        at_backup
    );
    chat(&http, &second, &key, 9).await;
    let status = tokio::task::spawn_blocking(move || {
        let mut second = second;
        second.terminate()
    })
    .await
    .unwrap();
    assert!(status.success());
}
