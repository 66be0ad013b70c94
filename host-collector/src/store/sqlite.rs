//! SQLite backend: the zero-setup embedded default (WAL, one file).

use std::str::FromStr;

use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};

use super::sql::{impl_store, Backend, SqlStore};
use super::{StoreError, StoreOptions};

impl Backend for Sqlite {
    const NAME: &'static str = "sqlite";
    const INSERT_IGNORE: &'static str = "INSERT OR IGNORE INTO";
    const SEQ_AS_SIGNED: &'static str = "seq";
    const SCHEMA_VERSION_DDL: &'static str =
        "CREATE TABLE IF NOT EXISTS collector_schema (version INTEGER NOT NULL)";
    const MIGRATIONS: &'static [&'static [&'static str]] = &[&[
        "CREATE TABLE IF NOT EXISTS mcp_gateway_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            trace_id TEXT NULL,
            span_id TEXT NULL,
            instance_id TEXT NULL,
            mcp_method TEXT NULL,
            tool_name TEXT NULL,
            token_header TEXT NULL,
            token TEXT NULL,
            event TEXT NOT NULL,
            level INTEGER NOT NULL,
            log TEXT NOT NULL,
            source TEXT NOT NULL,
            seq INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            UNIQUE (source, seq)
        )",
        "CREATE INDEX IF NOT EXISTS idx_mcp_gateway_log_trace ON mcp_gateway_log (trace_id)",
        "CREATE INDEX IF NOT EXISTS idx_mcp_gateway_log_instance_time
            ON mcp_gateway_log (instance_id, created_at)",
        "CREATE INDEX IF NOT EXISTS idx_mcp_gateway_log_event ON mcp_gateway_log (event)",
        "CREATE INDEX IF NOT EXISTS idx_mcp_gateway_log_tool ON mcp_gateway_log (tool_name)",
        "CREATE INDEX IF NOT EXISTS idx_mcp_gateway_log_created ON mcp_gateway_log (created_at)",
    ], &[
        // Rows the database refused for good: the whole line, the refusal, when.
        "CREATE TABLE IF NOT EXISTS mcp_dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL,
            seq INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            dead_at TEXT NOT NULL,
            reason TEXT NOT NULL,
            log TEXT NOT NULL,
            UNIQUE (source, seq)
        )",
    ], &[
        // Each source's status (emitted, drops by reason), merged by every collector with max.
        "CREATE TABLE IF NOT EXISTS mcp_source_status (
            source TEXT NOT NULL,
            reason TEXT NOT NULL,
            value INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (source, reason)
        )",
    ]];
    // DELETE … LIMIT needs a compile-time option SQLite builds usually lack.
    const DELETE_OLD: &'static str = "DELETE FROM mcp_gateway_log WHERE id IN (
        SELECT id FROM mcp_gateway_log WHERE created_at < ? ORDER BY created_at LIMIT ?)";
    const OUTCOME: &'static str = "json_extract(log, '$.\"mcp.outcome\"')";
    const UPSERT_STATUS: &'static str =
        "INSERT INTO mcp_source_status (source, reason, value, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (source, reason) DO UPDATE SET value = MAX(value, excluded.value), \
         updated_at = excluded.updated_at";
    const MIGRATION_LOCK: Option<(&'static str, &'static str)> = None;

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl_store!(Sqlite);

pub fn open(url: &str, options: &StoreOptions) -> Result<SqlStore<Sqlite>, StoreError> {
    let connect = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("bad SQLite URL: {e}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(options.acquire_timeout);
    let pool = SqlitePoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_lazy_with(connect);
    Ok(SqlStore::new(pool))
}
