//! Reliability and security through the whole pipeline: rmcp demo server <- real Envoy (2
//! workers) with the filter -> host-collector (a real process) -> MariaDB (a database of the
//! test's own on the shared server, optionally behind a TCP proxy the test cuts).
//!
//! - secrets: known credentials and redacted argument values never reach the database,
//!   Envoy's log or the collector's log;
//! - hostile requests through Envoy: clear errors, no trap, the VM keeps serving, bounded
//!   state, nothing valid lost;
//! - faults under steady load: collector SIGTERM, collector SIGKILL, MCP upstream killed
//!   mid-SSE, MariaDB down for 5 s (60 s with RELIABILITY_LONG=1), Envoy restarted.
//!
//! For each fault the test prints a `RELIABILITY {json}` line: requests served, errors seen by
//! clients, events emitted / stored / dropped by reason, and events lost
//! (`emitted - stored - dropped`), which must be 0 wherever no budget was exceeded (a
//! SIGKILLed collector replays what it acknowledged from its spool). Losses the design cannot
//! prevent (a stopped Envoy's unshipped buffer) are measured and reported, not hidden.
//! docs/reliability.md.
//!
//! Run: `make test-reliability` (builds the filter, the collector and the demo peers first).
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod filter_host;
mod pipeline_host;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pipeline_host::*;
use serde_json::{json, Value};
use support::{demo_bin, free_port, wait_until, DemoKind, DemoServer, Proc, TestDir, POLL};

/// (name, request headers, body) of one hostile request.
type HostileCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>);
type TextCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);

fn json_server() -> DemoServer {
    DemoServer::start(DemoKind::Streamable {
        json_response: true,
        stateless: true,
    })
}

/// POST that returns once the response is complete (see `fast_post`).
fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> std::io::Result<support::HttpResponse> {
    fast_post(url, headers, body).map(|(status, body)| support::HttpResponse {
        status,
        headers: Vec::new(),
        body,
    })
}

