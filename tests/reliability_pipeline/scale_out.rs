//! Fault: three collectors behind one Envoy cluster (2 workers), writing one MariaDB; under
//! load one is SIGKILLed (and comes back later, replaying its spool) and another is
//! restarted with SIGTERM. `emitted = stored + dead letters + dropped` must hold exactly over
//! all of them, no `(source, seq)` stored twice, and the accounting answered from the store
//! must be the same, with nothing unaccounted, whichever collector answers.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::json;
use test_support::collector::{sum_metric, Collector};
use test_support::db::TestDb;
use test_support::http;
use test_support::pipeline::{
    figures, one_at_a_time, start_envoy_with_collectors, EnvoyOptions, FilterCounts, Load,
};
use test_support::poll::wait_until;

use crate::collector_faults::dropped_in_logs;
use crate::{assert_no_duplicate_seqs, json_server, CLIENTS, PAUSE, STEADY};

/// Drops every collector counted: the running processes' metrics and the final log lines of
/// the stopped ones.
fn collector_drops(collectors: &[Collector]) -> u64 {
    collectors
        .iter()
        .map(|c| {
            sum_metric(
                &c.metrics(),
                "collector_dropped_events_total",
                "origin=\"collector\"",
            ) + dropped_in_logs(&c.old_logs)
        })
        .sum()
}

#[test]
fn fault_three_collectors_one_killed_one_restarted_under_load() {
    let _serial = one_at_a_time();
    let db = TestDb::create("scale_out");
    let mut collectors: Vec<Collector> = (0..3)
        .map(|_| Collector::start_pipeline(&db.url(), &["--status-flush-interval", "200ms"]))
        .collect();
    let server = json_server();
    let ports: Vec<u16> = collectors.iter().map(|c| c.port).collect();
    let envoy = start_envoy_with_collectors(server.port, &ports, &EnvoyOptions::default());
    let url = Arc::new(Mutex::new(envoy.url("/mcp/demo/mcp")));
    let load = Load::start(CLIENTS, PAUSE, Duration::from_secs(120), url);
    thread::sleep(STEADY);
    let killed_exit = collectors[0].kill_with("KILL");
    thread::sleep(Duration::from_secs(1));
    let restarted_exit = collectors[1].kill_with("TERM");
    collectors[1].restart();
    thread::sleep(Duration::from_secs(2));
    collectors[0].restart();
    thread::sleep(STEADY);
    let (served, errors) = load.finish();

    let mut last = (FilterCounts::default(), 0, 0, 0);
    let held = wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
        let counts = FilterCounts::read(&envoy);
        let (stored, dead) = (db.rows(), db.dead_letters());
        let dropped = collector_drops(&collectors);
        last = (counts, stored, dead, dropped);
        counts.emitted > 0 && counts.emitted == stored + dead + counts.dropped() + dropped
    })
    .is_some();
    let (counts, stored, dead, dropped) = last;
    let lost = counts.emitted as i64 - (stored + dead + counts.dropped() + dropped) as i64;

    // The store's accounting, asked of each collector.
    let from_store = |c: &Collector| {
        let url = format!("http://127.0.0.1:{}/v1/accounting?from=store", c.port);
        let auth = format!("Bearer {}", test_support::collector::COLLECTOR_TOKEN);
        http::request("GET", &url, &[("authorization", auth.as_str())], "")
            .ok()
            .map(|r| r.json())
    };
    let mut last_reports: Vec<Option<serde_json::Value>> = Vec::new();
    let settled_accounting =
        wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
            last_reports = collectors.iter().map(from_store).collect();
            // Every collector answers, with the same totals, and nothing is unaccounted.
            let reports: Vec<_> = last_reports.iter().cloned().collect::<Option<_>>()?;
            // The store's own count is read at the same moment: a collector restarted on
            // its spool may still be writing rows its stopped incarnation reported dropped.
            let rows = db.rows() + db.dead_letters();
            let agree = reports.windows(2).all(|w| w[0]["totals"] == w[1]["totals"])
                && reports[0]["totals"]["unaccounted"] == 0
                && reports[0]["totals"]["events"] == rows;
            agree.then(|| (reports[0].clone(), rows))
        });
    figures(
        "fault_scale_out_three_collectors",
        json!({
            "collectors": 3,
            "envoy_workers": 2,
            "requests_served": served,
            "client_errors": errors,
            "killed_exit": killed_exit,
            "restarted_exit": restarted_exit,
            "filter": counts.json(),
            "stored": stored,
            "dead_letters": dead,
            "collector_dropped": dropped,
            "identity_holds_exactly": held,
            "lost": lost,
            "replayed_from_spool": collectors.iter().map(|c| c.metric("collector_spool_replayed_events_total", "")).sum::<u64>(),
            "accounting_from_store_totals": settled_accounting.as_ref().map(|(r, _)| r["totals"].clone()),
        }),
    );
    assert_eq!(errors, 0, "clients never notice the collectors");
    assert!(held, "identity over three collectors: {last:?}");
    assert_eq!(lost, 0);
    assert_no_duplicate_seqs(&db);
    assert_eq!(restarted_exit, Some(0), "SIGTERM drains and exits 0");
    let (report, rows) = settled_accounting.unwrap_or_else(|| {
        panic!(
            "every collector answers the same store accounting, the store's rows: \
             {last_reports:#?}\nrows {} + dead letters {}",
            db.rows(),
            db.dead_letters()
        )
    });
    assert_eq!(report["totals"]["events"], rows);
}
