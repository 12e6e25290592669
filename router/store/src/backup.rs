//! Backup and restore of a SQLite store (`switchyard store backup|restore`).
//!
//! A backup is `VACUUM INTO`: one read transaction, so the copy is a consistent snapshot even
//! while a gateway writes (WAL readers never block the writer, nor it them), and the copy is a
//! compact, self-contained database file. A restore refuses anything that is not a Switchyard
//! store this build knows (its `_sqlx_migrations` must be ours, with our checksums; a store
//! made by a newer build, with migrations this one lacks, is refused), refuses to replace an
//! existing database without `force`, and refuses while another connection holds the
//! database (a gateway), since replacing the file under an open database corrupts it. The new
//! file is written beside the target and renamed over it, so a failed restore leaves the old
//! store as it was. Postgres has its own tools (`pg_dump`, `pg_restore`): both say so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, SqliteConnection};

use super::{Store, redacted_url};

/// This build's SQLite migrations, as `SqliteStore::connect` runs them.
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Why a backup or restore was refused or failed: a sentence for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackupError(String);

impl BackupError {
    fn new(message: impl Into<String>) -> Self {
        BackupError(message.into())
    }
}

/// What a store file holds, as checked by [`inspect_sqlite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSummary {
    /// The newest migration applied.
    pub version: i64,
    pub requests: i64,
    pub keys: i64,
}

/// The database file of a `sqlite://` URL; Postgres and in-memory stores are refused with
/// what to use instead (`postgres_hint`).
fn sqlite_file(url: &str, postgres_hint: &str) -> Result<PathBuf, BackupError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(BackupError::new(format!(
            "the store is Postgres ({}): {postgres_hint}",
            redacted_url(url)
        )));
    }
    if !url.starts_with("sqlite:") {
        return Err(BackupError::new(
            "the store URL must be sqlite://PATH (or postgres://…, which pg_dump backs up)",
        ));
    }
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    if rest.starts_with(":memory:") || rest.contains("mode=memory") {
        return Err(BackupError::new(
            "an in-memory store has nothing to back up or restore",
        ));
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| BackupError::new(format!("invalid store URL: {e}")))?;
    Ok(options.get_filename().to_path_buf())
}

fn open_options(file: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(5))
}

/// Copies the SQLite store at `url` into `file` (which must not exist) with `VACUUM INTO`,
/// then checks the copy as a restore would.
pub async fn backup_sqlite(url: &str, file: &Path) -> Result<StoreSummary, BackupError> {
    let source = sqlite_file(
        url,
        "back it up with pg_dump, e.g. `pg_dump --format=custom --file=FILE URL`",
    )?;
    if !source.exists() {
        return Err(BackupError::new(format!(
            "no store at {}: nothing to back up",
            source.display()
        )));
    }
    if file.exists() {
        return Err(BackupError::new(format!(
            "{} exists: a backup never overwrites a file",
            file.display()
        )));
    }
    let target = file
        .to_str()
        .ok_or_else(|| BackupError::new("the backup file name must be UTF-8"))?;
    let mut conn = SqliteConnection::connect_with(&open_options(&source))
        .await
        .map_err(|e| BackupError::new(format!("cannot open {}: {e}", source.display())))?;
    check_migrations(&mut conn, &source).await?;
    let done = sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    done.map_err(|e| BackupError::new(format!("VACUUM INTO {}: {e}", file.display())))?;
    inspect_sqlite(file).await
}

/// Checks that `file` is a Switchyard SQLite store this build can open: readable, intact
/// (`quick_check`), every applied migration one of ours with our checksum.
pub async fn inspect_sqlite(file: &Path) -> Result<StoreSummary, BackupError> {
    if !file.is_file() {
        return Err(BackupError::new(format!(
            "{} is not a file",
            file.display()
        )));
    }
    let mut conn = SqliteConnection::connect_with(&open_options(file).read_only(true))
        .await
        .map_err(|e| BackupError::new(format!("cannot open {}: {e}", file.display())))?;
    let summary = summarize(&mut conn, file).await;
    let _ = conn.close().await;
    summary
}