/// Collector shutdown drops reported in the logs of stopped incarnations (their metrics died
/// with them): the `dropped_shutdown=` / `dropped_queue_full=` of the final `ev=shutdown` line.
fn dropped_in_logs(logs: &str) -> u64 {
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

fn assert_no_duplicate_seqs(db: &Database) {
    for (source, rows, distinct, _) in per_source(db) {
        assert_eq!(rows, distinct, "source {source}: a seq stored twice");
    }
}

// ---------------------------------------------------------------------------
// 5. Secrets
// ---------------------------------------------------------------------------

#[test]
fn secrets_never_reach_the_database_or_any_log() {
    let _serial = one_at_a_time();
    let db = Database::create("secrets");
    let dir = TestDir::new("rel-secrets");
    let collector = Collector::start(&db.url_via(3306), &["--log-level", "debug"], &dir);
    let server = json_server();
    let envoy = start_envoy(
        server.port,
        collector.port,
        &EnvoyOptions {
            log_events: true,
            ..EnvoyOptions::default()
        },
    );
    let url = envoy.url("/mcp/demo/mcp");

    let bearer = "sk-live-CANARY-bearer-5f1d9a7c3e";
    let api_key = "CANARY-x-api-key-8b2e6d4f0a";
    let proxy_auth = "CANARY-proxy-auth-1c3e5a7b9d";
    let password = "CANARY-password-hunter2-4e6a";
    let nested_token = "CANARY-nested-token-7d9b1f3a5c";
    let client_secret = "CANARY-client-secret-2a4c6e8f0b";
    let cookie = "CANARY-cookie-session-9e7c5a3b1d";
    let visible = "visible-control-text-3b5d7f";
    let canaries = [
        bearer,
        api_key,
        proxy_auth,
        password,
        nested_token,
        client_secret,
        cookie,
    ];

    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {
            "text": visible,
            "password": password,
            "Nested": {"TOKEN": nested_token, "deeper": [{"client_secret": client_secret}]},
            "cookie": cookie,
        }}
    })
    .to_string();
    let auth = format!("Bearer {bearer}");
    let mut sent = 0;
    for headers in [
        vec![("authorization", auth.as_str())],
        vec![("x-api-key", api_key)],
        vec![("proxy-authorization", proxy_auth)],
        vec![("authorization", auth.as_str()), ("x-api-key", api_key)],
    ] {
        let mut all = MCP_HEADERS.to_vec();
        all.extend(headers);
        for _ in 0..3 {
            let reply = post(&url, &all, &body).expect("request");
            assert!(reply.status < 500, "{}", reply.status);
            sent += 1;
        }
    }
    let (held, counts, stored, _) = settle(&envoy, &db, &collector, Duration::from_secs(30));
    assert!(held, "identity: {counts:?} stored {stored}");

    // Envoy flushes its log file every 10 s by default: wait until the events are there, so
    // the search below is not vacuous.
    assert!(
        wait_until(Duration::from_secs(20), POLL, || envoy
            .log_text()
            .contains(visible))
        .is_some(),
        "events never reached Envoy's log"
    );
    // The whole database: every table, every column.
    let tables = db.query("SHOW TABLES");
    let mut dump = String::new();
    for table in tables.lines() {
        dump.push_str(&db.query(&format!("SELECT * FROM `{table}`")));
        dump.push('\n');
    }
    let surfaces = [
        ("database", dump.clone()),
        ("envoy log", envoy.log_text()),
        ("envoy stdout/stderr", envoy.proc.logs()),
        ("collector log", collector.logs()),
    ];
    let mut hits = Vec::new();
    for (name, text) in &surfaces {
        for canary in canaries {
            let n = text.matches(canary).count();
            if n > 0 {
                hits.push(format!("{canary} x{n} in {name}"));
            }
        }
    }
    // Positive controls: the search would have found them (the non-secret argument is there,
    // redaction marks are there, fingerprints are there).
    assert!(
        dump.contains(visible),
        "captured arguments reach the database"
    );
    assert!(dump.contains("[REDACTED]"), "redaction marks stored");
    assert!(
        envoy.log_text().contains(visible),
        "events are in Envoy's log"
    );
    let fingerprints =
        db.count("SELECT COUNT(DISTINCT token) FROM mcp_gateway_log WHERE token LIKE 'sha256:%'");
    figures(
        "secrets",
        json!({
            "requests": sent,
            "canaries": canaries.len(),
            "surfaces": surfaces.iter().map(|(n, t)| json!({"surface": n, "bytes": t.len()})).collect::<Vec<_>>(),
            "rows": stored,
            "distinct_fingerprints": fingerprints,
            "hits": hits.len(),
        }),
    );
    assert!(hits.is_empty(), "secrets found: {hits:#?}");
}

// ---------------------------------------------------------------------------
// 3. Hostile input through Envoy
// ---------------------------------------------------------------------------

