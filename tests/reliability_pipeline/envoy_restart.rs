//! Faults: Envoy restarted under load (what the old one had not shipped is measured), and
//! the recommended graceful stop (nothing lost).

use std::thread;
use std::time::Duration;

use std::process::Command;

use serde_json::{json, Value};
use test_support::db::TestDb;
use test_support::envoy::Envoy;
use test_support::http;
use test_support::paths::binary;
use test_support::pipeline::{
    figures, one_at_a_time, per_source, start_envoy, EnvoyOptions, FilterCounts, Load,
};
use test_support::poll::wait_until;

use crate::{assert_no_duplicate_seqs, pipeline, Pipeline, CLIENTS, PAUSE, STEADY};

#[test]
fn fault_envoy_restart_under_load() {
    let _serial = one_at_a_time();
    let p = pipeline("envoy_restart", &[]);
    let Pipeline {
        db,
        proxy: _proxy,
        collector,
        server,
        envoy,
        url,
    } = p;
    let load = Load::start(CLIENTS, PAUSE, Duration::from_secs(120), url.clone());
    thread::sleep(STEADY);
    // Calibrate events per request on the first Envoy, then stop it under load.
    let mut old = envoy;
    let last = FilterCounts::read(&old);
    let served_at_last_scrape = load.ok();
    let old_sources: std::collections::BTreeSet<String> =
        per_source(&db).into_iter().map(|s| s.0).collect();
    old.proc.stop(); // SIGTERM: Envoy exits without draining the filter's buffers
    let served_by_old = load.ok();
    // What the old filter could not ship is in its log, recovered by `host-collector import`.
    let import = recover(&old, &db);
    let new = start_envoy(server.port, collector.port, &EnvoyOptions::default());
    *url.lock().unwrap() = new.url("/mcp/demo/mcp");
    let served_before_new = load.ok();
    thread::sleep(STEADY);
    let (served, errors) = load.finish();
    // The new Envoy's identity must hold exactly.
    let new_rows = || {
        let placeholders: Vec<String> = old_sources.iter().map(|s| format!("'{s}'")).collect();
        db.count(&format!(
            "SELECT COUNT(*) FROM mcp_gateway_log WHERE source NOT IN ({})",
            if placeholders.is_empty() {
                "''".to_string()
            } else {
                placeholders.join(",")
            }
        ))
    };
    let mut new_counts = FilterCounts::default();
    let held = wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
        new_counts = FilterCounts::read(&new);
        new_counts.emitted > 0 && new_counts.emitted == new_rows() + new_counts.dropped()
    })
    .is_some();
    let stored_new = new_rows();
    let stored_old = db.rows() - stored_new;
    // Per old source: seqs the filter says it emitted (its last status record) and did not
    // count as dropped, against distinct seqs stored.
    let mut lost_old = 0i64;
    let sources = import["sources"].as_object().cloned().unwrap_or_default();
    for (source, found) in &sources {
        let emitted = found["emitted"].as_i64().unwrap_or(0);
        let stored = db.count(&format!(
            "SELECT COUNT(DISTINCT seq) FROM mcp_gateway_log WHERE source = '{source}'"
        )) as i64;
        lost_old += emitted - stored;
    }
    let per_request = new_counts.emitted as f64 / (served - served_before_new).max(1) as f64;
    let expected_old = (served_by_old as f64 * per_request).round() as i64;
    figures(
        "fault_envoy_restart",
        json!({
            "mode": "restart (SIGTERM + new process; the harness runs Envoy with --disable-hot-restart)",
            "requests_served": served,
            "requests_served_by_old_envoy": served_by_old,
            "client_errors": errors,
            "old_envoy_last_scrape": last.json(),
            "old_envoy_served_at_last_scrape": served_at_last_scrape,
            "old_envoy_stored": stored_old,
            "old_envoy_unshipped_lower_bound": last.emitted as i64 - stored_old as i64 - last.dropped() as i64,
            "events_per_request": per_request,
            "old_envoy_lost_estimate_before_import": expected_old - stored_old as i64 + import["inserted"].as_i64().unwrap_or(0),
            "import": import,
            "old_envoy_lost_after_import": lost_old,
            "new_envoy": new_counts.json(),
            "new_envoy_stored": stored_new,
            "new_envoy_identity_holds_exactly": held,
        }),
    );
    assert!(held, "new Envoy: {new_counts:?} stored {stored_new}");
    for source in &old_sources {
        assert!(
            sources[source]["emitted"].is_u64(),
            "old VM {source} wrote its status record: {import}"
        );
    }
    assert_eq!(
        lost_old, 0,
        "nothing the old Envoy emitted is lost: {import}"
    );
    assert_no_duplicate_seqs(&db);
}