async fn summarize(conn: &mut SqliteConnection, file: &Path) -> Result<StoreSummary, BackupError> {
    let not_store = |e: sqlx::Error| {
        BackupError::new(format!(
            "{} is not a Switchyard SQLite store: {e}",
            file.display()
        ))
    };
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut *conn)
        .await
        .map_err(not_store)?;
    if check != "ok" {
        return Err(BackupError::new(format!(
            "{} is damaged (quick_check: {check})",
            file.display()
        )));
    }
    let version = check_migrations(conn, file).await?;
    let requests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests")
        .fetch_one(&mut *conn)
        .await
        .map_err(not_store)?;
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
        .fetch_one(&mut *conn)
        .await
        .map_err(not_store)?;
    Ok(StoreSummary {
        version,
        requests,
        keys,
    })
}

/// The newest applied migration, after checking each applied one against ours.
async fn check_migrations(conn: &mut SqliteConnection, file: &Path) -> Result<i64, BackupError> {
    let applied: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| {
                BackupError::new(format!(
                    "{} is not a Switchyard SQLite store (no migration table: {e})",
                    file.display()
                ))
            })?;
    let ours: BTreeMap<i64, &[u8]> = MIGRATIONS
        .iter()
        .map(|m| (m.version, m.checksum.as_ref()))
        .collect();
    if !applied.iter().any(|(v, _, _)| *v == 1) {
        return Err(BackupError::new(format!(
            "{} is not a Switchyard SQLite store (its first migration is missing)",
            file.display()
        )));
    }
    for (version, success, checksum) in &applied {
        match ours.get(version) {
            None => {
                return Err(BackupError::new(format!(
                    "{} was made by a newer Switchyard (migration {version} is unknown to this \
                     build): use that version",
                    file.display()
                )));
            }
            Some(sum) if *sum != checksum.as_slice() => {
                return Err(BackupError::new(format!(
                    "{}: migration {version} differs from this build's",
                    file.display()
                )));
            }
            Some(_) if !success => {
                return Err(BackupError::new(format!(
                    "{}: migration {version} did not complete",
                    file.display()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(applied.iter().map(|(v, _, _)| *v).max().unwrap_or(0))
}

/// Puts the backup `file` back as the SQLite store at `url`, then opens it (running this
/// build's newer migrations, if any). An existing store is replaced only with `force`, and
/// never while another connection has it open.
pub async fn restore_sqlite(
    file: &Path,
    url: &str,
    force: bool,
) -> Result<StoreSummary, BackupError> {
    let target = sqlite_file(
        url,
        "restore a pg_dump backup with pg_restore (or psql for a plain dump)",
    )?;
    inspect_sqlite(file).await?;
    if same_file(file, &target) {
        return Err(BackupError::new(
            "the backup file is the store itself: nothing to restore",
        ));
    }
    if target.exists() {
        if !force {
            return Err(BackupError::new(format!(
                "{} exists: pass --force to replace it (stop the gateway first)",
                target.display()
            )));
        }
        ensure_unused(&target).await?;
    } else if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| BackupError::new(format!("cannot create {}: {e}", dir.display())))?;
    }
    let partial = target.with_extension("db.restoring");
    std::fs::copy(file, &partial)
        .and_then(|_| std::fs::File::open(&partial)?.sync_all())
        .map_err(|e| BackupError::new(format!("cannot write {}: {e}", partial.display())))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = target.clone().into_os_string();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    std::fs::rename(&partial, &target)
        .map_err(|e| BackupError::new(format!("cannot replace {}: {e}", target.display())))?;
    let store = Store::connect(url)
        .await
        .map_err(|e| BackupError::new(format!("the restored store does not open: {e}")))?;
    store.close().await;
    inspect_sqlite(&target).await
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuses while any other connection has the database open: leaving WAL mode needs the only
/// connection, so a gateway's pool (which keeps its connections) makes it fail. On success
/// the WAL is checkpointed into the file and removed.
async fn ensure_unused(target: &Path) -> Result<(), BackupError> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(open_options(target).busy_timeout(Duration::from_millis(200)))
        .await
        .map_err(|e| BackupError::new(format!("cannot open {}: {e}", target.display())))?;
    let mode: Result<String, _> = sqlx::query_scalar("PRAGMA journal_mode = DELETE")
        .fetch_one(&pool)
        .await;
    pool.close().await;
    match mode {
        Ok(m) if m.eq_ignore_ascii_case("delete") => Ok(()),
        _ => Err(BackupError::new(format!(
            "{} is in use (a gateway has it open): stop it, then restore",
            target.display()
        ))),
    }
}