#[test]
fn hostile_requests_through_envoy_get_clear_errors_and_no_trap() {
    let _serial = one_at_a_time();
    let db = Database::create("hostile");
    let dir = TestDir::new("rel-hostile");
    let collector = Collector::start(&db.url_via(3306), &[], &dir);
    let server = json_server();
    let envoy = start_envoy(
        server.port,
        collector.port,
        &EnvoyOptions {
            validation: "reject",
            ..EnvoyOptions::default()
        },
    );
    let url = envoy.url("/mcp/demo/mcp");
    let mut outcomes = Vec::new();
    let mut valid_sent = 0u64;
    let mut valid_ok = 0u64;
    let mut check_alive = |label: &str| {
        valid_sent += 1;
        let reply = post(&url, MCP_HEADERS, echo_call(valid_sent, "alive")).expect("valid request");
        assert_eq!(
            reply.status, 200,
            "VM stopped serving after {label}: {}",
            reply.body
        );
        valid_ok += 1;
    };

    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep_args = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"x","deep":{}}}}}}}"#,
        deep(50_000)
    );
    let deep_obj_args = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"x","deep":{}1{}}}}}}}"#,
        "{\"a\":".repeat(20_000),
        "}".repeat(20_000)
    );
    let mut invalid_utf8 =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ec"#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid_utf8.extend_from_slice(br#"ho"}}"#);
    let batch_10k = format!(
        "[{}]",
        (0..10_000)
            .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "A".repeat(4 * 1024 * 1024)
    );
    let sql_tool = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x'); DROP TABLE mcp_gateway_log; --","arguments":{}}}"#;
    let forged = r#"{"jsonrpc":"2.0","id":1,"method":"ping","source":"forged-src","seq":1,"ts":"1999-01-01T00:00:00Z","event":"response","kind":"status","dropped":{"buffer_full":99}}"#;
    let big_header = "h".repeat(100 * 1024);
    let text_cases: Vec<TextCase> = vec![
        ("malformed JSON", MCP_HEADERS.to_vec(), "{not json".into()),
        (
            "truncated JSON",
            MCP_HEADERS.to_vec(),
            r#"{"jsonrpc":"2.0","id":1,"method":"#.into(),
        ),
        ("empty body", MCP_HEADERS.to_vec(), String::new()),
        ("empty batch", MCP_HEADERS.to_vec(), "[]".into()),
        (
            "not JSON-RPC 2.0",
            MCP_HEADERS.to_vec(),
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#.into(),
        ),
        ("nested arrays 100k", MCP_HEADERS.to_vec(), deep(100_000)),
        (
            "deep arrays in arguments 50k",
            MCP_HEADERS.to_vec(),
            deep_args,
        ),
        (
            "deep objects in arguments 20k",
            MCP_HEADERS.to_vec(),
            deep_obj_args,
        ),
        (
            "text/plain",
            vec![("content-type", "text/plain")],
            echo_call(1, "x"),
        ),
        ("no content type", vec![], echo_call(1, "x")),
        ("batch of 10 000", MCP_HEADERS.to_vec(), batch_10k),
        ("4 MiB body (cap 1 MiB)", MCP_HEADERS.to_vec(), huge),
        (
            "SQL-looking tool name",
            MCP_HEADERS.to_vec(),
            sql_tool.into(),
        ),
        (
            "forged source/seq/kind fields",
            MCP_HEADERS.to_vec(),
            forged.into(),
        ),
        (
            "garbage traceparent",
            [MCP_HEADERS, &[("traceparent", "00-zzzz-\u{7f}-01")]].concat(),
            echo_call(1, "x"),
        ),
        (
            "Mcp-Method header mismatch",
            [MCP_HEADERS, &[("mcp-method", "tools/list")]].concat(),
            echo_call(1, "x"),
        ),
        (
            "100 KiB header",
            [MCP_HEADERS, &[("x-big", big_header.as_str())]].concat(),
            echo_call(1, "x"),
        ),
    ];
    let mut cases: Vec<HostileCase> = text_cases
        .into_iter()
        .map(|(name, headers, body)| (name, headers, body.into_bytes()))
        .collect();
    cases.insert(8, ("invalid UTF-8", MCP_HEADERS.to_vec(), invalid_utf8));
    for (name, headers, body) in &cases {
        let started = Instant::now();
        let outcome = match post(&url, headers, body.as_slice()) {
            Ok(r) => {
                assert!(
                    r.status != 500 && r.status != 502,
                    "{name}: no internal error from the gateway: {} {}",
                    r.status,
                    &r.body[..r.body.len().min(300)]
                );
                let code = serde_json::from_str::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_i64());
                format!(
                    "{}{}",
                    r.status,
                    code.map(|c| format!(" jsonrpc {c}")).unwrap_or_default()
                )
            }
            Err(e) => format!("connection error: {e}"),
        };
        outcomes.push(
            json!({"input": name, "outcome": outcome, "ms": started.elapsed().as_millis() as u64}),
        );
        check_alive(name);
    }

    // Instance ids crafted to create state: 300 distinct ones, all refused; Envoy's memory
    // must not grow with them.
    let memory = || envoy.stat("server.memory_allocated");
    let before = memory();
    let mut refused = 0;
    for i in 0..300 {
        let reply = post(
            &envoy.url(&format!("/mcp/crafted-{i}-%27%3B--/mcp")),
            MCP_HEADERS,
            echo_call(1, "x"),
        )
        .expect("request");
        if reply.status == 404 {
            refused += 1;
        }
    }
    let after = memory();
    outcomes.push(json!({"input": "300 distinct crafted instance ids", "outcome": format!("{refused} x 404")}));
    assert_eq!(refused, 300);
    check_alive("crafted instance ids");

    let (held, counts, stored, collector_dropped) =
        settle(&envoy, &db, &collector, Duration::from_secs(60));
    let traps = trap_lines(&envoy);
    let validation_failed =
        db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE event = 'request.validation.failed'");
    let instance_missing =
        db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE event = 'instance.missing'");
    let forged_rows = db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE source = 'forged-src' OR created_at < '2000-01-01'");
    let sql_rows = db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE tool_name = 'x''); DROP TABLE mcp_gateway_log; --'");
    let alive_rows = db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE event = 'response' AND tool_name = 'echo' AND JSON_VALUE(log, '$.\"mcp.outcome\"') = 'ok'");
    let instance_labels = collector
        .metrics()
        .lines()
        .filter(|l| l.starts_with("mcp_server_operations_total{"))
        .filter_map(|l| {
            l.split("instance=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_string)
        })
        .collect::<std::collections::BTreeSet<_>>();
    figures(
        "hostile_through_envoy",
        json!({
            "inputs_tried": outcomes.len(),
            "outcomes": outcomes,
            "valid_requests_between": valid_sent,
            "valid_requests_ok": valid_ok,
            "filter": counts.json(),
            "stored": stored,
            "collector_dropped": collector_dropped,
            "identity_holds": held,
            "lost": counts.emitted as i64 - (stored + counts.dropped() + collector_dropped) as i64,
            "validation_failed_events": validation_failed,
            "instance_missing_events": instance_missing,
            "forged_rows": forged_rows,
            "sql_tool_rows": sql_rows,
            "envoy_memory_allocated_delta_bytes_300_crafted_ids": after as i64 - before as i64,
            "collector_instance_labels": instance_labels.len(),
            "trap_lines": traps.len(),
        }),
    );
    assert!(
        traps.is_empty(),
        "wasm trap / panic in Envoy log: {traps:#?}"
    );
    assert_eq!(counts.internal_errors, 0, "mcp_filter_internal_errors");
    assert!(
        held,
        "identity emitted = stored + dropped: {counts:?} stored {stored}"
    );
    assert_eq!(counts.dropped(), 0);
    assert_eq!(
        forged_rows, 0,
        "body fields never become the event's source/seq/ts"
    );
    assert!(sql_rows >= 1, "SQL-looking tool name stored verbatim");
    assert!(
        validation_failed >= 5,
        "invalid bodies logged as invalid: {validation_failed}"
    );
    assert!(instance_missing >= 300);
    assert!(
        alive_rows >= valid_sent,
        "every valid request logged: {alive_rows} < {valid_sent}"
    );
    assert!(
        instance_labels.len() <= 2,
        "refused instances create no metric labels: {instance_labels:?}"
    );
    assert!(
        after <= before + 8 * 1024 * 1024,
        "Envoy memory grew by {} bytes",
        after as i64 - before as i64
    );
}

