//! The SQL store shared by both backends: multi-row statement shapes, the migration runner,
//! retention and the query builder. Backend differences live in the `Backend` trait.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::NaiveDateTime;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool,
    QueryBuilder, Row as _, SqlStr, Type,
};

use super::{DeadLetter, LogQuery, SourceStatus, SourceTotals, StoreError, StoredRow};
use crate::event::{Level, Row};

/// Largest rows-per-statement shape; bigger batches use several statements in one transaction.
/// 1024 rows x 14 columns stays well under every backend's placeholder limit.
pub const MAX_STATEMENT_ROWS: usize = 1024;

const COLUMNS: &str = "trace_id, span_id, instance_id, mcp_method, tool_name, token_header, \
    token, event, level, log, source, seq, created_at, received_at";
const ROW_PLACEHOLDERS: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// What differs between MySQL/MariaDB and SQLite.
pub trait Backend: Database {
    const NAME: &'static str;
    /// Insert that silently skips rows violating the `(source, seq)` unique key: this before
    /// the table, `INSERT_IGNORE_SUFFIX` after the values.
    const INSERT_IGNORE: &'static str;
    const INSERT_IGNORE_SUFFIX: &'static str = "";
    /// `seq` as a signed 64-bit value (MySQL stores it unsigned).
    const SEQ_AS_SIGNED: &'static str;
    const SCHEMA_VERSION_DDL: &'static str;
    /// Statements per schema version, applied in order.
    const MIGRATIONS: &'static [&'static [&'static str]];
    /// Deletes up to `?2` rows with `created_at < ?1`.
    const DELETE_OLD: &'static str;
    /// The event's `mcp.outcome` as text, for the query API's outcome filter.
    const OUTCOME: &'static str;
    /// Inserts `(source, reason, value, updated_at)` into `mcp_source_status`, or raises the
    /// stored value to it when higher.
    const UPSERT_STATUS: &'static str;
    /// Statements taking and releasing a database-wide lock on the connection that migrates,
    /// so collectors starting at once apply each migration once; `None` where the database
    /// serialises schema changes itself (SQLite: one writer, one file).
    const MIGRATION_LOCK: Option<(&'static str, &'static str)>;
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// `sql` with its `?` placeholders in this database's syntax (PostgreSQL numbers them).
    fn placeholders(sql: &str) -> String {
        sql.to_string()
    }
}

/// How long a collector waits for another one's migration (the lock statements say 30 s).
const MIGRATION_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct SqlStore<DB: Backend> {
    pool: Pool<DB>,
    /// `shapes[k]` inserts `2^k` rows: a handful of statements the connections keep prepared.
    shapes: Vec<SqlStr>,
    migrated: AtomicBool,
    migrating: tokio::sync::Mutex<()>,
}

fn insert_sql<DB: Backend>(rows: usize) -> SqlStr {
    let values = vec![ROW_PLACEHOLDERS; rows].join(", ");
    let sql = format!(
        "{} mcp_gateway_log ({COLUMNS}) VALUES {values}{}",
        DB::INSERT_IGNORE,
        DB::INSERT_IGNORE_SUFFIX
    );
    sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(DB::placeholders(&sql)))
}

/// Splits `n` rows into power-of-two chunks, largest first (137 -> 128, 8, 1).
pub fn chunk_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = (1usize << n.ilog2()).min(MAX_STATEMENT_ROWS);
        n -= size;
        Some(size)
    })
}

