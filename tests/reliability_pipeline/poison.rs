//! Fault: the database refuses some rows for good (a trigger on `mcp_gateway_log` rejects
//! every row naming the tool `poison`) while steady load runs. The collector must split the
//! refused batches, keep writing everything else, and keep the refused rows in
//! `mcp_dead_letters`: `emitted = stored + dead letters + dropped`, exactly.

use std::thread;
use std::time::Duration;

use serde_json::json;
use test_support::http;
use test_support::pipeline::{figures, one_at_a_time, settle, Load, Settled, MCP_HEADERS};
use test_support::poll::{wait_until, POLL};

use crate::{assert_no_duplicate_seqs, pipeline, CLIENTS, PAUSE};

const POISON_CALLS: u64 = 20;

fn poison_call(id: u64) -> String {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "poison", "arguments": {}}
    })
    .to_string()
}

#[test]
fn fault_poison_rows_under_load() {
    let _serial = one_at_a_time();
    let p = pipeline("poison", &["--isolate-after-refusals", "2"]);
    let schema_ready = wait_until(Duration::from_secs(20), POLL, || {
        p.db.count(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = 'mcp_dead_letters'",
        ) == 1
    });
    assert!(schema_ready.is_some(), "the collector created its schema");
    // The mysql client splits statements at `;`, hence the delimiter for the trigger body.
    p.db.query(
        "DELIMITER //\n\
         CREATE TRIGGER refuse_poison BEFORE INSERT ON mcp_gateway_log FOR EACH ROW \
         BEGIN IF NEW.tool_name = 'poison' THEN \
         SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by policy'; END IF; END//\n\
         DELIMITER ;",
    );

    let load = Load::start(CLIENTS, PAUSE, Duration::from_secs(120), p.url.clone());
    let url = p.url.lock().unwrap().clone();
    let mut poison_answered = 0;
    for id in 0..POISON_CALLS {
        if let Ok(reply) = http::post(&url, MCP_HEADERS, poison_call(100_000 + id)) {
            poison_answered += u64::from(reply.status == 200);
        }
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_secs(1));
    let (served, errors) = load.finish();
    let settled = settle(&p.envoy, &p.db, &p.collector, Duration::from_secs(60));
    let Settled {
        held,
        counts,
        stored,
        dead_letters,
        collector_dropped,
    } = settled;
    let poison_dead = p.db.count(
        "SELECT COUNT(*) FROM mcp_dead_letters \
         WHERE JSON_VALUE(log, '$.\"gen_ai.tool.name\"') = 'poison' \
         AND reason LIKE '%refused by policy%'",
    );
    let poison_stored =
        p.db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE tool_name = 'poison'");
    let duplicated_across_tables = p.db.count(
        "SELECT COUNT(*) FROM mcp_dead_letters d JOIN mcp_gateway_log l \
         ON l.source = d.source AND l.seq = d.seq",
    );
    let lost = settled.lost(0);
    figures(
        "fault_poison_rows",
        json!({
            "requests_served": served,
            "client_errors": errors,
            "poison_calls_answered": poison_answered,
            "filter": counts.json(),
            "stored": stored,
            "dead_letters": dead_letters,
            "collector_dropped": collector_dropped,
            "collector_dead_letters_metric": p.collector.metric("collector_dead_letters_total", ""),
            "identity_holds_exactly": held,
            "lost": lost,
        }),
    );
    assert_eq!(errors, 0, "clients never notice the refusals");
    assert_eq!(poison_answered, POISON_CALLS);
    assert!(held, "{settled:?}");
    assert_eq!(lost, 0);
    assert!(
        dead_letters >= POISON_CALLS,
        "at least each poison call's request row: {dead_letters}"
    );
    assert_eq!(
        poison_dead, dead_letters,
        "only the refused rows, with the refusal"
    );
    assert_eq!(poison_stored, 0);
    assert_eq!(duplicated_across_tables, 0);
    assert_eq!(
        p.collector.metric("collector_dead_letters_total", ""),
        dead_letters
    );
    assert_no_duplicate_seqs(&p.db);
}
