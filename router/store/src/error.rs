//! `StoreError`, and the redaction that keeps a database URL's password out of every error.

use std::fmt;

/// Errors of the store. Messages never contain a connection URL or password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL's scheme is not one of ours.
    #[error(
        "unsupported store URL scheme `{0}` (expected sqlite://PATH, sqlite::memory:, postgres:// or postgresql://)"
    )]
    Url(String),
    /// The database could not be opened or reached.
    #[error("cannot connect to the {backend} store: {message}")]
    Connect {
        backend: &'static str,
        message: String,
    },
    /// Running the embedded migrations failed.
    #[error("store migrations failed: {0}")]
    Migrate(String),
    /// A statement failed.
    #[error("store query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// A unique constraint was violated (duplicate key id or hash).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored value cannot be turned back into a record (bad JSON, out of range).
    #[error("invalid stored value: {0}")]
    Decode(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Query(e)
    }
}

/// A unique violation becomes [`StoreError::Conflict`], anything else [`StoreError::Query`].
pub(crate) fn conflict_or_query(e: sqlx::Error, what: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        return StoreError::Conflict(format!("{what} already exists ({})", db.message()));
    }
    StoreError::Query(e)
}

/// Builds a [`StoreError::Connect`] whose message cannot leak the URL's password.
pub(crate) fn connect_error(
    backend: &'static str,
    message: impl fmt::Display,
    url: &str,
) -> StoreError {
    StoreError::Connect {
        backend,
        message: redact(&message.to_string(), url),
    }
}

/// `url` with its password replaced by `***`, for messages.
pub fn redacted_url(url: &str) -> String {
    redact(url, url)
}

/// Replaces the password of `url` (raw and percent-decoded) in `message` by `***`.
pub(crate) fn redact(message: &str, url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return message.to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return message.to_owned();
    };
    let Some((_, password)) = userinfo.split_once(':') else {
        return message.to_owned();
    };
    let mut out = message.to_owned();
    for secret in [password.to_owned(), percent_decode(password)] {
        if !secret.is_empty() {
            out = out.replace(&secret, "***");
        }
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The scheme of `url`, for error messages (never the rest of it).
pub(crate) fn scheme_of(url: &str) -> String {
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    if scheme.is_empty() {
        return "<none>".to_owned();
    }
    scheme.chars().take(32).collect()
}

// ---------------------------------------------------------------------------
// Query traits
// ---------------------------------------------------------------------------