impl<DB: Backend> SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> i8: Encode<'t, DB> + Type<DB>,
    for<'t> NaiveDateTime: Encode<'t, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB>,
    for<'r> i8: Decode<'r, DB>,
    for<'r> NaiveDateTime: Decode<'r, DB>,
    usize: ColumnIndex<DB::Row>,
{
    pub fn new(pool: Pool<DB>) -> Self {
        let shapes = (0..=MAX_STATEMENT_ROWS.ilog2())
            .map(|k| insert_sql::<DB>(1 << k))
            .collect();
        SqlStore {
            pool,
            shapes,
            migrated: AtomicBool::new(false),
            migrating: tokio::sync::Mutex::new(()),
        }
    }

    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Creates or upgrades the schema once per process (retried on the next use if it fails).
    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        if self.migrated.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.migrating.lock().await;
        if self.migrated.load(Ordering::Acquire) {
            return Ok(());
        }
        // Detached from the pool: if this future is dropped (a caller's timeout) while the
        // connection holds the migration lock, the connection closes and the lock goes with
        // it, instead of going back to the pool still held.
        let mut conn = self.pool.acquire().await?.detach();
        if let Some((lock, _)) = DB::MIGRATION_LOCK {
            let got: Option<i64> = sqlx::query_scalar(lock).fetch_one(&mut conn).await?;
            if got != Some(1) {
                return Err(StoreError::Timeout {
                    operation: "migration lock",
                    after: MIGRATION_LOCK_WAIT,
                });
            }
        }
        let migrated = self.migrate(&mut conn).await;
        if let Some((_, unlock)) = DB::MIGRATION_LOCK {
            // Should this fail, the lock goes with the detached connection when it closes.
            let _ = sqlx::query(unlock).execute(&mut conn).await;
        }
        migrated?;
        self.migrated.store(true, Ordering::Release);
        Ok(())
    }

    /// Applies the migrations this database has not seen yet (under the migration lock).
    async fn migrate(&self, conn: &mut DB::Connection) -> Result<(), StoreError> {
        sqlx::query(DB::SCHEMA_VERSION_DDL)
            .execute(&mut *conn)
            .await?;
        let current: i64 =
            sqlx::query("SELECT version FROM collector_schema ORDER BY version DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get::<i64, _>(0usize))
                .transpose()?
                .unwrap_or(0);
        for (index, statements) in DB::MIGRATIONS.iter().enumerate() {
            let version = index as i64 + 1;
            if version <= current {
                continue;
            }
            for statement in *statements {
                sqlx::query(AssertSqlSafe(*statement))
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query(AssertSqlSafe(DB::placeholders(
                "INSERT INTO collector_schema (version) VALUES (?)",
            )))
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    pub async fn insert_batch(&self, rows: &[Row]) -> Result<u64, StoreError> {
        self.ensure_schema().await?;
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        let mut rest = rows;
        for size in chunk_sizes(rows.len()) {
            let (chunk, tail) = rest.split_at(size);
            let result = self.bind_rows(chunk).execute(&mut *tx).await?;
            inserted += DB::rows_affected(&result);
            rest = tail;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// The statement of the shape for `chunk.len()` (a power of two) with every value bound.
    fn bind_rows<'q>(&self, chunk: &'q [Row]) -> sqlx::query::Query<'q, DB, DB::Arguments> {
        let shape = self.shapes[chunk.len().ilog2() as usize].clone();
        chunk.iter().fold(sqlx::query(shape), |q, row| {
            q.bind(row.trace_id.as_deref())
                .bind(row.span_id.as_deref())
                .bind(row.instance_id.as_deref())
                .bind(row.mcp_method.as_deref())
                .bind(row.tool_name.as_deref())
                .bind(row.token_header.as_deref())
                .bind(row.token.as_deref())
                .bind(row.event.as_str())
                .bind(row.level as i8)
                .bind(row.log.as_str())
                .bind(row.source.as_str())
                .bind(row.seq as i64)
                .bind(row.created_at)
                .bind(row.received_at)
        })
    }

    pub async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<u64, StoreError> {
        self.ensure_schema().await?;
        let dead_at = chrono::Utc::now().naive_utc();
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for letter in letters {
            let row = &letter.row;
            let result = sqlx::query(AssertSqlSafe(DB::placeholders(&format!(
                "{} mcp_dead_letters (source, seq, created_at, received_at, dead_at, reason, log) \
                 VALUES (?, ?, ?, ?, ?, ?, ?){}",
                DB::INSERT_IGNORE,
                DB::INSERT_IGNORE_SUFFIX
            ))))
            .bind(row.source.as_str())
            .bind(row.seq as i64)
            .bind(row.created_at)
            .bind(row.received_at)
            .bind(dead_at)
            .bind(letter.reason.as_str())
            .bind(row.log.as_str())
            .execute(&mut *tx)
            .await?;
            inserted += DB::rows_affected(&result);
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn merge_source_status(&self, statuses: &[SourceStatus]) -> Result<(), StoreError> {
        self.ensure_schema().await?;
        let now = chrono::Utc::now().naive_utc();
        let mut tx = self.pool.begin().await?;
        for status in statuses {
            sqlx::query(DB::UPSERT_STATUS)
                .bind(status.source.as_str())
                .bind(status.reason.as_str())
                .bind(i64::try_from(status.value).unwrap_or(i64::MAX))
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn source_totals(&self) -> Result<Vec<SourceTotals>, StoreError> {
        self.ensure_schema().await?;
        let mut conn = self.pool.acquire().await?;
        let mut totals: std::collections::BTreeMap<String, SourceTotals> = Default::default();
        for (table, dead) in [("mcp_gateway_log", false), ("mcp_dead_letters", true)] {
            let sql = format!(
                "SELECT source, COUNT(*), MAX({}) FROM {table} GROUP BY source",
                DB::SEQ_AS_SIGNED
            );
            for row in sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&mut *conn)
                .await?
            {
                let source: String = row.try_get(0usize)?;
                let count: i64 = row.try_get(1usize)?;
                let highest: Option<i64> = row.try_get(2usize)?;
                let entry = totals
                    .entry(source.clone())
                    .or_insert_with(|| SourceTotals {
                        source,
                        ..SourceTotals::default()
                    });
                let count = count.max(0) as u64;
                if dead {
                    entry.dead_letters = count;
                } else {
                    entry.stored = count;
                }
                entry.highest_seq = entry.highest_seq.max(highest.unwrap_or(0).max(0) as u64);
            }
        }
        let statuses = sqlx::query("SELECT source, reason, value FROM mcp_source_status")
            .fetch_all(&mut *conn)
            .await?;
        for row in statuses {
            let source: String = row.try_get(0usize)?;
            let reason: String = row.try_get(1usize)?;
            let value: i64 = row.try_get(2usize)?;
            let entry = totals
                .entry(source.clone())
                .or_insert_with(|| SourceTotals {
                    source,
                    ..SourceTotals::default()
                });
            entry.status.insert(reason, value.max(0) as u64);
        }
        Ok(totals.into_values().collect())
    }

    /// One autocommitted INSERT per row, as the seeds' writers do: kept only as the
    /// benchmark's baseline.
    pub async fn insert_each(&self, rows: &[Row]) -> Result<u64, StoreError> {
        self.ensure_schema().await?;
        let mut conn = self.pool.acquire().await?;
        let mut inserted = 0;
        for row in rows {
            let result = self
                .bind_rows(std::slice::from_ref(row))
                .execute(&mut *conn)
                .await?;
            inserted += DB::rows_affected(&result);
        }
        Ok(inserted)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        Ok(())
    }

    pub async fn delete_older_than(
        &self,
        cutoff: NaiveDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.ensure_schema().await?;
        let mut conn = self.pool.acquire().await?;
        let result = sqlx::query(DB::DELETE_OLD)
            .bind(cutoff)
            .bind(i64::from(limit))
            .execute(&mut *conn)
            .await?;
        Ok(DB::rows_affected(&result))
    }

    pub async fn query(&self, q: &LogQuery) -> Result<Vec<StoredRow>, StoreError> {
        self.ensure_schema().await?;
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT id, {}, {} FROM mcp_gateway_log WHERE 1 = 1",
            COLUMNS.replace(" seq,", ""),
            DB::SEQ_AS_SIGNED
        ));
        let equals = [
            ("trace_id", &q.trace_id),
            ("instance_id", &q.instance_id),
            ("event", &q.event),
            ("tool_name", &q.tool_name),
            ("source", &q.source),
        ];
        for (column, value) in equals {
            if let Some(v) = value {
                qb.push(format_args!(" AND {column} = "))
                    .push_bind(v.as_str());
            }
        }
        if let Some(outcome) = &q.outcome {
            qb.push(format_args!(" AND {} = ", DB::OUTCOME))
                .push_bind(outcome.as_str());
        }
        if let Some(since) = q.since {
            qb.push(" AND created_at >= ").push_bind(since);
        }
        if let Some(until) = q.until {
            qb.push(" AND created_at < ").push_bind(until);
        }
        if let Some(before) = q.before_id {
            qb.push(" AND id < ").push_bind(before);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(q.limit));
        let mut conn = self.pool.acquire().await?;
        let rows = qb.build().fetch_all(&mut *conn).await?;
        rows.iter().map(decode_row::<DB>).collect()
    }
}

fn decode_row<DB: Database>(r: &DB::Row) -> Result<StoredRow, StoreError>
where
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> i8: Decode<'r, DB> + Type<DB>,
    for<'r> NaiveDateTime: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let text = |i: usize| r.try_get::<Option<String>, _>(i);
    let level_code: i8 = r.try_get(9)?;
    let level = Level::from_code(level_code)
        .ok_or_else(|| StoreError::Corrupt(format!("stored level {level_code} is unknown")))?;
    Ok(StoredRow {
        id: r.try_get(0)?,
        row: Row {
            trace_id: text(1)?,
            span_id: text(2)?,
            instance_id: text(3)?,
            mcp_method: text(4)?,
            tool_name: text(5)?,
            token_header: text(6)?,
            token: text(7)?,
            event: r.try_get(8)?,
            level,
            log: r.try_get(10)?,
            source: r.try_get(11)?,
            created_at: r.try_get(12)?,
            received_at: r.try_get(13)?,
            seq: r.try_get::<i64, _>(14)? as u64,
        },
    })
}

/// Implements the object-safe `Store` trait for a backend by delegating to `SqlStore`.
macro_rules! impl_store {
    ($db:ty) => {
        impl $crate::store::Store for $crate::store::SqlStore<$db> {
            fn kind(&self) -> &'static str {
                <$db as $crate::store::sql::Backend>::NAME
            }
            fn prepare(
                &self,
            ) -> $crate::store::BoxFuture<'_, Result<(), $crate::store::StoreError>> {
                Box::pin(SqlStore::ensure_schema(self))
            }
            fn insert_batch<'a>(
                &'a self,
                rows: &'a [$crate::event::Row],
            ) -> $crate::store::BoxFuture<'a, Result<u64, $crate::store::StoreError>> {
                Box::pin(SqlStore::insert_batch(self, rows))
            }
            fn insert_dead_letters<'a>(
                &'a self,
                letters: &'a [$crate::store::DeadLetter],
            ) -> $crate::store::BoxFuture<'a, Result<u64, $crate::store::StoreError>> {
                Box::pin(SqlStore::insert_dead_letters(self, letters))
            }
            fn merge_source_status<'a>(
                &'a self,
                statuses: &'a [$crate::store::SourceStatus],
            ) -> $crate::store::BoxFuture<'a, Result<(), $crate::store::StoreError>> {
                Box::pin(SqlStore::merge_source_status(self, statuses))
            }
            fn source_totals(
                &self,
            ) -> $crate::store::BoxFuture<
                '_,
                Result<Vec<$crate::store::SourceTotals>, $crate::store::StoreError>,
            > {
                Box::pin(SqlStore::source_totals(self))
            }
            fn ping(&self) -> $crate::store::BoxFuture<'_, Result<(), $crate::store::StoreError>> {
                Box::pin(SqlStore::ping(self))
            }
            fn delete_older_than(
                &self,
                cutoff: chrono::NaiveDateTime,
                limit: u32,
            ) -> $crate::store::BoxFuture<'_, Result<u64, $crate::store::StoreError>> {
                Box::pin(SqlStore::delete_older_than(self, cutoff, limit))
            }
            fn query<'a>(
                &'a self,
                q: &'a $crate::store::LogQuery,
            ) -> $crate::store::BoxFuture<
                'a,
                Result<Vec<$crate::store::StoredRow>, $crate::store::StoreError>,
            > {
                Box::pin(SqlStore::query(self, q))
            }
        }
    };
}
pub(crate) use impl_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_largest_first() {
        assert_eq!(chunk_sizes(137).collect::<Vec<_>>(), vec![128, 8, 1]);
        assert_eq!(
            chunk_sizes(2048 + 3).collect::<Vec<_>>(),
            vec![1024, 1024, 2, 1]
        );
        assert_eq!(chunk_sizes(0).count(), 0);
    }
}
