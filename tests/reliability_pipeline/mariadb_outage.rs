//! Faults: MariaDB stopped (its connections cut) under steady load: 5 s, or 60 s with
//! `RELIABILITY_LONG=1`.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use test_support::http;
use test_support::pipeline::{figures, long, one_at_a_time, settle, Load, Settled};
use test_support::poll::{wait_until, POLL};

use crate::{assert_no_duplicate_seqs, pipeline, CLIENTS, PAUSE};

#[test]
fn fault_mariadb_outage_under_load() {
    let _serial = one_at_a_time();
    let outage = if long() {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(5)
    };
    let p = pipeline("mariadb", &[]);
    let health = format!("http://127.0.0.1:{}/health", p.collector.port);
    let load = Load::start(CLIENTS, PAUSE, Duration::from_secs(240), p.url.clone());
    thread::sleep(Duration::from_secs(2));
    let stored_before = p.db.rows();
    p.proxy.cut();
    let cut_at = Instant::now();
    let unhealthy = wait_until(Duration::from_secs(10), POLL, || {
        matches!(http::get(&health), Ok((503, _)))
    })
    .is_some();
    let mut peak_queue = 0;
    while cut_at.elapsed() < outage {
        peak_queue = peak_queue.max(p.collector.metric("collector_queue_entries", ""));
        thread::sleep(Duration::from_millis(250));
    }
    let stored_during = p.db.rows().saturating_sub(stored_before);
    p.proxy.restore();
    let recovered = wait_until(Duration::from_secs(30), POLL, || {
        matches!(http::get(&health), Ok((200, _)))
    })
    .is_some();
    thread::sleep(Duration::from_secs(2));
    let (served, errors) = load.finish();
    let settled = settle(&p.envoy, &p.db, &p.collector, Duration::from_secs(60));
    let Settled {
        held,
        counts,
        stored,
        collector_dropped,
        ..
    } = settled;
    let lost = settled.lost(0);
    figures(
        "fault_mariadb_outage",
        json!({
            "outage_s": outage.as_secs(),
            "requests_served": served,
            "client_errors": errors,
            "health_503_during_outage": unhealthy,
            "health_200_after": recovered,
            "rows_written_during_outage": stored_during,
            "peak_collector_queue_entries": peak_queue,
            "filter": counts.json(),
            "stored": stored,
            "collector_dropped": collector_dropped,
            "db_errors": p.collector.metric("collector_db_errors_total", ""),
            "identity_holds_exactly": held,
            "lost": lost,
        }),
    );
    assert_eq!(errors, 0, "clients never notice the database");
    assert!(unhealthy && recovered);
    assert!(
        held,
        "{counts:?} stored {stored} collector dropped {collector_dropped}"
    );
    assert_eq!(lost, 0);
    assert_eq!(
        counts.dropped() + collector_dropped,
        0,
        "budget not exceeded: nothing dropped"
    );
    assert_no_duplicate_seqs(&p.db);
}
