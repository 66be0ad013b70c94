//! Poison batches against real databases: a trigger makes MariaDB (and SQLite) refuse some
//! rows for good. The writer must split the batch, write every other row in order, keep the
//! refused rows in `mcp_dead_letters` with the refusal, count them (queue, metrics,
//! accounting), and keep writing what comes after.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use host_collector::app::Running;
use sqlx::{MySqlPool, PgPool, SqlitePool};
use test_support::collector::*;
use test_support::db::*;
use test_support::poll::eventually;

const SOURCE: &str = "vm-poison";
const REFUSAL: &str = "refused by policy";
const POISONED: [u64; 3] = [17, 60, 61];

/// An event line; the poisoned seqs name the tool the trigger refuses.
fn line(seq: u64) -> String {
    let tool = if POISONED.contains(&seq) {
        "poison"
    } else {
        "echo"
    };
    event(SOURCE, seq, &format!(r#","gen_ai.tool.name":"{tool}""#)) + "\n"
}

async fn wait_settled(running: &Running, n: u64) {
    eventually(
        &format!("{n} events settled"),
        Duration::from_secs(30),
        || async {
            let c = running.snapshot().counters;
            c.persisted + c.dead_lettered >= n
        },
    )
    .await;
}

/// A direct connection to the store under test, beside the collector's.
enum Db {
    Maria(MySqlPool),
    Lite(SqlitePool),
    Pg(PgPool),
}

/// A dead letter as read back: seq, source, reason, line.
type Letter = (i64, String, String, String);

impl Db {
    async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self {
            Db::Maria(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Db::Lite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Db::Pg(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .expect("execute");
    }

    async fn stored_seqs(&self) -> Vec<i64> {
        let sql = "SELECT CAST(seq AS SIGNED) FROM mcp_gateway_log ORDER BY id";
        match self {
            Db::Maria(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Db::Lite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Db::Pg(p) => {
                sqlx::query_scalar("SELECT seq FROM mcp_gateway_log ORDER BY id")
                    .fetch_all(p)
                    .await
            }
        }
        .expect("read rows")
    }

    async fn dead_letters(&self) -> Vec<Letter> {
        let sql = "SELECT CAST(seq AS SIGNED), source, reason, log FROM mcp_dead_letters \
                   ORDER BY id";
        match self {
            Db::Maria(p) => sqlx::query_as(sql).fetch_all(p).await,
            Db::Lite(p) => sqlx::query_as(sql).fetch_all(p).await,
            Db::Pg(p) => {
                sqlx::query_as("SELECT seq, source, reason, log FROM mcp_dead_letters ORDER BY id")
                    .fetch_all(p)
                    .await
            }
        }
        .expect("read dead letters")
    }
}

/// The scenario, on a store where `trigger` makes the database refuse the poisoned rows.
async fn poison_rows_go_to_dead_letters(url: &str, db: Db, trigger: &str) {
    let running = start(
        url,
        &["--batch-max-rows", "50", "--isolate-after-refusals", "2"],
    )
    .await;
    // The first event creates the schema the trigger needs.
    assert_eq!(post(running.addr, line(1).into_bytes()).await.status, 200);
    wait_settled(&running, 1).await;
    db.execute(trigger).await;

    let body: String = (2..=100).map(line).collect();
    let reply = post(running.addr, body.into_bytes()).await;
    assert_eq!(reply.json()["accepted"], 99);
    wait_settled(&running, 100).await;

    let seqs = db.stored_seqs().await;
    let expected: Vec<i64> = (1..=100)
        .filter(|s| !POISONED.contains(s))
        .map(|s| s as i64)
        .collect();
    assert_eq!(seqs, expected, "every accepted row stored once, in order");

    let dead = db.dead_letters().await;
    let dead_seqs: Vec<u64> = dead.iter().map(|d| d.0 as u64).collect();
    assert_eq!(dead_seqs, POISONED, "the refused rows, in order");
    for (_, source, reason, log) in &dead {
        assert_eq!(source, SOURCE);
        assert!(reason.contains(REFUSAL), "refusal kept: {reason}");
        let logged: serde_json::Value = serde_json::from_str(log).expect("the line is kept");
        assert_eq!(logged["gen_ai.tool.name"], "poison");
    }

    let c = running.snapshot().counters;
    assert_eq!((c.persisted, c.dead_lettered), (97, 3));
    assert_eq!(
        c.received,
        c.persisted + c.dead_lettered + c.dropped_queue_full + c.dropped_shutdown,
        "the queue's identity counts dead letters"
    );
    assert_eq!(
        metric(&running, "collector_dead_letters_total").await,
        Some(3.0)
    );
    let accounting = get(running.addr, "/v1/accounting").await.json();
    let source = &accounting["sources"][0];
    assert_eq!(
        (
            &source["source"],
            &source["events"],
            &source["dead_letters"]
        ),
        (&SOURCE.into(), &100.into(), &3.into())
    );
    assert_eq!(accounting["totals"]["dead_letters"], 3);

    // The writer is not stuck: what comes next is written as usual.
    let body: String = (101..=150).map(line).collect();
    assert_eq!(
        post(running.addr, body.into_bytes()).await.json()["accepted"],
        50
    );
    wait_settled(&running, 150).await;
    assert_eq!(running.snapshot().counters.dead_lettered, 3);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_refused_rows_are_dead_lettered_and_the_rest_written_in_order() {
    with_mariadb(|db| async move {
        let trigger = format!(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON mcp_gateway_log FOR EACH ROW \
             BEGIN IF NEW.tool_name = 'poison' THEN \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{REFUSAL}'; END IF; END"
        );
        poison_rows_go_to_dead_letters(&db.url(), Db::Maria(db.pool().await), &trigger).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refused_rows_are_dead_lettered_and_the_rest_written_in_order() {
    let sqlite = TempSqlite::new();
    let trigger = format!(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON mcp_gateway_log \
         WHEN NEW.tool_name = 'poison' BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
    );
    let pool = SqlitePool::connect(&format!("{}?mode=rwc", sqlite.url()))
        .await
        .expect("open SQLite");
    poison_rows_go_to_dead_letters(&sqlite.url(), Db::Lite(pool), &trigger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refused_rows_are_dead_lettered_and_the_rest_written_in_order() {
    let db = TestPg::create("poison");
    let trigger = format!(
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN \
         IF NEW.tool_name = 'poison' THEN RAISE EXCEPTION '{REFUSAL}'; END IF; RETURN NEW; \
         END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON mcp_gateway_log \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
    );
    let pool = PgPool::connect(&db.url()).await.expect("connect");
    poison_rows_go_to_dead_letters(&db.url(), Db::Pg(pool), &trigger).await;
}

/// A database that does not exist yet refuses nothing: the rows wait for it as for a
/// database that is down, and are all written once it appears. (MariaDB's "Unknown database"
/// shares its SQLSTATE with syntax errors and was once taken for a refusal: the writer split
/// the waiting batch row by row, and the rows it had found "refused" went to the dead letters
/// as soon as the database appeared.) The batch is large, so that splitting it takes long and
/// the database appears while it is being split.
async fn rows_wait_for_a_database_that_appears(
    url: &str,
    create: impl FnOnce(),
    connect: impl std::future::Future<Output = Db>,
) {
    const ROWS: u64 = 2000;
    let running = start(
        url,
        &[
            "--batch-max-rows",
            "2000",
            "--isolate-after-refusals",
            "2",
            // The writer finds the database missing by writing, not by its health check.
            "--health-check-interval",
            "60s",
            "--retry-initial-backoff",
            "10ms",
            "--retry-max-backoff",
            "20ms",
        ],
    )
    .await;
    for first in (1..=ROWS).step_by(500) {
        let body: String = (first..first + 500).map(line).collect();
        assert_eq!(
            post(running.addr, body.into_bytes()).await.json()["accepted"],
            500
        );
    }
    // Failed as often as a refused batch is retried whole before it is split.
    wait_for_db_errors(&running, 2.0, "the writer failed on the missing database").await;
    assert_eq!(running.snapshot().counters.persisted, 0);
    create();
    wait_settled(&running, ROWS).await;
    let c = running.snapshot().counters;
    assert_eq!(
        (c.persisted, c.dead_lettered),
        (ROWS, 0),
        "nothing dead-lettered"
    );
    let db = connect.await;
    assert_eq!(
        db.stored_seqs().await,
        (1..=ROWS as i64).collect::<Vec<i64>>(),
        "every row stored once, in order"
    );
    assert!(db.dead_letters().await.is_empty());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_rows_wait_for_a_database_that_does_not_exist_yet() {
    let db = TestDb::reserve("later");
    rows_wait_for_a_database_that_appears(&db.url(), || db.create_now(), async {
        Db::Maria(db.pool().await)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_wait_for_a_database_that_does_not_exist_yet() {
    let db = TestPg::reserve("later");
    rows_wait_for_a_database_that_appears(&db.url(), || db.create_now(), async {
        Db::Pg(PgPool::connect(&db.url()).await.expect("connect"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rows_wait_for_a_directory_that_does_not_exist_yet() {
    let sqlite = TempSqlite::new();
    let dir = sqlite.path("later");
    let file = dir.join("collector.db");
    let url = format!("sqlite://{}", file.display());
    rows_wait_for_a_database_that_appears(
        &url,
        || std::fs::create_dir(&dir).expect("create the directory"),
        async {
            Db::Lite(
                SqlitePool::connect(&format!("{url}?mode=rw"))
                    .await
                    .expect("open SQLite"),
            )
        },
    )
    .await;
}
