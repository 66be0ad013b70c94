//! Hostile input aimed straight at the collector (no Envoy in front): malformed, deeply nested
//! and huge bodies, invalid UTF-8, wrong content types, 10 000-line batches, forged `source` /
//! `seq` / status counters, SQL-looking strings, state-creating ids, missing or wrong tokens.
//! Every input must get a clear answer (a status code or a per-line rejection), nothing valid
//! sent alongside may be lost, the process must keep serving, per-source state must stay
//! bounded, and neither `/health` nor `/metrics` may leak the token or the database password.
//!
//! Each test prints one `RELIABILITY {json}` line with its figures (see docs/reliability.md).
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use host_collector::app::Running;
use test_support::collector::{
    event, events, get, post, sample_value, start, Collector, COLLECTOR_TOKEN,
};
use test_support::db::with_mariadb;
use test_support::http;
use test_support::pipeline::figures;
use test_support::poll::eventually;

async fn raw(running: &Running, headers: &[(&str, &str)], body: Vec<u8>) -> http::HttpResponse {
    http::request_at(running.addr, "POST", "/v1/logs", headers, body)
        .await
        .expect("POST /v1/logs answered")
}

/// Status of a POST whose head declares `length` bytes, without sending the body.
async fn declared_length_status(running: &Running, length: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(running.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: collector\r\nauthorization: Bearer {COLLECTOR_TOKEN}\r\n\
         content-type: application/x-ndjson\r\ncontent-length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    let mut reply = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut reply))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&reply[..n]).into_owned();
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

async fn metrics_text(running: &Running) -> String {
    let reply = http::request_at(running.metrics_addr, "GET", "/metrics", &[], Vec::new())
        .await
        .expect("GET /metrics");
    assert_eq!(reply.status, 200);
    reply.body.clone()
}

fn metric_value(text: &str, sample: &str) -> f64 {
    sample_value(text, sample).unwrap_or(0.0)
}

/// One tried input and what happened, for the figures.
#[derive(Default)]
struct Tally {
    outcomes: Vec<serde_json::Value>,
}

impl Tally {
    fn record(&mut self, input: &str, outcome: impl Into<String>) {
        self.outcomes
            .push(serde_json::json!({ "input": input, "outcome": outcome.into() }));
    }
}

/// A valid event must still be accepted after each hostile input: the marker source counts
/// them, and the database must end up holding every one of them.
struct Markers {
    sent: u64,
}

impl Markers {
    async fn send(&mut self, running: &Running) {
        self.sent += 1;
        let reply = post(
            running.addr,
            (event("marker", self.sent, "") + "\n").into_bytes(),
        )
        .await;
        assert_eq!(reply.status, 200, "valid marker refused");
        assert_eq!(reply.json()["accepted"], 1, "{:?}", reply.json());
    }
}

