//! Storage: one interface over MySQL/MariaDB and PostgreSQL (production) and SQLite
//! (embedded default).
//! Owns schema creation/migration, batched idempotent inserts, retention deletes and reads.

mod mysql;
mod postgres;
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
pub use postgres::open as open_postgres;
pub use sql::{SqlStore, MAX_STATEMENT_ROWS};
pub use sqlite::open as open_sqlite;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What went wrong with a store operation. The writer keeps a failed batch and retries it
/// (a batch is never given up while the collector runs); a batch the database keeps
/// rejecting is split until the rows it refuses stand alone, and those go to the dead
/// letters. Health counts any error as the database being down; the variant says what
/// happened, for the log, for `is_transient` and for `is_refusal`.
#[derive(Debug)]
pub enum StoreError {
    /// The store cannot be used as configured: a bad or unsupported URL or option.
    Config(String),
    /// The operation did not finish within its bound (the collector's own deadline).
    Timeout {
        operation: &'static str,
        after: Duration,
    },
    /// The database cannot be reached or cannot serve now: connection, I/O, TLS, pool
    /// exhausted or closed, deadlock, lock wait, busy.
    Unavailable(sqlx::Error),
    /// The database refused the statement (a constraint, the schema, permissions).
    Rejected(sqlx::Error),
    /// Stored data cannot be read back as a row (an unknown level code, a bad column).
    Corrupt(String),
}

impl StoreError {
    /// Short name of the variant, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Config(_) => "config",
            StoreError::Timeout { .. } => "timeout",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Rejected(_) => "rejected",
            StoreError::Corrupt(_) => "corrupt",
        }
    }

    /// Whether the same operation may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Timeout { .. } | StoreError::Unavailable(_)
        )
    }

    /// Whether the database answered and refused what it was given: retrying the same rows
    /// will fail the same way, other rows may pass.
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::Rejected(_))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Config(m) | StoreError::Corrupt(m) => write!(f, "{m}"),
            StoreError::Timeout { operation, after } => {
                write!(f, "{operation} timed out after {after:?}")
            }
            StoreError::Unavailable(e) | StoreError::Rejected(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Unavailable(e) | StoreError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::Configuration(_) | E::InvalidArgument(_) => StoreError::Config(e.to_string()),
            E::Database(ref db)
                if is_transient_refusal(
                    db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some(),
                    db.code().as_deref(),
                ) || is_missing_database(&**db) =>
            {
                StoreError::Unavailable(e)
            }
            E::Database(_) => StoreError::Rejected(e),
            E::RowNotFound
            | E::TypeNotFound { .. }
            | E::ColumnIndexOutOfBounds { .. }
            | E::ColumnNotFound(_)
            | E::ColumnDecode { .. }
            | E::Decode(_) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e),
        }
    }
}

/// Database errors that say "not now" rather than "never": SQLSTATE classes 08 (connection,
/// e.g. MySQL's too many connections) and 40 (transaction rollback: deadlock,
/// serialization) and HYT00 (timeout) from MySQL/MariaDB; SQLite's BUSY, LOCKED and
/// CANTOPEN (its codes are numeric, extended ones included).
fn is_transient_refusal(sqlite: bool, code: Option<&str>) -> bool {
    let Some(code) = code else {
        return false;
    };
    if sqlite {
        // BUSY, LOCKED, and CANTOPEN (the file's directory is not there yet).
        return code
            .parse::<i32>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 14));
    }
    code.starts_with("08") || code.starts_with("40") || code == "HYT00"
}

/// The configured database does not exist (yet): MySQL/MariaDB's `ER_BAD_DB_ERROR` (1049,
/// whose SQLSTATE 42000 it shares with syntax errors), PostgreSQL's `invalid_catalog_name`
/// (3D000). Nothing can be written there, dead letters included: the database is not
/// available, it did not refuse these rows, and the batch waits for it as for a database
/// that is down (a refusal would send every row of it to the dead letters once it appears).
fn is_missing_database(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return mysql.number() == 1049;
    }
    db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some_and(|pg| pg.code() == "3D000")
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

/// A row the database refused for good, kept in `mcp_dead_letters` with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub row: Row,
    /// The database's refusal, cut to `DeadLetter::MAX_REASON` bytes.
    pub reason: String,
}

impl DeadLetter {
    pub const MAX_REASON: usize = 1024;

    pub fn new(row: Row, error: &StoreError) -> Self {
        let mut reason = error.to_string();
        if reason.len() > Self::MAX_REASON {
            let mut end = Self::MAX_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        DeadLetter { row, reason }
    }
}

/// One number a filter source reports in its status records, as the store keeps it: a drop
/// reason's count, or `EMITTED_REASON` for `emitted`. Every collector merges its own view
/// with `max`, so the stored value is the highest any of them saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    pub source: String,
    pub reason: String,
    pub value: u64,
}

/// `SourceStatus::reason` of the `emitted` counter.
pub const EMITTED_REASON: &str = "_emitted";

/// What the store holds of one source: its rows, its dead letters and its merged status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceTotals {
    pub source: String,
    /// Rows in `mcp_gateway_log` (distinct seqs: the unique key).
    pub stored: u64,
    pub dead_letters: u64,
    pub highest_seq: u64,
    /// Merged status values by reason (`EMITTED_REASON` included).
    pub status: std::collections::BTreeMap<String, u64>,
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
    /// Writes refused rows to the dead letters in one transaction, skipping `(source, seq)`
    /// already there. Returns how many were newly inserted.
    fn insert_dead_letters<'a>(
        &'a self,
        letters: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Merges status values into `mcp_source_status`, keeping the higher of the stored and
    /// the given value (so collectors writing the same source in any order agree).
    fn merge_source_status<'a>(
        &'a self,
        statuses: &'a [SourceStatus],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Per source: rows, dead letters, highest seq and merged status, from the whole store.
    fn source_totals(&self) -> BoxFuture<'_, Result<Vec<SourceTotals>, StoreError>>;
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
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::open(url, options)?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::open(url, options)?))
    } else {
        Err(StoreError::Config(format!(
            "unsupported database URL scheme in {:?}: use mysql://…, postgres://… or sqlite://path",
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
    use super::{is_transient_refusal, StoreError};

    #[test]
    fn sqlx_errors_map_to_what_happened() {
        let kind = |e: sqlx::Error| StoreError::from(e).kind();
        assert_eq!(kind(sqlx::Error::PoolTimedOut), "unavailable");
        assert_eq!(kind(sqlx::Error::ColumnNotFound("x".into())), "corrupt");
        assert_eq!(kind(sqlx::Error::Configuration("x".into())), "config");
        assert!(is_transient_refusal(false, Some("40001")), "deadlock");
        assert!(
            is_transient_refusal(false, Some("08004")),
            "too many connections"
        );
        assert!(!is_transient_refusal(false, Some("23000")), "duplicate key");
        assert!(
            is_transient_refusal(true, Some("517")),
            "SQLITE_BUSY_SNAPSHOT"
        );
        assert!(!is_transient_refusal(true, Some("19")), "SQLITE_CONSTRAINT");
        assert!(is_transient_refusal(true, Some("14")), "SQLITE_CANTOPEN");
        assert!(!is_transient_refusal(false, None));
    }

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
