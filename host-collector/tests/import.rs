//! `host-collector import`: marked lines of an Envoy log become stored events, once, whatever
//! surrounds them; everything else in the log is ignored and a bad marked line is reported.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use host_collector::import::{run, ImportArgs};
use host_collector::store::{open, LogQuery, StoreOptions};
use std::time::Duration;
use test_support::collector::{event, TempSqlite};

fn envoy_line(payload: &str) -> String {
    format!(
        "[2026-12-04 17:00:00.000][42][warning][wasm] [source/extensions/common/wasm/context.cc:1151] wasm log mcp mcp: {}{payload}\n",
        mcp_contract::recovery::MARKER
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_lines_are_stored_once_and_the_rest_ignored() {
    let sqlite = TempSqlite::new();
    let log = sqlite.path("envoy.log");
    let mut text = String::from("[info] starting envoy\nmcp_event {\"not\":\"marked\"}\n");
    for seq in 1..=3 {
        text.push_str(&envoy_line(&event("vm-old", seq, "")));
    }
    text.push_str(&envoy_line(r#"{"kind":"status","source":"vm-old","ts":"2026-12-04T17:00:00Z","dropped":{},"emitted":3}"#));
    text.push_str(&envoy_line("{not json"));
    text.push_str(&envoy_line(&event("vm-old", 2, ""))); // written twice: stored once
    std::fs::write(&log, text).expect("log");
    let args = ImportArgs {
        database_url: sqlite.url(),
        fingerprint_key: None,
        logs: vec![log.clone()],
    };

    let first = run(&args).await.expect("import");
    assert_eq!(
        (
            first.marked_lines,
            first.events,
            first.inserted,
            first.status_records,
            first.rejected
        ),
        (6, 4, 3, 1, 1)
    );
    assert_eq!(first.sources["vm-old"].emitted, Some(3));
    assert!(
        first.rejections[0].contains("invalid JSON"),
        "{:?}",
        first.rejections
    );
    let again = run(&args).await.expect("import again");
    assert_eq!((again.events, again.inserted), (4, 0), "idempotent");

    let store = open(
        &sqlite.url(),
        &StoreOptions {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        },
    )
    .expect("store");
    let rows = store
        .query(&LogQuery {
            source: Some("vm-old".into()),
            limit: 100,
            ..LogQuery::default()
        })
        .await
        .expect("query");
    let mut seqs: Vec<u64> = rows.iter().map(|r| r.row.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3]);

    let missing = ImportArgs {
        logs: vec![sqlite.path("no-such.log")],
        ..args
    };
    let err = run(&missing).await.expect_err("a missing log is an error");
    assert!(err.contains("cannot open"), "{err}");
}