// ---------------------------------------------------------------------------
// 1. Faults: the collector
// ---------------------------------------------------------------------------

struct Pipeline {
    db: Database,
    dir: TestDir,
    proxy: DbProxy,
    collector: Collector,
    server: DemoServer,
    envoy: support::Envoy,
    url: Arc<Mutex<String>>,
}

fn pipeline(label: &str, collector_extra: &[&str]) -> Pipeline {
    let db = Database::create(label);
    let dir = TestDir::new(&format!("rel-{label}"));
    let proxy = DbProxy::start(3306);
    let collector = Collector::start(&db.url_via(proxy.port), collector_extra, &dir);
    let server = json_server();
    let envoy = start_envoy(server.port, collector.port, &EnvoyOptions::default());
    let url = Arc::new(Mutex::new(envoy.url("/mcp/demo/mcp")));
    Pipeline {
        db,
        dir,
        proxy,
        collector,
        server,
        envoy,
        url,
    }
}

const CLIENTS: usize = 2;
const PAUSE: Duration = Duration::from_millis(10);

fn collector_fault(signal: &str) {
    let mut p = pipeline(&format!("collector_{}", signal.to_lowercase()), &[]);
    let load = Load::start(CLIENTS, PAUSE, Duration::from_secs(120), p.url.clone());
    thread::sleep(Duration::from_secs(3));
    let before = FilterCounts::read(&p.envoy);
    let stored_before = p.db.rows();
    let exit = p.collector.kill_with(signal);
    let served_at_kill = load.ok();
    thread::sleep(Duration::from_secs(2));
    p.collector.spawn(&p.dir);
    thread::sleep(Duration::from_secs(3));
    let (served, errors) = load.finish();
    let (held, counts, stored, dropped_now) =
        settle(&p.envoy, &p.db, &p.collector, Duration::from_secs(45));
    let dropped_dead = dropped_in_logs(&p.collector.old_logs);
    let collector_dropped = dropped_now + dropped_dead;
    let lost = counts.emitted as i64 - (stored + counts.dropped() + collector_dropped) as i64;
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

// ---------------------------------------------------------------------------
// 1. Faults: MariaDB stopped under steady load
// ---------------------------------------------------------------------------

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
        matches!(support::http_get(&health), Ok((503, _)))
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
        matches!(support::http_get(&health), Ok((200, _)))
    })
    .is_some();
    thread::sleep(Duration::from_secs(2));
    let (served, errors) = load.finish();
    let (held, counts, stored, collector_dropped) =
        settle(&p.envoy, &p.db, &p.collector, Duration::from_secs(60));
    let lost = counts.emitted as i64 - (stored + counts.dropped() + collector_dropped) as i64;
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

