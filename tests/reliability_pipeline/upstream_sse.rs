//! Faults: the MCP upstream SIGKILLed in the middle of an SSE stream.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use test_support::collector::Collector;
use test_support::db::TestDb;
use test_support::http;
use test_support::paths::{binary, free_port, TestDir};
use test_support::pipeline::{
    echo_call, figures, one_at_a_time, settle, start_envoy, trap_lines, EnvoyOptions, Settled,
    MCP_HEADERS,
};
use test_support::poll::{wait_until, POLL};
use test_support::process::Proc;

/// A demo server on a fixed port (so Envoy's static cluster finds it again after a restart).
fn demo_on(port: u16, dir: &TestDir, n: u32) -> Proc {
    let mut command = Command::new(binary("demo-mcp-server"));
    command.args(["--listen", &format!("127.0.0.1:{port}"), "--stateless"]);
    let mut proc = Proc::spawn(&format!("demo-{n}"), command, &dir.path).expect("spawn demo");
    let health = format!("http://127.0.0.1:{port}/healthz");
    let up = wait_until(Duration::from_secs(30), POLL, || {
        proc.assert_running();
        matches!(http::get(&health), Ok((200, _)))
    });
    assert!(up.is_some(), "demo server not healthy\n{}", proc.logs());
    proc
}

#[test]
fn fault_upstream_killed_mid_sse_stream() {
    let _serial = one_at_a_time();
    let db = TestDb::create("sse");
    let dir = TestDir::new("rel-sse");
    let collector = Collector::start_pipeline(&db.url(), &[]);
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
        let r = http::post(&url, MCP_HEADERS, echo_call(i, "down")).expect("answered");
        down_errors.push(r.status);
    }
    server.stop();
    let _server2 = demo_on(port, &dir, 2);
    let ok_after = (0..20)
        .filter(|i| {
            let body = echo_call(*i, "after");
            wait_until(Duration::from_secs(5), POLL, || {
                http::post(&url, MCP_HEADERS, &body).is_ok_and(|r| r.status == 200)
            })
            .is_some()
        })
        .count();

    let settled = settle(&envoy, &db, &collector, Duration::from_secs(30));
    let Settled {
        held,
        counts,
        stored,
        collector_dropped,
        ..
    } = settled;
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
