//! PostgreSQL backend: DDL, dialect and connection settings. The same table, indexes and
//! behaviour as the other backends: `ON CONFLICT DO NOTHING` for the unique key, numbered
//! placeholders, an advisory lock around migrations, and the level in a one-byte `"char"`.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgQueryResult, Postgres};

use super::sql::{impl_store, Backend, SqlStore};
use super::{StoreError, StoreOptions};

impl Backend for Postgres {
    const NAME: &'static str = "postgres";
    const INSERT_IGNORE: &'static str = "INSERT INTO";
    const INSERT_IGNORE_SUFFIX: &'static str = " ON CONFLICT DO NOTHING";
    const SEQ_AS_SIGNED: &'static str = "seq";
    const SCHEMA_VERSION_DDL: &'static str =
        "CREATE TABLE IF NOT EXISTS collector_schema (version BIGINT NOT NULL)";
    // `level` is PostgreSQL's one-byte "char" (what sqlx binds an i8 as); `log` is TEXT, not
    // JSONB, for the reason the MySQL backend gives (the collector validated it already).
    const MIGRATIONS: &'static [&'static [&'static str]] = &[
        &[
            r#"CREATE TABLE IF NOT EXISTS mcp_gateway_log (
                id BIGSERIAL PRIMARY KEY,
                trace_id TEXT NULL,
                span_id TEXT NULL,
                instance_id TEXT NULL,
                mcp_method TEXT NULL,
                tool_name TEXT NULL,
                token_header TEXT NULL,
                token TEXT NULL,
                event TEXT NOT NULL,
                level "char" NOT NULL,
                log TEXT NOT NULL,
                source TEXT NOT NULL,
                seq BIGINT NOT NULL,
                created_at TIMESTAMP NOT NULL,
                received_at TIMESTAMP NOT NULL,
                UNIQUE (source, seq)
            )"#,
            "CREATE INDEX IF NOT EXISTS idx_mcp_gateway_log_trace ON mcp_gateway_log (trace_id)",
            "CREATE INDEX IF NOT EXISTS idx_mcp_gateway_log_instance_time
                ON mcp_gateway_log (instance_id, created_at)",
            "CREATE INDEX IF NOT EXISTS idx_mcp_gateway_log_event ON mcp_gateway_log (event)",
            "CREATE INDEX IF NOT EXISTS idx_mcp_gateway_log_tool ON mcp_gateway_log (tool_name)",
            "CREATE INDEX IF NOT EXISTS idx_mcp_gateway_log_created ON mcp_gateway_log (created_at)",
        ],
        &["CREATE TABLE IF NOT EXISTS mcp_dead_letters (
            id BIGSERIAL PRIMARY KEY,
            source TEXT NOT NULL,
            seq BIGINT NOT NULL,
            created_at TIMESTAMP NOT NULL,
            received_at TIMESTAMP NOT NULL,
            dead_at TIMESTAMP NOT NULL,
            reason TEXT NOT NULL,
            log TEXT NOT NULL,
            UNIQUE (source, seq)
        )"],
        &["CREATE TABLE IF NOT EXISTS mcp_source_status (
            source TEXT NOT NULL,
            reason TEXT NOT NULL,
            value BIGINT NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            PRIMARY KEY (source, reason)
        )"],
    ];
    const DELETE_OLD: &'static str = "DELETE FROM mcp_gateway_log WHERE id IN (
        SELECT id FROM mcp_gateway_log WHERE created_at < $1 ORDER BY created_at LIMIT $2)";
    const OUTCOME: &'static str = "(log::jsonb ->> 'mcp.outcome')";
    const UPSERT_STATUS: &'static str =
        "INSERT INTO mcp_source_status (source, reason, value, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (source, reason) DO UPDATE \
         SET value = GREATEST(mcp_source_status.value, EXCLUDED.value), \
         updated_at = EXCLUDED.updated_at";
    // Advisory locks are per database server and die with the session.
    const MIGRATION_LOCK: Option<(&'static str, &'static str)> = Some((
        "SELECT 1::int8 FROM (SELECT pg_advisory_lock(hashtext(current_database() || \
         '.collector_migrate'))) AS taken",
        "SELECT pg_advisory_unlock(hashtext(current_database() || '.collector_migrate'))",
    ));

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn placeholders(sql: &str) -> String {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }
}

impl_store!(Postgres);

pub fn open(url: &str, options: &StoreOptions) -> Result<SqlStore<Postgres>, StoreError> {
    let connect = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?;
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_lazy_with(connect);
    Ok(SqlStore::new(pool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(
            <Postgres as Backend>::placeholders("VALUES (?, ?), (?, ?)"),
            "VALUES ($1, $2), ($3, $4)"
        );
    }
}