// ---------------------------------------------------------------------------
// 1. Faults: the MCP upstream killed mid-SSE stream
// ---------------------------------------------------------------------------

/// A demo server on a fixed port (so Envoy's static cluster finds it again after a restart).
fn demo_on(port: u16, dir: &TestDir, n: u32) -> Proc {
    let mut command = Command::new(demo_bin("demo-mcp-server"));
    command.args(["--listen", &format!("127.0.0.1:{port}"), "--stateless"]);
    let mut proc = Proc::spawn(&format!("demo-{n}"), command, &dir.path).expect("spawn demo");
    let health = format!("http://127.0.0.1:{port}/healthz");
    let up = wait_until(Duration::from_secs(30), POLL, || {
        proc.assert_running();
        matches!(support::http_get(&health), Ok((200, _)))
    });
    assert!(up.is_some(), "demo server not healthy\n{}", proc.logs());
    proc
}

#[test]
fn fault_upstream_killed_mid_sse_stream() {
    let _serial = one_at_a_time();
    let db = Database::create("sse");
    let dir = TestDir::new("rel-sse");
    let collector = Collector::start(&db.url_via(3306), &[], &dir);
    let port = free_port();
    let mut server = demo_on(port, &dir, 1);
    let envoy = start_envoy(port, collector.port, &EnvoyOptions::default());
    let url = envoy.url("/mcp/demo/mcp");

    // A long SSE stream: 500 progress notifications, 20 ms apart.
    let body = json!({
        "jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "progress", "arguments": {"steps": 500}, "_meta": {"progressToken": "p1"}}
    })
    .to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", envoy.listener_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(
        stream,
        "POST /mcp/demo/mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    let mut killed = false;
    let mut read_error = None;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        }
        let text = String::from_utf8_lossy(&received);
        if !killed && text.matches("data:").count() >= 5 {
            // SIGKILL: no FIN from a graceful shutdown, the stream just breaks.
            let _ = Command::new("kill")
                .args(["-KILL", &server.pid().to_string()])
                .status();
            killed = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "stream never ended"
        );
    }
    assert!(
        killed,
        "the stream never started: {}",
        String::from_utf8_lossy(&received)
    );
    let text = String::from_utf8_lossy(&received).to_string();
    let messages_seen = text.matches("data:").count();
    let clean_end = text.ends_with("0\r\n\r\n");
    let status_line = text.lines().next().unwrap_or("").to_string();

    // While the upstream is down: clear errors, no hang.
    let mut down_errors = Vec::new();
    for i in 0..5 {
        let r = post(&url, MCP_HEADERS, echo_call(i, "down")).expect("answered");
        down_errors.push(r.status);
    }
    server.stop();
    let _server2 = demo_on(port, &dir, 2);
    let ok_after = (0..20)
        .filter(|i| {
            let body = echo_call(*i, "after");
            wait_until(Duration::from_secs(5), POLL, || {
                post(&url, MCP_HEADERS, &body).is_ok_and(|r| r.status == 200)
            })
            .is_some()
        })
        .count();

    let (held, counts, stored, collector_dropped) =
        settle(&envoy, &db, &collector, Duration::from_secs(30));
    let outcome = db.query(
        "SELECT JSON_VALUE(log, '$.\"mcp.outcome\"') FROM mcp_gateway_log WHERE event = 'response' AND JSON_VALUE(log, '$.\"jsonrpc.request.id\"') = '42'",
    );
    let interrupted = db.count(
        "SELECT COUNT(*) FROM mcp_gateway_log WHERE event = 'upstream.connection.interrupted'",
    );
    let traps = trap_lines(&envoy);
    figures(
        "fault_upstream_killed_mid_sse",
        json!({
            "client_status_line": status_line,
            "client_sse_messages_before_break": messages_seen,
            "client_saw_clean_chunked_end": clean_end,
            "client_read_error": read_error,
            "requests_while_upstream_down": down_errors,
            "requests_ok_after_restart": ok_after,
            "response_outcome_of_broken_stream": outcome,
            "upstream_connection_interrupted_events": interrupted,
            "filter": counts.json(),
            "stored": stored,
            "collector_dropped": collector_dropped,
            "identity_holds_exactly": held,
            "lost": counts.emitted as i64 - (stored + counts.dropped() + collector_dropped) as i64,
            "trap_lines": traps.len(),
        }),
    );
    assert!(status_line.contains("200"), "{status_line}");
    assert!(
        !clean_end,
        "a broken stream must not look complete to the client"
    );
    assert!(down_errors.iter().all(|s| *s == 503), "{down_errors:?}");
    assert_eq!(ok_after, 20);
    assert_eq!(
        outcome.trim(),
        "upstream_interrupted",
        "the broken stream's outcome"
    );
    assert!(interrupted >= 1);
    assert!(traps.is_empty(), "{traps:#?}");
    assert_eq!(counts.internal_errors, 0);
    assert!(held, "{counts:?} stored {stored}");
}

