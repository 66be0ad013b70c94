//! Faults: the collector SIGTERMed or SIGKILLed under steady load and restarted; what it
//! acknowledged survives (spooled).

use std::thread;
use std::time::Duration;

use serde_json::json;
use test_support::pipeline::{figures, one_at_a_time, settle, FilterCounts, Load, Settled};

use crate::{assert_no_duplicate_seqs, pipeline, CLIENTS, PAUSE, STEADY};

/// Collector shutdown drops reported in the logs of stopped incarnations (their metrics died
/// with them): the `dropped_shutdown=` / `dropped_queue_full=` of the final `ev=shutdown` line.
pub(crate) fn dropped_in_logs(logs: &str) -> u64 {
    logs.lines()
        .filter(|l| l.contains("ev=shutdown") && l.contains("msg=stopped"))
        .map(|l| {
            ["dropped_shutdown=", "dropped_queue_full="]
                .iter()
                .filter_map(|key| {
                    l.split(key)
                        .nth(1)?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .sum::<u64>()
        })
        .sum()
}

fn collector_fault(signal: &str) {
    let mut p = pipeline(&format!("collector_{}", signal.to_lowercase()), &[]);
    let load = Load::start(CLIENTS, PAUSE, Duration::from_secs(120), p.url.clone());
    thread::sleep(STEADY);
    let before = FilterCounts::read(&p.envoy);
    let stored_before = p.db.rows();
    let exit = p.collector.kill_with(signal);
    let served_at_kill = load.ok();
    thread::sleep(Duration::from_secs(2));
    p.collector.restart();
    thread::sleep(STEADY);
    let (served, errors) = load.finish();
    let settled = settle(&p.envoy, &p.db, &p.collector, Duration::from_secs(45));
    let Settled {
        held,
        counts,
        stored,
        collector_dropped: dropped_now,
        ..
    } = settled;
    let dropped_dead = dropped_in_logs(&p.collector.old_logs);
    let collector_dropped = dropped_now + dropped_dead;
    let lost = settled.lost(dropped_dead);
    let accounting = p.collector.accounting();
    let replayed = p
        .collector
        .metric("collector_spool_replayed_events_total", "");
    figures(
        &format!("fault_collector_{}", signal.to_lowercase()),
        json!({
            "signal": signal,
            "exit_code": exit,
            "requests_served": served,
            "requests_served_at_kill": served_at_kill,
            "client_errors": errors,
            "filter_at_kill": before.json(),
            "stored_at_kill": stored_before,
            "filter": counts.json(),
            "stored": stored,
            "collector_dropped": collector_dropped,
            "identity_holds_exactly": held || lost == 0,
            "lost": lost,
            "replayed_from_spool": replayed,
            "accounting_totals_after_restart": accounting["totals"],
        }),
    );
    assert_eq!(errors, 0, "clients never notice the collector");
    assert_eq!(counts.internal_errors, 0);
    assert_no_duplicate_seqs(&p.db);
    assert_eq!(
        lost,
        0,
        "what the collector accepted survives SIG{signal} (spooled)\n{}",
        p.collector.logs()
    );
    assert!(held, "identity holds exactly");
    if signal == "TERM" {
        assert_eq!(
            exit,
            Some(0),
            "SIGTERM drains and exits 0\n{}",
            p.collector.logs()
        );
    }
}

#[test]
fn fault_collector_sigterm_under_load() {
    let _serial = one_at_a_time();
    collector_fault("TERM");
}

#[test]
fn fault_collector_sigkill_under_load() {
    let _serial = one_at_a_time();
    collector_fault("KILL");
}
