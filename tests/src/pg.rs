//! A fresh Postgres schema per test (the gateway runs its migrations there), so that counts
//! are exact while other tests share the database. The server is `$SWITCHYARD_TEST_POSTGRES_URL`
//! (`bash .ci/postgres.sh` starts one); without it the test is skipped, unless
//! `SWITCHYARD_REQUIRE_POSTGRES=1` (as `.ci/run` sets): then it fails.
#![allow(clippy::unwrap_used)]

use sqlx::{Connection, PgConnection};

/// The Postgres URL, or `None` (after saying so) when `test` is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ => {
            assert!(
                std::env::var("SWITCHYARD_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "SWITCHYARD_REQUIRE_POSTGRES=1 but SWITCHYARD_TEST_POSTGRES_URL is not set: \
                 start a server with `bash .ci/postgres.sh` and export its URL"
            );
            eprintln!("skipped: {test} (SWITCHYARD_TEST_POSTGRES_URL not set)");
            None
        }
    }
}

/// A schema made for one test; `drop` removes it with everything in it.
pub struct PgSchema {
    admin_url: String,
    pub name: String,
    /// The URL the gateway and the test's own store use: the server's, on this schema.
    pub url: String,
}

impl PgSchema {
    /// A fresh schema `{prefix}_{random}`, or `None` when Postgres tests are skipped.
    pub async fn create(prefix: &str, test: &str) -> Option<PgSchema> {
        let admin_url = postgres_url(test)?;
        let name = format!("{prefix}_{}", crate::random_hex(6));
        ddl(
            &admin_url,
            &name,
            "DO $$ BEGIN EXECUTE format('CREATE SCHEMA %I', \
             current_setting('switchyard.test_schema')); END $$",
        )
        .await;
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options[search_path]={name}");
        Some(PgSchema {
            admin_url,
            name,
            url,
        })
    }

    pub async fn drop(self) {
        ddl(
            &self.admin_url,
            &self.name,
            "DO $$ BEGIN EXECUTE format('DROP SCHEMA %I CASCADE', \
             current_setting('switchyard.test_schema')); END $$",
        )
        .await;
    }
}

/// Run `sql` (which reads the schema name from the `switchyard.test_schema` setting, so no
/// identifier is spliced into a statement here) on a fresh admin connection.
async fn ddl(admin_url: &str, schema: &str, sql: &'static str) {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to SWITCHYARD_TEST_POSTGRES_URL: {e}"));
    sqlx::query("SELECT set_config('switchyard.test_schema', $1, false)")
        .bind(schema)
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
}