// ---------------------------------------------------------------------------
// 1. Faults: Envoy restarted under load
// ---------------------------------------------------------------------------

#[test]
fn fault_envoy_restart_under_load() {
    let _serial = one_at_a_time();
    let p = pipeline("envoy_restart", &[]);
    let Pipeline {
        db,
        dir: _dir,
        proxy: _proxy,
        collector,
        server,
        envoy,
        url,
    } = p;
    let load = Load::start(CLIENTS, PAUSE, Duration::from_secs(120), url.clone());
    thread::sleep(Duration::from_secs(3));
    // Calibrate events per request on the first Envoy, then stop it under load.
    let mut old = envoy;
    let last = FilterCounts::read(&old);
    let served_at_last_scrape = load.ok();
    let old_sources: std::collections::BTreeSet<String> =
        per_source(&db).into_iter().map(|s| s.0).collect();
    old.proc.stop(); // SIGTERM: Envoy exits without draining the filter's buffers
    let served_by_old = load.ok();
    let new = start_envoy(server.port, collector.port, &EnvoyOptions::default());
    *url.lock().unwrap() = new.url("/mcp/demo/mcp");
    let served_before_new = load.ok();
    thread::sleep(Duration::from_secs(3));
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
            "old_envoy_lost_estimate": expected_old - stored_old as i64,
            "new_envoy": new_counts.json(),
            "new_envoy_stored": stored_new,
            "new_envoy_identity_holds_exactly": held,
        }),
    );
    assert!(held, "new Envoy: {new_counts:?} stored {stored_new}");
    assert_no_duplicate_seqs(&db);
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
    thread::sleep(Duration::from_secs(3));
    let mut old = p.envoy;
    let new = start_envoy(p.server.port, p.collector.port, &EnvoyOptions::default());
    *p.url.lock().unwrap() = new.url("/mcp/demo/mcp");
    let drain = support::http_request(
        "POST",
        &old.admin_url("/drain_listeners?graceful"),
        &[],
        None,
    )
    .expect("drain_listeners");
    assert_eq!(drain.status, 200, "{}", drain.body);
    let mut old_counts = FilterCounts::default();
    let shipped = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let before = FilterCounts::read(&old);
        let quiet = before.emitted > 0
            && before.emitted == before.shipped + before.dropped()
            && stat_sum(&old, "mcp_filter_batches_in_flight") == 0;
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