/// Runs `host-collector import` on the stopped Envoy's log; returns its report.
fn recover(envoy: &Envoy, db: &TestDb) -> Value {
    let out = Command::new(binary("host-collector"))
        .arg("import")
        .args(["--database-url", &db.url()])
        .arg(envoy.log_path())
        .output()
        .expect("host-collector import runs");
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

/// The stop procedure docs/reliability.md recommends: move traffic to the new Envoy (a load
/// balancer would), drain the old one's listeners, wait until its filter stats say every
/// event was shipped (`emitted = shipped + dropped`, nothing in flight), then SIGTERM it.
/// Nothing may be lost.
#[test]
fn fault_envoy_graceful_stop_under_load() {
    let _serial = one_at_a_time();
    let p = pipeline("envoy_graceful", &[]);
    let load = Load::start(CLIENTS, PAUSE, Duration::from_secs(120), p.url.clone());
    thread::sleep(STEADY);
    let mut old = p.envoy;
    let new = start_envoy(p.server.port, p.collector.port, &EnvoyOptions::default());
    *p.url.lock().unwrap() = new.url("/mcp/demo/mcp");
    let drain = http::request("POST", &old.admin_url("/drain_listeners?graceful"), &[], "")
        .expect("drain_listeners");
    assert_eq!(drain.status, 200, "{}", drain.body);
    let mut old_counts = FilterCounts::default();
    let shipped = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let before = FilterCounts::read(&old);
        let quiet = before.emitted > 0
            && before.emitted == before.shipped + before.dropped()
            && old.stat_sum("mcp_filter_batches_in_flight") == 0;
        // Read twice: a request still in flight on the old Envoy would change the counts.
        old_counts = FilterCounts::read(&old);
        quiet && old_counts == before
    })
    .is_some();
    old.proc.stop();
    thread::sleep(Duration::from_secs(2));
    let (served, errors) = load.finish();
    let mut new_counts = FilterCounts::default();
    let held = wait_until(Duration::from_secs(30), Duration::from_millis(250), || {
        new_counts = FilterCounts::read(&new);
        let accounted = old_counts.emitted + new_counts.emitted;
        let dropped = old_counts.dropped() + new_counts.dropped();
        new_counts.emitted > 0 && accounted == p.db.rows() + dropped
    })
    .is_some();
    let stored = p.db.rows();
    let lost = (old_counts.emitted + new_counts.emitted) as i64
        - (stored + old_counts.dropped() + new_counts.dropped()) as i64;
    figures(
        "fault_envoy_graceful_stop",
        json!({
            "mode": "traffic moved to a new Envoy, old drained, stopped once its filter stats showed everything shipped",
            "requests_served": served,
            "client_errors": errors,
            "old_envoy": old_counts.json(),
            "old_envoy_everything_shipped_before_stop": shipped,
            "new_envoy": new_counts.json(),
            "stored": stored,
            "lost": lost,
        }),
    );
    assert!(
        shipped,
        "the old Envoy's filter shipped everything: {old_counts:?}"
    );
    assert!(
        held,
        "identity: old {old_counts:?} new {new_counts:?} stored {stored}"
    );
    assert_eq!(lost, 0);
    assert_eq!(errors, 0, "clients moved before the old Envoy stopped");
    assert_no_duplicate_seqs(&p.db);
}