fn line(extra_fields: &str, source: &str, seq: u64) -> String {
    event(source, seq, extra_fields) + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ingest_gets_clear_answers_and_loses_nothing_valid() {
    with_mariadb(|db| async move {
        let running = start(
            &db.url(),
            &[
                "--max-body-bytes",
                "2MiB",
                "--max-sources",
                "50",
                "--max-instance-labels",
                "20",
                "--max-tool-labels",
                "20",
            ],
        )
        .await;
        let mut tally = Tally::default();
        let mut markers = Markers { sent: 0 };
        let ndjson = ("content-type", "application/x-ndjson");

        // --- auth -------------------------------------------------------------------------
        let body = line("", "auth", 1).into_bytes();
        for (name, headers) in [
            ("no token", vec![ndjson]),
            ("wrong token", vec![ndjson, ("authorization", "Bearer wrong-token-0123456789")]),
            ("token prefix", vec![ndjson, ("authorization", "Bearer test-token-012345678")]),
            ("token + suffix", vec![ndjson, ("authorization", "Bearer test-token-0123456789x")]),
            ("basic scheme", vec![ndjson, ("authorization", "Basic dGVzdC10b2tlbi0wMTIzNDU2Nzg5")]),
            ("bare token", vec![ndjson, ("authorization", COLLECTOR_TOKEN)]),
            ("empty bearer", vec![ndjson, ("authorization", "Bearer ")]),
        ] {
            let reply = raw(&running, &headers, body.clone()).await;
            assert_eq!(reply.status, 401, "{name}");
            assert!(
                !reply.body.contains(COLLECTOR_TOKEN),
                "401 body never echoes the token"
            );
            tally.record(name, "401");
        }
        for path in ["/v1/logs?limit=1", "/v1/accounting"] {
            let reply = http::request_at(running.addr, "GET", path, &[], Vec::new())
                .await
                .expect("GET");
            assert_eq!(reply.status, 401, "{path} without token");
            tally.record(&format!("GET {path} without token"), "401");
        }
        let metrics = metrics_text(&running).await;
        let refused = metric_value(&metrics, "collector_http_requests_total{code=\"401\"}");
        assert_eq!(refused, 9.0, "every refused request is counted:\n{metrics}");
        markers.send(&running).await;

        // --- content type and size ---------------------------------------------------------
        let auth = ("authorization", "Bearer test-token-0123456789");
        for (name, ct) in [
            ("no content type", None),
            ("application/json", Some("application/json")),
            ("text/plain", Some("text/plain")),
            ("multipart", Some("multipart/form-data; boundary=x")),
        ] {
            let mut headers = vec![auth];
            if let Some(ct) = ct {
                headers.push(("content-type", ct));
            }
            let reply = raw(&running, &headers, body.clone()).await;
            assert_eq!(reply.status, 415, "{name}");
            tally.record(name, "415");
        }
        // Only the head is sent: the collector refuses on the declared length before reading
        // the body (a client still writing 3 MiB would race that early answer).
        assert_eq!(declared_length_status(&running, 3 * 1024 * 1024).await, 413);
        tally.record("3 MiB body (cap 2 MiB)", "413");
        markers.send(&running).await;

        // --- per-line garbage ---------------------------------------------------------------
        let nested_depth = 100_000;
        let deep_array = format!(
            "{{\"ts\":\"2026-11-22T02:53:34Z\",\"source\":\"deep\",\"seq\":1,\"event\":\"request\",\"level\":\"info\",\"x\":{}{}}}",
            "[".repeat(nested_depth),
            "]".repeat(nested_depth)
        );
        let deep_object = format!(
            "{{\"ts\":\"2026-11-22T02:53:34Z\",\"source\":\"deep\",\"seq\":2,\"event\":\"request\",\"level\":\"info\",\"x\":{}1{}}}",
            "{\"a\":".repeat(nested_depth),
            "}".repeat(nested_depth)
        );
        let mut invalid_utf8 = line("", "utf8", 1).into_bytes();
        invalid_utf8.splice(40..40, [0xff, 0xfe, 0xc3]);
        let hostile_lines: Vec<(&str, Vec<u8>)> = vec![
            ("not JSON", b"{not json\n".to_vec()),
            ("JSON array", b"[1,2,3]\n".to_vec()),
            ("JSON string", b"\"x\"\n".to_vec()),
            ("deep array 100k", deep_array.into_bytes()),
            ("deep object 100k", deep_object.into_bytes()),
            ("invalid UTF-8", invalid_utf8),
            ("NUL bytes", b"{\"ts\":\0\0}\n".to_vec()),
            ("missing ts", br#"{"source":"a","seq":1,"event":"request","level":"info"}"#.to_vec()),
            ("ts year 0", line("", "a", 1).replace("2026-", "0000-").into_bytes()),
            ("ts year 99999", line("", "a", 1).replace("2026-", "+99999-").into_bytes()),
            ("seq 2^63", line("", "forged", 1).replace("\"seq\":1", "\"seq\":9223372036854775808").into_bytes()),
            ("seq 2^64", line("", "forged", 1).replace("\"seq\":1", "\"seq\":18446744073709551616").into_bytes()),
            ("seq -1", line("", "forged", 1).replace("\"seq\":1", "\"seq\":-1").into_bytes()),
            ("seq as string", line("", "forged", 1).replace("\"seq\":1", "\"seq\":\"1\"").into_bytes()),
            ("seq float", line("", "forged", 1).replace("\"seq\":1", "\"seq\":1.5").into_bytes()),
            ("source with slash", line("", "../etc", 1).into_bytes()),
            ("source 65 chars", line("", &"s".repeat(65), 1).into_bytes()),
            ("source SQL", line("", "a'; DROP TABLE mcp_gateway_log; --", 1).into_bytes()),
            ("event uppercase", line("", "a", 1).replace("\"request\"", "\"REQUEST\"").into_bytes()),
            ("level bogus", line("", "a", 1).replace("\"info\"", "\"fatal\"").into_bytes()),
            ("cut trace_id not hex", line(r#","trace_id":"zz92f3577b34da6a3ce929d0e0e47360""#, "cut", 1).into_bytes()),
            ("cut instance_id 129 chars", line(&format!(r#","instance_id":"{}""#, "i".repeat(129)), "cut", 2).into_bytes()),
            ("cut tool 257 chars", line(&format!(r#","gen_ai.tool.name":"{}""#, "t".repeat(257)), "cut", 3).into_bytes()),
            ("cut method 129 chars", line(&format!(r#","mcp.method.name":"{}""#, "m".repeat(129)), "cut", 4).into_bytes()),
            ("unknown kind", br#"{"kind":"admin","source":"a"}"#.to_vec()),
            ("status without dropped", br#"{"kind":"status","source":"a","ts":"2026-11-22T02:53:34Z"}"#.to_vec()),
            ("status reason uppercase", br#"{"kind":"status","source":"a","ts":"2026-11-22T02:53:34Z","dropped":{"X":1}}"#.to_vec()),
            ("duplicate keys", line(r#","seq":2"#, "dupkey", 1).into_bytes()),
        ];
        let mut rejected_lines = 0;
        let mut deep_accepted = 0u64;
        let mut cut_accepted = 0u64;
        for (name, mut body) in hostile_lines {
            if body.last() != Some(&b'\n') {
                body.push(b'\n');
            }
            let reply = post(running.addr, body).await;
            assert_eq!(reply.status, 200, "{name}: per-line errors, not a failed request");
            let report = reply.json();
            if name.starts_with("deep ") {
                // Valid JSON, only deep: unknown fields are skipped without recursion and the
                // line is stored verbatim (LONGTEXT, no server-side JSON check). The query API
                // must still render it (it falls back to text past serde_json's depth limit).
                assert_eq!(report["accepted"], 1, "{name}: {report}");
                deep_accepted += 1;
                tally.record(name, "200, accepted and stored verbatim");
                markers.send(&running).await;
                continue;
            }
            if name.starts_with("cut ") {
                // A field the client controls never costs the audit line: it is cut to its
                // column (or kept out of it) and named in `truncated`; the line is stored.
                assert_eq!(report["accepted"], 1, "{name}: stored, not rejected: {report}");
                cut_accepted += 1;
                tally.record(name, "200, accepted; the field cut and named in `truncated`");
                markers.send(&running).await;
                continue;
            }
            let rejected = report["rejected"].as_array().cloned().unwrap_or_default();
            assert_eq!(report["accepted"], 0, "{name} must not be accepted: {report}");
            assert_eq!(rejected.len(), 1, "{name}: exactly one rejection: {report}");
            let error = rejected[0]["error"].as_str().unwrap_or("").to_string();
            assert!(!error.is_empty() && error.len() < 400, "{name}: clear, short error: {error}");
            rejected_lines += 1;
            tally.record(name, format!("200, line rejected: {}", &error[..error.len().min(80)]));
            markers.send(&running).await;
        }

        // --- valid lines mixed with invalid ones: partial success --------------------------
        let mut mixed = String::new();
        for seq in 1..=10u64 {
            mixed += &line("", "mixed", seq);
            mixed += "{garbage\n";
        }
        let reply = post(running.addr, mixed.into_bytes()).await.json();
        assert_eq!(reply["accepted"], 10);
        assert_eq!(reply["rejected"].as_array().map(Vec::len), Some(10));
        tally.record("10 valid + 10 invalid lines", "200, 10 accepted, 10 rejected");

        // --- SQL-looking strings in stored columns: stored verbatim ------------------------
        let sql = "x'); DROP TABLE mcp_gateway_log; -- \\\" OR 1=1 #";
        let escaped = serde_json::to_string(sql).expect("json");
        let sql_line = line(
            &format!(
                r#","instance_id":{escaped},"gen_ai.tool.name":{escaped},"mcp.method.name":{escaped},"message":{escaped}"#
            ),
            "sqlish",
            1,
        );
        let reply = post(running.addr, sql_line.into_bytes()).await.json();
        assert_eq!(reply["accepted"], 1, "{reply}");
        tally.record("SQL-looking instance/tool/method/message", "200, stored verbatim");

        // --- batch of 10 000 valid lines, and of 10 000 invalid ones -----------------------
        let big: String = (1..=10_000u64).map(|s| line("", "batch10k", s)).collect();
        let reply = post(running.addr, big.into_bytes()).await.json();
        assert_eq!(reply["accepted"], 10_000, "{reply}");
        tally.record("10 000-line valid batch", "200, 10 000 accepted");
        let bad: String = (0..10_000).map(|_| "{\"x\":1}\n").collect();
        let reply = post(running.addr, bad.into_bytes()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["rejected"].as_array().map(Vec::len), Some(10_000));
        assert!(reply.body.len() < 2 * 1024 * 1024, "rejection report stays bounded");
        tally.record("10 000-line invalid batch", format!("200, 10 000 rejected ({} B report)", reply.body.len()));
        // 10 000 blank lines: no work, no error.
        let reply = post(running.addr, vec![b'\n'; 10_000]).await.json();
        assert_eq!(reply["accepted"], 0);
        tally.record("10 000 blank lines", "200, nothing accepted or rejected");

        // --- forged duplicates: the same (source, seq) is stored once ----------------------
        let dup = line("", "forged", 7);
        let reply = post(running.addr, format!("{dup}{dup}{dup}").into_bytes()).await.json();
        assert_eq!((reply["accepted"].as_u64(), reply["duplicates"].as_u64()), (Some(1), Some(2)));
        tally.record("same (source, seq) x3", "1 accepted, 2 duplicates");

        // --- raw credential in `token`: never stored ---------------------------------------
        let raw_secret = "Bearer sk-live-RAWSECRET-9f8e7d6c5b4a";
        let reply = post(
            running.addr,
            line(&format!(r#","token":"{raw_secret}","token_header":"authorization""#), "tok", 1).into_bytes(),
        )
        .await
        .json();
        assert_eq!(reply["accepted"], 1);
        tally.record("raw credential in token", "200, re-fingerprinted");

        // --- ids crafted to create state ---------------------------------------------------
        // 2 000 distinct sources (cap 50) and 2 000 distinct instances / tools on response
        // events (caps 20): tracked state and metric labels must stay at their caps.
        let mut body = String::new();
        for i in 0..2_000u64 {
            body += &line(
                &format!(r#","instance_id":"inst-{i}","gen_ai.tool.name":"tool-{i}","mcp.method.name":"m{i}","mcp.outcome":"o{i}","error.type":"e{i}""#),
                &format!("src-{i}"),
                1,
            )
            .replace("\"event\":\"request\"", "\"event\":\"response\"");
        }
        let reply = post(running.addr, body.into_bytes()).await.json();
        assert_eq!(reply["accepted"], 2_000, "{reply}");
        let accounting = get(running.addr, "/v1/accounting").await.json();
        let tracked = accounting["sources"].as_array().map(Vec::len).unwrap_or(0);
        assert!(tracked <= 50, "sources tracked: {tracked}");
        assert!(accounting["_other"]["events"].as_u64().unwrap_or(0) >= 1_950);
        let metrics = metrics_text(&running).await;
        let labels = |key: &str| -> BTreeSet<String> {
            metrics
                .lines()
                .filter(|l| l.starts_with("mcp_server_operations_total{"))
                .filter_map(|l| l.split(&format!("{key}=\"")).nth(1)?.split('"').next().map(str::to_string))
                .collect()
        };
        let (instances, tools) = (labels("instance"), labels("tool"));
        assert!(instances.len() <= 21, "instance labels: {}", instances.len());
        assert!(tools.len() <= 21 * 21, "tool labels: {}", tools.len());
        let source_series = metrics.lines().filter(|l| l.starts_with("collector_source_events_total{")).count();
        assert!(source_series <= 51, "per-source series: {source_series}");
        tally.record(
            "2 000 distinct sources / instances / tools",
            format!("{tracked} sources tracked, {} instance labels, {} tool labels, {source_series} source series", instances.len(), tools.len()),
        );

        // --- forged status records with counters at u64::MAX -------------------------------
        let mut status = String::new();
        for source in ["evil-a", "evil-b", "evil-c"] {
            status += &format!(
                "{{\"kind\":\"status\",\"source\":\"{source}\",\"ts\":\"2026-11-22T02:53:34Z\",\"dropped\":{{\"buffer_full\":18446744073709551615,\"callout_failed\":18446744073709551615,\"r1\":18446744073709551615,\"r2\":18446744073709551615,\"r3\":18446744073709551615}},\"emitted\":18446744073709551615}}\n"
            );
        }
        let reply = post(running.addr, status.into_bytes()).await;
        assert_eq!(reply.status, 200, "forged status records answered");
        let accounting = get(running.addr, "/v1/accounting").await;
        assert_eq!(accounting.status, 200, "accounting survives u64::MAX counters");
        let metrics_reply = http::request_at(running.metrics_addr, "GET", "/metrics", &[], Vec::new())
            .await
            .expect("metrics answered");
        assert_eq!(metrics_reply.status, 200, "/metrics survives u64::MAX counters");
        tally.record("status records with u64::MAX counters x3", "200; /v1/accounting and /metrics still 200");
        markers.send(&running).await;

        // --- query API: injection-shaped parameters ----------------------------------------
        for (query, expect) in [
            ("/v1/logs?instance_id=%27%20OR%201%3D1%20--", 200),
            ("/v1/logs?tool=x%27)%3B%20DROP%20TABLE%20mcp_gateway_log%3B--", 200),
            ("/v1/logs?limit=100000", 400),
            ("/v1/logs?limit=-1", 400),
            ("/v1/logs?since=yesterday", 400),
            ("/v1/logs?cursor=%27%3B--", 400),
            ("/v1/logs?sort=id", 400),
        ] {
            let reply = get(running.addr, query).await;
            assert_eq!(reply.status, expect, "{query}: {}", reply.body);
            if expect == 200 {
                assert_eq!(reply.json()["items"].as_array().map(Vec::len).unwrap_or(0), 0, "{query} matches nothing");
            }
            tally.record(&format!("GET {query}"), expect.to_string());
        }

        // --- everything valid arrived; the table and the process survived ------------------
        let expected_rows = markers.sent + deep_accepted + cut_accepted + 10 + 1 + 10_000 + 1 + 1 + 2_000;
        eventually("every valid event persisted", Duration::from_secs(60), || async {
            running.snapshot().counters.persisted >= expected_rows
        })
        .await;
        let pool = db.pool().await;
        let count = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.expect(sql);
                n as u64
            }
        };
        assert_eq!(count("SELECT COUNT(*) FROM mcp_gateway_log").await, expected_rows);
        assert_eq!(count("SELECT COUNT(*) FROM mcp_gateway_log WHERE source = 'marker'").await, markers.sent);
        let stored: String = sqlx::query_scalar("SELECT tool_name FROM mcp_gateway_log WHERE source = 'sqlish'")
            .fetch_one(&pool)
            .await
            .expect("sqlish row");
        assert_eq!(stored, sql, "SQL-looking text stored verbatim");
        assert_eq!(
            count("SELECT COUNT(*) FROM mcp_gateway_log WHERE log LIKE '%RAWSECRET%' OR token LIKE '%RAWSECRET%'").await,
            0,
            "raw credential never stored"
        );
        type CutRow = (Option<String>, Option<String>, Option<String>, String);
        let cut: Vec<CutRow> = sqlx::query_as(
            "SELECT trace_id, instance_id, tool_name, log FROM mcp_gateway_log WHERE source = 'cut' ORDER BY seq",
        )
        .fetch_all(&pool)
        .await
        .expect("cut rows");
        assert_eq!(cut.len() as u64, cut_accepted, "every line with a bad field stored");
        assert_eq!(cut[0].0, None, "an invalid trace id stays out of its column");
        assert_eq!(cut[1].1.as_deref().map(|v| v.chars().count()), Some(128));
        assert_eq!(cut[2].2.as_deref().map(|v| v.chars().count()), Some(256));
        for (row, field) in cut.iter().zip(["trace_id", "instance_id", "gen_ai.tool.name", "mcp.method.name"]) {
            let log: serde_json::Value = serde_json::from_str(&row.3).expect("log JSON");
            assert_eq!(log["truncated"], serde_json::json!([field]), "flagged: {}", row.3);
        }
        let deep = get(running.addr, "/v1/logs?source=deep&limit=10").await;
        assert_eq!(deep.status, 200, "query renders deeply nested rows");
        assert_eq!(deep.json()["items"].as_array().map(Vec::len), Some(deep_accepted as usize));
        let health = http::request_at(running.addr, "GET", "/health", &[], Vec::new())
            .await
            .expect("health");
        assert_eq!(health.status, 200, "{}", health.body);
        let c = running.snapshot().counters;
        figures(
            "collector_hostile_ingest",
            serde_json::json!({
                "inputs_tried": tally.outcomes.len(),
                "lines_rejected_individually": rejected_lines,
                "valid_markers_sent": markers.sent,
                "valid_rows_expected": expected_rows,
                "valid_rows_stored": expected_rows,
                "valid_lost": 0,
                "persisted": c.persisted,
                "dropped_queue_full": c.dropped_queue_full,
                "outcomes": tally.outcomes,
            }),
        );
        running.shutdown().await;
    })
    .await;
}

/// `/health`, `/metrics`, error bodies and the log never show the token or the database
/// password, even while the database is unreachable and errors are being reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_logs_do_not_leak_credentials() {
    let db_password = "DbPassw0rd-LEAK-CANARY-77";
    let token = "collector-token-LEAK-CANARY-0123456789";
    // Nothing listens on this port: the database is "down" with credentials in the URL.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let database_url = format!("mysql://leakuser:{db_password}@127.0.0.1:{dead_port}/leakdb");
    // Returns once the collector serves (/health answers 503: the database is down).
    let mut collector = Collector::start_with_env(
        &[
            "--database-url",
            &database_url,
            "--health-check-interval",
            "100ms",
            "--db-acquire-timeout",
            "500ms",
            "--retry-initial-backoff",
            "50ms",
            "--retry-max-backoff",
            "200ms",
            // The database never comes back: the shutdown drain would wait its whole
            // deadline (15 s by default) before logging what it drops.
            "--drain-timeout",
            "1s",
        ],
        &[("COLLECTOR_TOKEN", token), ("LOG_LEVEL", "debug")],
    );
    let (listen, metrics_listen) = (collector.addr(), collector.metrics_addr());
    let bearer = format!("Bearer {token}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/x-ndjson"),
    ];
    // Events that will fail to be written, so errors get logged and counted.
    let reply = http::request_at(listen, "POST", "/v1/logs", &headers, events("leak", 1..=5))
        .await
        .expect("ingest");
    assert_eq!(reply.status, 200);
    let wrong = http::request_at(
        listen,
        "POST",
        "/v1/logs",
        &[
            ("authorization", "Bearer guess-guess-guess-guess"),
            ("content-type", "application/x-ndjson"),
        ],
        events("leak", 6..=6),
    )
    .await
    .expect("ingest");
    assert_eq!(wrong.status, 401);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut bodies = Vec::new();
    let health = http::request_at(listen, "GET", "/health", &[], Vec::new())
        .await
        .expect("health");
    assert_eq!(health.status, 503, "database down -> unhealthy");
    bodies.push(("health", health.body.clone()));
    let metrics = http::request_at(metrics_listen, "GET", "/metrics", &[], Vec::new())
        .await
        .expect("metrics");
    bodies.push(("metrics", metrics.body.clone()));
    let query = http::request_at(listen, "GET", "/v1/logs?limit=1", &headers, Vec::new())
        .await
        .expect("query");
    bodies.push(("query error", query.body.clone()));
    bodies.push(("401", wrong.body.clone()));

    let exit = collector.kill_with("TERM");
    // stdout and stderr, without the harness's `--- name stdout ---` headers.
    let log_text = collector.logs();
    let log: Vec<&str> = log_text
        .lines()
        .filter(|l| !l.starts_with("--- "))
        .collect();
    assert!(log.len() > 3, "collector logged something: {log_text}");

    let canaries = [token, db_password, "guess-guess-guess-guess"];
    let mut hits = 0;
    for (name, body) in bodies
        .iter()
        .chain(std::iter::once(&("log", log_text.clone())))
    {
        for canary in canaries {
            if body.contains(canary) {
                hits += 1;
                eprintln!("LEAK: {canary:?} in {name}");
            }
        }
    }
    // Health says which check failed, not how (no host, user or SQL error text).
    let health_body = &bodies[0].1;
    for detail in ["leakuser", "leakdb", &dead_port.to_string()] {
        assert!(
            !health_body.contains(detail),
            "health leaks {detail}: {health_body}"
        );
    }
    figures(
        "collector_no_credential_leak",
        serde_json::json!({
            "surfaces_searched": ["/health", "/metrics", "query error body", "401 body", "stdout+stderr log (debug level)"],
            "canaries": canaries.len(),
            "hits": hits,
            "log_lines": log.len(),
            "exit": exit,
        }),
    );
    assert_eq!(hits, 0, "credentials leaked; see LEAK lines above");
}
