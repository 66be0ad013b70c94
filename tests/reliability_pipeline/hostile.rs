//! Hostile input through Envoy: clear errors, no trap, the VM keeps serving, bounded
//! state, nothing valid lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::collector::Collector;
use test_support::db::TestDb;
use test_support::envoy::Envoy;
use test_support::http;
use test_support::pipeline::{
    echo_call, figures, one_at_a_time, settle, start_envoy, trap_lines, EnvoyOptions, Settled,
    MCP_HEADERS,
};

use crate::json_server;

/// (name, request headers, body) of one hostile request.
type HostileCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>);
type TextCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);

#[test]
fn hostile_requests_through_envoy_get_clear_errors_and_no_trap() {
    let _serial = one_at_a_time();
    let db = TestDb::create("hostile");
    let collector = Collector::start_pipeline(&db.url(), &[]);
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
    let mut alive = Alive::new(&url);

    let big_header = "h".repeat(100 * 1024);
    let mut outcomes = send_each(&url, &hostile_cases(&big_header), &mut alive);
    let crafted = CraftedIds::send(&envoy, 300);
    outcomes.push(json!({"input": "300 distinct crafted instance ids", "outcome": format!("{} x 404", crafted.refused)}));
    assert_eq!(crafted.refused, 300);
    alive.check("crafted instance ids");

    let settled = settle(&envoy, &db, &collector, Duration::from_secs(60));
    let found = Findings {
        outcomes,
        alive,
        crafted,
        settled,
        traps: trap_lines(&envoy),
        rows: Rows::read(&db),
        instance_labels: instance_labels(&collector),
    };
    figures("hostile_through_envoy", found.figures());
    found.assert_safe();
}

/// Valid requests between the hostile ones: the VM must keep serving after each.
struct Alive<'a> {
    url: &'a str,
    sent: u64,
    ok: u64,
}

impl<'a> Alive<'a> {
    fn new(url: &'a str) -> Self {
        Alive {
            url,
            sent: 0,
            ok: 0,
        }
    }

    fn check(&mut self, label: &str) {
        self.sent += 1;
        let reply = http::post(self.url, MCP_HEADERS, echo_call(self.sent, "alive"))
            .expect("valid request");
        assert_eq!(
            reply.status, 200,
            "VM stopped serving after {label}: {}",
            reply.body
        );
        self.ok += 1;
    }
}

/// Malformed, oversized, deep, mislabelled and forged requests (the 100 KiB header value is
/// the caller's).
fn hostile_cases(big_header: &str) -> Vec<HostileCase<'_>> {
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
            [MCP_HEADERS, &[("x-big", big_header)]].concat(),
            echo_call(1, "x"),
        ),
    ];
    let mut cases: Vec<HostileCase> = text_cases
        .into_iter()
        .map(|(name, headers, body)| (name, headers, body.into_bytes()))
        .collect();
    cases.insert(8, ("invalid UTF-8", MCP_HEADERS.to_vec(), invalid_utf8));
    cases
}

