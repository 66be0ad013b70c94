//! MySQL/MariaDB backend: DDL, dialect and connection settings.

use std::str::FromStr;

use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPoolOptions, MySqlQueryResult};

use super::sql::{impl_store, Backend, SqlStore};
use super::{StoreError, StoreOptions};

impl Backend for MySql {
    const NAME: &'static str = "mysql";
    const INSERT_IGNORE: &'static str = "INSERT IGNORE INTO";
    const SEQ_AS_SIGNED: &'static str = "CAST(seq AS SIGNED)";
    const SCHEMA_VERSION_DDL: &'static str =
        "CREATE TABLE IF NOT EXISTS collector_schema (version BIGINT NOT NULL) ENGINE=InnoDB";
    // `log` is LONGTEXT rather than JSON: the collector has already validated the JSON, and a
    // server-side JSON check with different limits (nesting depth, number range) would make
    // the database reject whole batches. JSON functions still work on the column.
    // utf8mb4_bin keeps `source` comparisons case-sensitive, as the unique key needs.
    const MIGRATIONS: &'static [&'static [&'static str]] = &[
        &["CREATE TABLE IF NOT EXISTS mcp_gateway_log (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            trace_id CHAR(32) NULL,
            span_id CHAR(16) NULL,
            instance_id VARCHAR(128) NULL,
            mcp_method VARCHAR(128) NULL,
            tool_name VARCHAR(256) NULL,
            token_header VARCHAR(128) NULL,
            token VARCHAR(80) NULL,
            event VARCHAR(64) NOT NULL,
            level TINYINT NOT NULL,
            log LONGTEXT NOT NULL,
            source VARCHAR(64) NOT NULL,
            seq BIGINT UNSIGNED NOT NULL,
            created_at DATETIME(6) NOT NULL,
            received_at DATETIME(6) NOT NULL,
            UNIQUE KEY uq_mcp_gateway_log_source_seq (source, seq),
            KEY idx_mcp_gateway_log_trace (trace_id),
            KEY idx_mcp_gateway_log_instance_time (instance_id, created_at),
            KEY idx_mcp_gateway_log_event (event),
            KEY idx_mcp_gateway_log_tool (tool_name),
            KEY idx_mcp_gateway_log_created (created_at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"],
        // Rows the database refused for good: the whole line, the refusal, when.
        &["CREATE TABLE IF NOT EXISTS mcp_dead_letters (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            source VARCHAR(64) NOT NULL,
            seq BIGINT UNSIGNED NOT NULL,
            created_at DATETIME(6) NOT NULL,
            received_at DATETIME(6) NOT NULL,
            dead_at DATETIME(6) NOT NULL,
            reason TEXT NOT NULL,
            log LONGTEXT NOT NULL,
            UNIQUE KEY uq_mcp_dead_letters_source_seq (source, seq)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"],
        // Each source's status (emitted, drops by reason), merged by every collector with max.
        &["CREATE TABLE IF NOT EXISTS mcp_source_status (
            source VARCHAR(64) NOT NULL,
            reason VARCHAR(64) NOT NULL,
            value BIGINT NOT NULL,
            updated_at DATETIME(6) NOT NULL,
            PRIMARY KEY (source, reason)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"],
    ];
    const DELETE_OLD: &'static str =
        "DELETE FROM mcp_gateway_log WHERE created_at < ? ORDER BY created_at LIMIT ?";
    const OUTCOME: &'static str = "JSON_UNQUOTE(JSON_EXTRACT(log, '$.\"mcp.outcome\"'))";
    // GET_LOCK is per server and held by the connection: a collector that dies mid-migration
    // releases it with its connection. 1 when taken, 0 after 30 s of waiting.
    const UPSERT_STATUS: &'static str =
        "INSERT INTO mcp_source_status (source, reason, value, updated_at) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE value = GREATEST(value, VALUES(value)), \
         updated_at = VALUES(updated_at)";
    const MIGRATION_LOCK: Option<(&'static str, &'static str)> = Some((
        "SELECT GET_LOCK(CONCAT(DATABASE(), '.collector_migrate'), 30)",
        "SELECT RELEASE_LOCK(CONCAT(DATABASE(), '.collector_migrate'))",
    ));

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl_store!(MySql);

pub fn open(url: &str, options: &StoreOptions) -> Result<SqlStore<MySql>, StoreError> {
    let connect = MySqlConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("bad MySQL URL: {e}")))?
        .charset("utf8mb4");
    let pool = MySqlPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_lazy_with(connect);
    Ok(SqlStore::new(pool))
}
