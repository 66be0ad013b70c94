//! Secrets: known credentials and redacted argument values never reach the database,
//! Envoy's log or the collector's log.

use std::time::Duration;

use serde_json::json;
use test_support::collector::Collector;
use test_support::db::TestDb;
use test_support::http;
use test_support::pipeline::{
    figures, one_at_a_time, settle, start_envoy, EnvoyOptions, MCP_HEADERS,
};
use test_support::poll::{wait_until, POLL};

use crate::json_server;

#[test]
fn secrets_never_reach_the_database_or_any_log() {
    let _serial = one_at_a_time();
    let db = TestDb::create("secrets");
    let collector = Collector::start_pipeline(&db.url(), &["--log-level", "debug"]);
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
    // Under keys no list names: redacted because the values look like credentials.
    let pasted_key = "ghp_CANARY0pasted0github0token0123456789";
    let pasted_bearer = "Bearer CANARYpastedBearer0a1b2c3";
    let visible = "visible-control-text-3b5d7f";
    let canaries = [
        bearer,
        api_key,
        proxy_auth,
        password,
        nested_token,
        client_secret,
        cookie,
        pasted_key,
        pasted_bearer,
    ];

    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {
            "text": visible,
            "password": password,
            "Nested": {"TOKEN": nested_token, "deeper": [{"client_secret": client_secret}]},
            "cookie": cookie,
            "notes": [pasted_key, {"header": pasted_bearer}],
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
            let reply = http::post(&url, &all, &body).expect("request");
            assert!(reply.status < 500, "{}", reply.status);
            sent += 1;
        }
    }
    let settled = settle(&envoy, &db, &collector, Duration::from_secs(30));
    assert!(settled.held, "identity: {settled:?}");

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
            "rows": settled.stored,
            "distinct_fingerprints": fingerprints,
            "hits": hits.len(),
        }),
    );
    assert!(hits.is_empty(), "secrets found: {hits:#?}");
}