/// Sends each case and checks the VM still serves after it; returns what happened to each.
fn send_each(url: &str, cases: &[HostileCase], alive: &mut Alive) -> Vec<Value> {
    let mut outcomes = Vec::new();
    for (name, headers, body) in cases {
        let started = Instant::now();
        let outcome = match http::post(url, headers, body.as_slice()) {
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
        alive.check(name);
    }

    outcomes
}

/// Instance ids crafted to create state: distinct ones, all refused; Envoy's memory must not
/// grow with them.
struct CraftedIds {
    refused: u32,
    memory_before: u64,
    memory_after: u64,
}

impl CraftedIds {
    fn send(envoy: &Envoy, n: u32) -> CraftedIds {
        let memory = || envoy.stat("server.memory_allocated");
        let memory_before = memory();
        let mut refused = 0;
        for i in 0..n {
            let reply = http::post(
                &envoy.url(&format!("/mcp/crafted-{i}-%27%3B--/mcp")),
                MCP_HEADERS,
                echo_call(1, "x"),
            )
            .expect("request");
            if reply.status == 404 {
                refused += 1;
            }
        }
        CraftedIds {
            refused,
            memory_before,
            memory_after: memory(),
        }
    }

    fn memory_delta(&self) -> i64 {
        self.memory_after as i64 - self.memory_before as i64
    }
}

/// What the database holds after the hostile requests.
struct Rows {
    validation_failed: u64,
    instance_missing: u64,
    forged: u64,
    sql_tool: u64,
    alive: u64,
}

impl Rows {
    fn read(db: &TestDb) -> Rows {
        Rows {
            validation_failed: db.count(
                "SELECT COUNT(*) FROM mcp_gateway_log WHERE event = 'request.validation.failed'",
            ),
            instance_missing: db
                .count("SELECT COUNT(*) FROM mcp_gateway_log WHERE event = 'instance.missing'"),
            forged: db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE source = 'forged-src' OR created_at < '2000-01-01'"),
            sql_tool: db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE tool_name = 'x''); DROP TABLE mcp_gateway_log; --'"),
            alive: db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE event = 'response' AND tool_name = 'echo' AND JSON_VALUE(log, '$.\"mcp.outcome\"') = 'ok'"),
        }
    }
}

/// The `instance` labels of the collector's RED metrics.
fn instance_labels(collector: &Collector) -> BTreeSet<String> {
    collector
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
        .collect()
}

/// Everything the test observed, for the figures and the assertions.
struct Findings<'a> {
    outcomes: Vec<Value>,
    alive: Alive<'a>,
    crafted: CraftedIds,
    settled: Settled,
    traps: Vec<String>,
    rows: Rows,
    instance_labels: BTreeSet<String>,
}

impl Findings<'_> {
    fn figures(&self) -> Value {
        let Settled {
            counts,
            stored,
            dead_letters,
            collector_dropped,
            held,
        } = self.settled;
        json!({
            "inputs_tried": self.outcomes.len(),
            "outcomes": self.outcomes,
            "valid_requests_between": self.alive.sent,
            "valid_requests_ok": self.alive.ok,
            "filter": counts.json(),
            "stored": stored,
            "dead_letters": dead_letters,
            "collector_dropped": collector_dropped,
            "identity_holds": held,
            "lost": self.settled.lost(0),
            "validation_failed_events": self.rows.validation_failed,
            "instance_missing_events": self.rows.instance_missing,
            "forged_rows": self.rows.forged,
            "sql_tool_rows": self.rows.sql_tool,
            "envoy_memory_allocated_delta_bytes_300_crafted_ids": self.crafted.memory_delta(),
            "collector_instance_labels": self.instance_labels.len(),
            "trap_lines": self.traps.len(),
        })
    }

    fn assert_safe(&self) {
        let (traps, counts, stored) = (&self.traps, &self.settled.counts, self.settled.stored);
        let (validation_failed, alive_rows, valid_sent) = (
            self.rows.validation_failed,
            self.rows.alive,
            self.alive.sent,
        );
        let instance_labels = &self.instance_labels;
        let (before, after) = (self.crafted.memory_before, self.crafted.memory_after);
        assert!(
            traps.is_empty(),
            "wasm trap / panic in Envoy log: {traps:#?}"
        );
        assert_eq!(counts.internal_errors, 0, "mcp_filter_internal_errors");
        assert!(
            self.settled.held,
            "identity emitted = stored + dropped: {counts:?} stored {stored}"
        );
        assert_eq!(counts.dropped(), 0);
        assert_eq!(
            self.rows.forged, 0,
            "body fields never become the event's source/seq/ts"
        );
        assert!(
            self.rows.sql_tool >= 1,
            "SQL-looking tool name stored verbatim"
        );
        assert!(
            validation_failed >= 5,
            "invalid bodies logged as invalid: {validation_failed}"
        );
        assert!(self.rows.instance_missing >= 300);
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
}
