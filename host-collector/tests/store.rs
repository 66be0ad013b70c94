//! Store-level behaviour on both backends: retention deletes in batches only what is old
//! enough, and the schema is created once and reused.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use host_collector::event::{Level, Row};
use host_collector::retention::{sweep, RetentionConfig};
use host_collector::store::{open, LogQuery, Store, StoreOptions};
use test_support::collector::*;
use test_support::db::*;

fn row(seq: u64, age_days: i64) -> Row {
    let created = (Utc::now() - chrono::Duration::days(age_days)).naive_utc();
    Row {
        trace_id: None,
        span_id: None,
        instance_id: Some("i1".into()),
        mcp_method: None,
        tool_name: None,
        token_header: None,
        token: None,
        event: "request".into(),
        level: Level::Warn,
        log: format!(r#"{{"seq":{seq}}}"#),
        source: "vm-r".into(),
        seq,
        created_at: created,
        received_at: Utc::now().naive_utc(),
    }
}

async fn retention_keeps_recent_rows(url: String) {
    let options = StoreOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
    };
    let store: Arc<dyn Store> = open(&url, &options).expect("open store");
    store.prepare().await.expect("schema");
    store.prepare().await.expect("schema again is a no-op");
    let rows: Vec<Row> = (1..=7)
        .map(|s| row(s, 40))
        .chain((8..=10).map(|s| row(s, 1)))
        .collect();
    assert_eq!(store.insert_batch(&rows).await.expect("insert"), 10);
    let config = RetentionConfig {
        max_age: Duration::from_secs(30 * 86_400),
        interval: Duration::from_secs(3600),
        batch: 3,
    };
    assert_eq!(sweep(store.as_ref(), &config).await.expect("sweep"), 7);
    let left = store
        .query(&LogQuery {
            limit: 100,
            ..LogQuery::default()
        })
        .await
        .expect("query");
    let seqs: Vec<u64> = left.iter().map(|r| r.row.seq).collect();
    assert_eq!(seqs, vec![10, 9, 8]);
    assert_eq!(left[0].row.level, Level::Warn);
    assert_eq!(left[0].row.log, r#"{"seq":10}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_retention() {
    let db = TempSqlite::new();
    retention_keeps_recent_rows(db.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_retention() {
    with_mariadb(|db| async move { retention_keeps_recent_rows(db.url()).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_retention() {
    let db = TestPg::create("retention");
    retention_keeps_recent_rows(db.url()).await;
}

#[test]
fn unknown_database_scheme_is_a_clear_error() {
    let options = StoreOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(1),
    };
    let err = open("oracle://u:secret@h/db", &options)
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("unsupported database URL"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

/// Collectors starting at once against one MariaDB: the migrations run under a database lock,
/// so one waits while another holds it, and each version is applied and recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_migrations_run_under_a_database_lock() {
    with_mariadb(|db| async move {
        let options = || StoreOptions {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        };
        let pool = db.pool().await;
        let mut holder = pool.acquire().await.expect("a connection");
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT GET_LOCK(CONCAT(DATABASE(), '.collector_migrate'), 0)")
                .fetch_one(&mut *holder)
                .await
                .expect("lock");
        assert_eq!(taken, Some(1), "another collector is migrating");
        let store = open(&db.url(), &options()).expect("store");
        let mut prepare = tokio::spawn(async move { store.prepare().await });
        let waited = tokio::time::timeout(Duration::from_millis(700), &mut prepare).await;
        assert!(waited.is_err(), "the migration waits for the lock");
        assert_eq!(
            db.count(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = 'mcp_gateway_log'"
            ),
            0,
            "nothing created while the lock is held"
        );
        sqlx::query("SELECT RELEASE_LOCK(CONCAT(DATABASE(), '.collector_migrate'))")
            .execute(&mut *holder)
            .await
            .expect("release");
        tokio::time::timeout(Duration::from_secs(20), prepare)
            .await
            .expect("migrates once the lock is free")
            .expect("task")
            .expect("schema");

        // Several collectors at once on a fresh database: each succeeds, each version is
        // applied and recorded once.
        let fresh = TestDb::create("migrate_race");
        let starting: Vec<_> = (0..4)
            .map(|_| {
                let store = open(&fresh.url(), &options()).expect("store");
                tokio::spawn(async move { store.prepare().await })
            })
            .collect();
        for collector in starting {
            collector.await.expect("task").expect("schema");
        }
        let versions =
            "SELECT version, COUNT(*) FROM collector_schema GROUP BY version ORDER BY version";
        assert_eq!(db.query(versions), "1\t1\n2\t1\n3\t1");
        assert_eq!(fresh.query(versions), "1\t1\n2\t1\n3\t1");
    })
    .await;
}

/// The collector's connections to PostgreSQL use TLS when the URL asks for it
/// (`sslmode=require`; `verify-full` with `sslrootcert` in production): the server's own view
/// (`pg_stat_ssl`) of every connection the store opened says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_use_tls_when_the_url_asks() {
    let db = TestPg::create("tls");
    let app = format!("hc_tls_{}", std::process::id());
    let url = format!("{}?sslmode=require&application_name={app}", db.url());
    let store = open(
        &url,
        &StoreOptions {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(10),
        },
    )
    .expect("store");
    store.prepare().await.expect("schema over TLS");
    assert_eq!(store.insert_batch(&[row(1, 0)]).await.expect("insert"), 1);
    let seen = db.query(&format!(
        "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s \
         JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.application_name = '{app}'"
    ));
    let (connections, all_tls) = seen.split_once('|').expect("count|ssl");
    assert!(connections.parse::<u32>().unwrap_or(0) >= 1, "{seen}");
    assert_eq!(all_tls, "t", "every connection of the store is TLS: {seen}");
}

fn tls_store(url: &str) -> Arc<dyn Store> {
    open(
        url,
        &StoreOptions {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        },
    )
    .expect("store")
}

/// The collector's connections to MariaDB use TLS when the URL asks for it, and verify the
/// server when given its CA (`ssl-mode=VERIFY_IDENTITY&ssl-ca=...`). The server is one of the
/// test's own (the shared one runs without TLS); the store logs in as a user the server admits
/// only over TLS. The same URL with TLS off is refused at login, and a CA that did not sign
/// the server's certificate fails the handshake: no row is written either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_connections_use_tls_and_verify_the_server_when_the_url_asks() {
    let db = TlsMariaDb::start();
    let ca = db.cert.ca.display().to_string();
    let verified = tls_store(&db.url(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}")));
    verified.prepare().await.expect("schema over verified TLS");
    assert_eq!(
        verified.insert_batch(&[row(1, 0)]).await.expect("insert"),
        1
    );
    let rows = || {
        db.root_sql(&format!(
            "SELECT COUNT(*) FROM {}.mcp_gateway_log",
            TlsMariaDb::DATABASE
        ))
    };
    assert_eq!(rows().as_deref(), Ok("1"), "the row went over TLS");

    let plain = tls_store(&db.url("ssl-mode=DISABLED"));
    let refused = plain.insert_batch(&[row(2, 0)]).await;
    let refused = format!("{:?}", refused.expect_err("no TLS, no login"));
    assert!(refused.contains("Access denied"), "{refused}");

    let elsewhere = test_support::paths::TestDir::new("other-ca");
    let other_ca = test_support::tls::signed_by_ca(&elsewhere.path).ca;
    let untrusted =
        tls_store(&db.url(&format!("ssl-mode=VERIFY_CA&ssl-ca={}", other_ca.display())));
    let failed = untrusted.insert_batch(&[row(3, 0)]).await;
    let failed = format!(
        "{:?}",
        failed.expect_err("a server its CA did not sign is refused")
    );
    assert!(failed.to_lowercase().contains("certificate"), "{failed}");
    assert_eq!(rows().as_deref(), Ok("1"), "nothing written without TLS");
}

/// What each database answers when the configured database is not there (yet) is "not
/// available", never a refusal of the rows (which would send them to the dead letters).
#[tokio::test]
async fn a_missing_database_is_unavailable_not_a_refusal() {
    use host_collector::store::StoreError;
    let mariadb = TestDb::reserve("missing");
    let postgres = TestPg::reserve("missing");
    let sqlite = TempSqlite::new();
    let sqlite_url = format!(
        "sqlite://{}?mode=rwc",
        sqlite.path("not-there/collector.db").display()
    );
    let errors = [
        (
            "mariadb",
            sqlx::MySqlPool::connect(&mariadb.url()).await.err(),
        ),
        (
            "postgres",
            sqlx::PgPool::connect(&postgres.url()).await.err(),
        ),
        ("sqlite", sqlx::SqlitePool::connect(&sqlite_url).await.err()),
    ];
    for (store, error) in errors {
        let error = StoreError::from(error.expect("the database is missing"));
        assert!(
            error.is_transient() && !error.is_refusal(),
            "{store}: {} ({error})",
            error.kind()
        );
    }
}