// ---------------------------------------------------------------------------
// 2. Floods: ingest above the write rate until the budget is hit
// ---------------------------------------------------------------------------

/// `VmRSS` / `VmHWM` of a process, in bytes.
fn memory_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A ~450-byte `response` event, like the filter's.
fn flood_event(seq: u64) -> String {
    format!(
        r#"{{"ts":"2026-11-22T02:53:34.{:06}Z","source":"flood-vm","seq":{seq},"event":"response","level":"info","message":"tools/call completed","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","instance_id":"demo","mcp.method.name":"tools/call","gen_ai.tool.name":"search_documents","token_header":"authorization","token":"sha256:9f86d081884c","jsonrpc.request.id":"{seq}","mcp.session.id":"3c9a1f2e-5d4b-4a7e-9c1d-2b8e7f6a5c4d","rpc.response.status_code":200,"duration_ms":12.5}}"#,
        seq % 1_000_000
    )
}

/// The database is cut and the collector (a 16 MiB queue budget) is sent about 3x its budget:
/// the queue stays within the budget, memory within budget plus a stated overhead, the spool
/// on disk within about the queue's size, every eviction is counted, and once the database is
/// back exactly the newest events are stored, in order.
#[test]
fn flood_above_the_write_rate_keeps_the_budget_and_the_newest_events() {
    let _serial = one_at_a_time();
    const BUDGET: u64 = 16 * 1024 * 1024;
    const PER_REQUEST: u64 = 200;
    const REQUESTS: u64 = 300; // 60 000 events, ~51 MiB charged: about 3x the budget
    let db = Database::create("flood");
    let dir = TestDir::new("rel-flood");
    let proxy = DbProxy::start(3306);
    let collector = Collector::start(&db.url_via(proxy.port), &["--queue-budget", "16MiB"], &dir);
    proxy.cut();
    let pid = collector.pid();
    let idle_rss = memory_of(pid, "VmRSS:");
    let url = format!("http://127.0.0.1:{}/v1/logs", collector.port);
    let auth = format!("Bearer {COLLECTOR_TOKEN}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-ndjson"),
    ];
    let (mut accepted, mut max_queue, mut max_spool) = (0u64, 0u64, 0u64);
    for request in 0..REQUESTS {
        let first = request * PER_REQUEST + 1;
        let body: String = (first..first + PER_REQUEST)
            .map(|seq| flood_event(seq) + "\n")
            .collect();
        let (status, reply) = fast_post(&url, &headers, body).expect("POST");
        assert_eq!(status, 200, "{reply}");
        let reply: Value = serde_json::from_str(&reply).expect("JSON reply");
        accepted += reply["accepted"].as_u64().unwrap_or(0);
        if request % 20 == 19 {
            let metrics = collector.metrics();
            max_queue = max_queue.max(sum_metric(&metrics, "collector_queue_bytes", ""));
            max_spool = max_spool.max(sum_metric(&metrics, "collector_spool_bytes", ""));
        }
    }
    let sent = REQUESTS * PER_REQUEST;
    let peak_rss = memory_of(pid, "VmHWM:");
    let dropped = collector.metric("collector_dropped_events_total", "reason=\"queue_full\"");
    let held = collector.metric("collector_queue_entries", "");
    proxy.restore();
    let drained = wait_until(Duration::from_secs(120), Duration::from_millis(250), || {
        collector.metric("collector_queue_entries", "") == 0 && db.rows() == sent - dropped
    })
    .is_some();
    let stored = db.rows();
    let seqs_in_write_order: Vec<u64> = db
        .query("SELECT seq FROM mcp_gateway_log ORDER BY id")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    // The batch the writer held when the database went away is never evicted (it is being
    // written); every other survivor must be among the newest.
    let older_than_newest = seqs_in_write_order
        .iter()
        .filter(|s| **s <= dropped)
        .count() as u64;
    let newest_from = dropped + older_than_newest + 1;
    let newest_kept = seqs_in_write_order
        .iter()
        .filter(|s| **s >= newest_from)
        .count() as u64;
    let spool_left = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        collector.metric("collector_spool_bytes", "") == 0
    })
    .is_some();
    let overhead = peak_rss.saturating_sub(idle_rss);
    figures(
        "flood_above_write_rate",
        json!({
            "budget_bytes": BUDGET,
            "events_sent": sent,
            "accepted": accepted,
            "dropped_queue_full": dropped,
            "held_at_end_of_flood": held,
            "stored_after_restore": stored,
            "stored_from_the_batch_in_flight_at_the_cut": older_than_newest,
            "stored_newest_from_seq": newest_from,
            "max_queue_bytes": max_queue,
            "max_spool_bytes": max_spool,
            "idle_rss_bytes": idle_rss,
            "peak_rss_bytes": peak_rss,
            "rss_growth_over_budget": overhead as f64 / BUDGET as f64,
        }),
    );
    assert_eq!(accepted, sent, "ingest never refuses while the queue sheds");
    assert!(dropped > 0, "the flood exceeded the budget");
    assert_eq!(
        held + dropped,
        sent,
        "every event is held or counted as dropped"
    );
    assert!(max_queue <= BUDGET, "queue {max_queue} over budget");
    assert!(
        overhead <= BUDGET * 3 / 2 + 24 * 1024 * 1024,
        "RSS grew {overhead} bytes: more than 1.5x the budget plus 24 MiB (runtime, HTTP buffers, debug build)"
    );
    assert!(
        max_spool <= 2 * BUDGET + 16 * 1024 * 1024,
        "spool {max_spool} bytes: more than twice the budget plus one segment"
    );
    assert!(drained, "stored {stored} of {} kept events", sent - dropped);
    assert!(
        older_than_newest <= 1000,
        "only the batch in flight (at most --batch-max-rows) survives from the old events: {older_than_newest}"
    );
    assert_eq!(
        newest_kept,
        sent - newest_from + 1,
        "drop-oldest kept exactly the newest events, seqs {newest_from}..={sent}"
    );
    assert!(
        seqs_in_write_order.windows(2).all(|w| w[0] < w[1]),
        "written in order"
    );
    assert_no_duplicate_seqs(&db);
    assert!(spool_left, "the spool empties once everything is written");
}
