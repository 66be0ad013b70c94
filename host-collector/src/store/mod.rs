//! Storage: one interface over MySQL/MariaDB (production) and SQLite (embedded default).
//! Owns schema creation/migration, batched idempotent inserts, retention deletes and reads.

mod mysql;
mod sql;
mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;

use crate::event::Row;

pub use mysql::open as open_mysql;
pub use sql::{SqlStore, MAX_STATEMENT_ROWS};
pub use sqlite::open as open_sqlite;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug)]
pub enum StoreError {
    Config(String),
    Db(sqlx::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Config(m) => write!(f, "{m}"),
            StoreError::Db(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e)
    }
}

/// Filters for the query API; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    pub trace_id: Option<String>,
    pub instance_id: Option<String>,
    pub event: Option<String>,
    pub tool_name: Option<String>,
    pub source: Option<String>,
    /// The event's `mcp.outcome` (only `response` events have one).
    pub outcome: Option<String>,
    /// Inclusive lower bound on event time.
    pub since: Option<NaiveDateTime>,
    /// Exclusive upper bound on event time.
    pub until: Option<NaiveDateTime>,
    /// Keyset pagination: only rows with a smaller id (results are newest id first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub id: i64,
    pub row: Row,
}

pub trait Store: Send + Sync {
    fn kind(&self) -> &'static str;
    /// Creates or migrates the schema (also done lazily on first use).
    fn prepare(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Writes all rows in one transaction, skipping `(source, seq)` already stored.
    /// Returns how many rows were newly inserted.
    fn insert_batch<'a>(&'a self, rows: &'a [Row]) -> BoxFuture<'a, Result<u64, StoreError>>;
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Deletes at most `limit` rows with event time before `cutoff`; returns how many.
    fn delete_older_than(
        &self,
        cutoff: NaiveDateTime,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;
    fn query<'a>(&'a self, q: &'a LogQuery) -> BoxFuture<'a, Result<Vec<StoredRow>, StoreError>>;
}

pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

/// Opens the store named by `url` (`mysql://…` or `sqlite://path`) without requiring the
/// database to be reachable yet: the schema is created on first use.
pub fn open(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Ok(Arc::new(mysql::open(url, options)?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::open(url, options)?))
    } else {
        Err(StoreError::Config(format!(
            "unsupported database URL scheme in {:?}: use mysql://… or sqlite://path",
            redact_url(url)
        )))
    }
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            super::redact_url("mysql://u:secret@h:3306/db"),
            "mysql://u:***@h:3306/db"
        );
        assert_eq!(super::redact_url("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
