//! The SDK interoperability matrix, end to end: official MCP clients -> real Envoy (2 workers,
//! connections spread) with the filter -> official MCP servers, the filter shipping to
//! host-collector on real MariaDB. Servers: rmcp (Streamable HTTP with SSE answers and with
//! JSON answers) and the Python SDK (`mcp` on PyPI: Streamable HTTP both ways, and the legacy
//! HTTP+SSE transport, whose message endpoint `/messages/?session_id=…` the filter learns from
//! the stream's `endpoint` event). Clients: rmcp (Streamable HTTP; rmcp has no legacy client)
//! and the Python SDK (both transports). Every pair runs the same scenario (tools/list, a tool
//! that answers, one that reports `isError`, an unknown tool, resources/read, prompts/get, a
//! notification) and the stored rows are checked field by field against what the client saw.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use test_support::collector::{Collector, COLLECTOR_TOKEN};
use test_support::db::TestDb;
use test_support::demo::{step, DemoClient, DemoKind, DemoServer};
use test_support::envoy::{envoy_yaml, Envoy, EnvoyConfig, Route};
use test_support::paths::{free_port, workspace_root, TestDir};
use test_support::poll::{wait_for_tcp, wait_until, POLL};
use test_support::process::Proc;

const TOKEN: &str = "interop-client-secret-5d1f";

/// The SDKs of the matrix.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sdk {
    Rmcp,
    Python,
    TypeScript,
}

impl Sdk {
    fn name(self) -> &'static str {
        match self {
            Sdk::Rmcp => "rmcp",
            Sdk::Python => "py",
            Sdk::TypeScript => "ts",
        }
    }
}

/// How a server answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    /// Streamable HTTP, answers as SSE streams (stateful: sessions).
    StreamableSse,
    /// Streamable HTTP, answers as JSON bodies (rmcp: stateless too).
    StreamableJson,
    /// The legacy HTTP+SSE transport.
    Legacy,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::StreamableSse => "sse",
            Transport::StreamableJson => "json",
            Transport::Legacy => "legacy",
        }
    }

    /// The `--transport` of the Python and TypeScript peers' servers.
    fn peer_flag(self) -> &'static str {
        match self {
            Transport::StreamableSse => "streamable-http",
            Transport::StreamableJson => "streamable-http-json",
            Transport::Legacy => "sse",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Server {
    sdk: Sdk,
    transport: Transport,
}

impl Server {
    fn name(self) -> String {
        format!("{}-{}", self.sdk.name(), self.transport.name())
    }

    fn is_legacy(self) -> bool {
        self.transport == Transport::Legacy
    }

    /// rmcp's JSON-answering server keeps no sessions.
    fn is_stateless(self) -> bool {
        self.sdk == Sdk::Rmcp && self.transport == Transport::StreamableJson
    }
}

/// A running server of any SDK.
enum Running {
    Rmcp(DemoServer),
    Peer {
        port: u16,
        _proc: Proc,
        _dir: TestDir,
    },
}

impl Running {
    fn port(&self) -> u16 {
        match self {
            Running::Rmcp(server) => server.port,
            Running::Peer { port, .. } => *port,
        }
    }
}

fn python() -> PathBuf {
    let venv = std::env::var("VENV").unwrap_or_else(|_| ".venv".into());
    workspace_root().join(venv).join("bin/python")
}

/// The command that runs a Python or TypeScript peer's `server` or `client` script.
fn peer(sdk: Sdk, script: &str) -> Command {
    let peers = workspace_root().join("tests/peers");
    match sdk {
        Sdk::Python => {
            let mut command = Command::new(python());
            command.arg(peers.join("python").join(format!("{script}.py")));
            command
        }
        Sdk::TypeScript => {
            let mut command = Command::new("node");
            command.arg(peers.join("node").join(format!("{script}.mjs")));
            command
        }
        Sdk::Rmcp => unreachable!("rmcp peers are the demo-mcp binaries"),
    }
}

fn start(server: Server) -> Running {
    if server.sdk == Sdk::Rmcp {
        let json_response = server.transport == Transport::StreamableJson;
        return Running::Rmcp(DemoServer::start(DemoKind::Streamable {
            json_response,
            stateless: json_response,
        }));
    }
    let port = free_port();
    let dir = TestDir::new("peer-server");
    let mut command = peer(server.sdk, "server");
    command.args([
        "--transport",
        server.transport.peer_flag(),
        "--port",
        &port.to_string(),
    ]);
    let mut proc = Proc::spawn(&server.name(), command, &dir.path).expect("spawn peer server");
    if !wait_for_tcp(port, Duration::from_secs(30)) {
        proc.assert_running();
        panic!("{} never listened\n{}", server.name(), proc.logs());
    }
    Running::Peer {
        port,
        _proc: proc,
        _dir: dir,
    }
}

/// Runs a client's scenario; its summary (`{"ok", "steps": [...]}`).
fn run_client(client: Sdk, server: Server, url: &str, scenario: &str) -> Value {
    let auth = format!("authorization: Bearer {TOKEN}");
    if client == Sdk::Rmcp {
        let (status, summary) =
            DemoClient::run(&["--url", url, "--header", &auth, "--scenario", scenario]);
        assert!(status.success(), "{summary:#}");
        return summary;
    }
    let transport = if server.is_legacy() {
        "sse"
    } else {
        "streamable-http"
    };
    let output = peer(client, "client")
        .args(["--transport", transport, "--url", url, "--header", &auth])
        .args(["--scenario", scenario])
        .output()
        .expect("run the peer client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "{client:?} client printed no summary\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(output.status.success(), "{summary:#}");
    summary
}

/// One stored row, the fields the matrix checks.
#[derive(Debug)]
struct Row {
    event: String,
    method: String,
    target: String,
    outcome: String,
    error_type: String,
    duration_ms: Option<f64>,
    trace_id: String,
    token: String,
    session: String,
    version: String,
    /// `mcp.client.name`: the client's self-description, where the request carried it.
    client: String,
}

fn rows(db: &TestDb, instance: &str) -> Vec<Row> {
    let value = |key: &str| format!("JSON_UNQUOTE(JSON_EXTRACT(log, '$.\"{key}\"'))");
    let field = |key: &str| format!("IFNULL({}, '')", value(key));
    let sql = format!(
        "SELECT event, IFNULL(mcp_method, ''), IFNULL(COALESCE(tool_name, {resource}, {prompt}), ''), \
         {outcome}, {error}, {duration}, IFNULL(trace_id, ''), IFNULL(token, ''), {session}, {version}, \
         {client} \
         FROM mcp_gateway_log WHERE instance_id = '{instance}' AND event IN ('request', 'response') \
         ORDER BY id",
        resource = value("mcp.resource.uri"),
        prompt = value("gen_ai.prompt.name"),
        outcome = field("mcp.outcome"),
        error = field("error.type"),
        duration = field("duration_ms"),
        session = field("mcp.session.id"),
        version = field("mcp.protocol.version"),
        client = field("mcp.client.name"),
    );
    db.query(&sql)
        .lines()
        .map(|line| {
            // The client trims trailing empty columns: pad to the eleven selected.
            let mut f: Vec<&str> = line.split('\t').collect();
            f.resize(11, "");
            Row {
                event: f[0].into(),
                method: f[1].into(),
                target: f[2].into(),
                outcome: f[3].into(),
                error_type: f[4].into(),
                duration_ms: f[5].parse().ok(),
                trace_id: f[6].into(),
                token: f[7].into(),
                session: f[8].into(),
                version: f[9].into(),
                client: f[10].into(),
            }
        })
        .collect()
}

/// (method, target, outcome, error.type) the gateway must have stored for each answered step,
/// derived from what the client saw.
fn expected_responses(summary: &Value) -> Vec<(&'static str, &'static str, String, String)> {
    let unknown = &step(summary, "tools/call no_such_tool")["detail"];
    let (unknown_outcome, unknown_error) = match unknown["code"].as_i64() {
        Some(code) => ("jsonrpc_error".to_string(), code.to_string()),
        None if unknown["result"]["isError"] == true || unknown["isError"] == true => {
            ("tool_error".to_string(), "tool_error".to_string())
        }
        None => panic!("unknown tool neither failed nor isError: {unknown}"),
    };
    let ok = || ("ok".to_string(), String::new());
    vec![
        ("initialize", "", ok().0, ok().1),
        ("tools/list", "", ok().0, ok().1),
        ("tools/call", "echo", ok().0, ok().1),
        (
            "tools/call",
            "tool_error",
            "tool_error".into(),
            "tool_error".into(),
        ),
        ("tools/call", "no_such_tool", unknown_outcome, unknown_error),
        ("resources/read", "demo://readme", ok().0, ok().1),
        ("prompts/get", "greet", ok().0, ok().1),
    ]
}

fn check_pair(db: &TestDb, pair: &str, server: Server, summary: &Value) -> Vec<Row> {
    let expected = expected_responses(summary);
    let stored = wait_until(Duration::from_secs(30), POLL, || {
        let stored = rows(db, pair);
        let answered = expected.iter().all(|(method, target, ..)| {
            stored
                .iter()
                .any(|r| r.event == "response" && r.method == *method && r.target == *target)
        });
        let notified = stored
            .iter()
            .any(|r| r.method == "notifications/roots/list_changed");
        // Each worker VM ships on its own: a legacy answer (the GET stream's worker) may be
        // stored before its request (the POST's worker).
        let paired = stored
            .iter()
            .filter(|r| r.event == "response")
            .all(|response| {
                stored
                    .iter()
                    .any(|r| r.event == "request" && r.trace_id == response.trace_id)
            });
        (answered && notified && paired).then_some(stored)
    })
    .unwrap_or_else(|| panic!("{pair}: rows never complete: {:#?}", rows(db, pair)));

    for (method, target, outcome, error_type) in &expected {
        let matching: Vec<&Row> = stored
            .iter()
            .filter(|r| r.event == "response" && r.method == *method && r.target == *target)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{pair}: one response row for {method} {target}: {stored:#?}"
        );
        let row = matching[0];
        assert_eq!(
            (&row.outcome, &row.error_type),
            (outcome, error_type),
            "{pair}: {method} {target}"
        );
        assert!(
            row.duration_ms.is_some_and(|d| d >= 0.0),
            "{pair}: {method} {target} has a duration: {row:?}"
        );
    }
    for row in &stored {
        assert!(
            row.trace_id.len() == 32 && row.trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{pair}: trace id {row:?}"
        );
        assert!(
            row.token.starts_with("sha256:") && !row.token.contains(TOKEN),
            "{pair}: fingerprint, never the credential: {row:?}"
        );
        // A stateless server has no sessions; a stateful one names the session in its answer
        // to initialize, so only that request goes without (a legacy POST names it in its URL).
        // The legacy GET that opens the stream is not a JSON-RPC request (no method).
        let before_session = row.method.is_empty()
            || row.event == "request" && row.method == "initialize" && !server.is_legacy();
        if server.is_stateless() {
            assert!(row.session.is_empty(), "{pair}: stateless: {row:?}");
        } else if !before_session {
            assert!(!row.session.is_empty(), "{pair}: session id: {row:?}");
        }
    }
    // Every SDK describes itself in initialize: the gateway records who the client is.
    let init = stored
        .iter()
        .find(|r| r.event == "request" && r.method == "initialize")
        .unwrap_or_else(|| panic!("{pair}: an initialize request row: {stored:#?}"));
    assert!(!init.client.is_empty(), "{pair}: mcp.client.name: {init:?}");
    // Each request's response shares its trace (the POST and the stream answer are joined).
    for response in stored.iter().filter(|r| r.event == "response") {
        assert!(
            stored.iter().any(|r| r.event == "request"
                && r.trace_id == response.trace_id
                && r.method == response.method),
            "{pair}: a request row for {response:?}"
        );
    }
    assert!(
        !stored.iter().any(|r| r.outcome == "no_response"),
        "{pair}: every request was answered: {stored:#?}"
    );
    let complaints = format!(
        "SELECT event, log FROM mcp_gateway_log WHERE instance_id = '{pair}' AND event IN \
         ('protocol.unsupported', 'request.validation.failed', 'header.body.mismatch')"
    );
    assert_eq!(
        db.query(&complaints),
        "",
        "{pair}: an official SDK's traffic is valid MCP"
    );
    stored
}

/// Envoy (2 workers, connections spread) routing `/mcp/<pair>/` to each pair's server, with
/// the filter shipping to host-collector on a fresh MariaDB database.
struct Gateway {
    // Dropped in this order: Envoy flushes, then the collector stops, then the database goes.
    envoy: Envoy,
    _collector: Collector,
    db: TestDb,
}

impl Gateway {
    fn start(pairs: &[(String, Server, Sdk)], servers: &[Server], running: &[Running]) -> Gateway {
        let db = TestDb::create("interop");
        let collector = Collector::start_pipeline(&db.url(), &[]);
        let allowed: Vec<String> = pairs.iter().map(|(p, ..)| format!("\"{p}\"")).collect();
        let filter = format!(
            r#"{{"instance": {{"source": {{"path_prefix": "/mcp/"}}, "allowed": [{}], "on_missing": "reject"}},
 "collector": {{"cluster": "collector", "authority": "collector", "token": "{COLLECTOR_TOKEN}",
               "flush_interval_ms": 200, "timeout_ms": 2000}}}}"#,
            allowed.join(",")
        );
        let prefixes: Vec<(String, String)> = pairs
            .iter()
            .map(|(p, server, _)| (format!("/mcp/{p}/"), server.name()))
            .collect();
        let routes: Vec<Route> = prefixes
            .iter()
            .map(|(prefix, cluster)| Route {
                prefix,
                cluster,
                rewrite: Some("/"),
            })
            .collect();
        let names: Vec<String> = servers.iter().map(|s| s.name()).collect();
        let mut clusters: Vec<(&str, u16)> = names
            .iter()
            .zip(running)
            .map(|(name, r)| (name.as_str(), r.port()))
            .collect();
        clusters.push(("collector", collector.port));
        let envoy = Envoy::start(
            &envoy_yaml(&EnvoyConfig {
                filter: &filter,
                routes: &routes,
                clusters: &clusters,
                spread_connections: true,
                ..EnvoyConfig::default()
            }),
            2,
        );
        Gateway {
            envoy,
            _collector: collector,
            db,
        }
    }
}

#[test]
fn every_sdk_pair_is_recorded_field_by_field() {
    let sdks = [Sdk::Rmcp, Sdk::Python, Sdk::TypeScript];
    let transports = [
        Transport::StreamableSse,
        Transport::StreamableJson,
        Transport::Legacy,
    ];
    // rmcp offers neither a legacy server nor a legacy client.
    let servers: Vec<Server> = sdks
        .iter()
        .flat_map(|&sdk| {
            transports
                .iter()
                .map(move |&transport| Server { sdk, transport })
        })
        .filter(|s| !(s.sdk == Sdk::Rmcp && s.is_legacy()))
        .collect();
    let pairs: Vec<(String, Server, Sdk)> = servers
        .iter()
        .flat_map(|&server| {
            sdks.iter()
                .filter(move |&&client| !(client == Sdk::Rmcp && server.is_legacy()))
                .map(move |&client| {
                    (
                        format!("{}-{}", client.name(), server.name()),
                        server,
                        client,
                    )
                })
        })
        .collect();
    let running: Vec<Running> = servers.iter().map(|&s| start(s)).collect();

    let gateway = Gateway::start(&pairs, &servers, &running);
    let mut matrix = Vec::new();
    for (pair, server, client) in &pairs {
        let path = if server.is_legacy() { "sse" } else { "mcp" };
        let url = gateway.envoy.url(&format!("/mcp/{pair}/{path}"));
        let summary = run_client(*client, *server, &url, "interop");
        let stored = check_pair(&gateway.db, pair, *server, &summary);
        let unknown = stored
            .iter()
            .find(|r| r.event == "response" && r.target == "no_such_tool")
            .map(|r| r.outcome.as_str())
            .unwrap_or_default();
        matrix.push(format!(
            "| {} | {} | {} | {} rows | unknown tool: {unknown} |",
            client.name(),
            server.sdk.name(),
            server.transport.name(),
            stored.len(),
        ));
    }
    println!(
        "interop matrix ({} pairs):\n{}",
        pairs.len(),
        matrix.join("\n")
    );
}

#[test]
fn server_requests_are_audited_and_matched_to_the_clients_answers() {
    // The Python server asks the Python client for its roots and a sampled message during a
    // tool call, with progress and a log message; the client POSTs its answers back.
    let servers = [
        Server {
            sdk: Sdk::Python,
            transport: Transport::StreamableSse,
        },
        Server {
            sdk: Sdk::Python,
            transport: Transport::Legacy,
        },
    ];
    let pairs: Vec<(String, Server, Sdk)> = servers
        .iter()
        .map(|&s| (format!("asks-{}", s.name()), s, Sdk::Python))
        .collect();
    let running: Vec<Running> = servers.iter().map(|&s| start(s)).collect();
    let gateway = Gateway::start(&pairs, &servers, &running);
    for (pair, server, client) in &pairs {
        let path = if server.is_legacy() { "sse" } else { "mcp" };
        let url = gateway.envoy.url(&format!("/mcp/{pair}/{path}"));
        run_client(*client, *server, &url, "server-requests");
        let value =
            |key: &str| format!("IFNULL(JSON_UNQUOTE(JSON_EXTRACT(log, '$.\"{key}\"')), '')");
        let sql = format!(
            "SELECT event, mcp_method, {}, {}, {} FROM mcp_gateway_log \
             WHERE instance_id = '{pair}' AND event LIKE 'server.%' ORDER BY id",
            value("mcp.direction"),
            value("mcp.outcome"),
            value("duration_ms"),
        );
        let count =
            |rows: &str, prefix: &str| rows.lines().filter(|l| l.starts_with(prefix)).count();
        // Each worker VM ships on its own: the server's requests (seen on its stream) and the
        // client's answers (POSTed, maybe to another worker) arrive in any order. Wait for all.
        let complete = |rows: &str| {
            count(rows, "server.request\t") == 2
                && count(rows, "server.request.answered\t") == 2
                && count(rows, "server.notification\tnotifications/progress\t") >= 2
                && count(rows, "server.notification\tnotifications/message\t") == 1
        };
        let rows = wait_until(Duration::from_secs(30), POLL, || {
            let rows = gateway.db.query(&sql);
            complete(&rows).then_some(rows)
        })
        .unwrap_or_else(|| {
            panic!(
                "{pair}: server events never all stored: {}",
                gateway.db.query(&sql)
            )
        });
        let lines: Vec<Vec<&str>> = rows.lines().map(|l| l.split('\t').collect()).collect();
        let of = |event: &str, method: &str| {
            lines
                .iter()
                .filter(|f| f[0] == event && f[1] == method)
                .collect::<Vec<_>>()
        };
        for method in ["roots/list", "sampling/createMessage"] {
            let asked = of("server.request", method);
            assert_eq!(asked.len(), 1, "{pair}: {method} asked once:\n{rows}");
            assert_eq!(asked[0][2], "server_to_client", "{pair}");
            let answer = of("server.request.answered", method);
            assert_eq!(answer.len(), 1, "{pair}: {method} answered once:\n{rows}");
            assert_eq!(answer[0][3], "ok", "{pair}: {method}");
            assert!(
                answer[0][4].parse::<f64>().is_ok_and(|ms| ms >= 0.0),
                "{pair}: {method} latency:\n{rows}"
            );
        }
        assert!(
            of("server.notification", "notifications/progress").len() >= 2,
            "{pair}: progress:\n{rows}"
        );
        assert_eq!(
            of("server.notification", "notifications/message").len(),
            1,
            "{pair}: the log message:\n{rows}"
        );
        assert!(
            lines.iter().all(|f| f[2] == "server_to_client"),
            "{pair}: direction on every server event:\n{rows}"
        );
    }
}

#[test]
fn the_2026_07_28_revision_is_recorded_per_request() {
    // The Python SDK in its default mode probes `server/discover` and, with a server that
    // speaks 2026-07-28, uses it: no handshake, no session, the version and capabilities in
    // every request's `_meta`, `Mcp-Method` / `Mcp-Name` headers on every POST.
    let servers = [Server {
        sdk: Sdk::Python,
        transport: Transport::StreamableSse,
    }];
    let pairs = vec![("modern-py".to_string(), servers[0], Sdk::Python)];
    let running: Vec<Running> = servers.iter().map(|&s| start(s)).collect();
    let gateway = Gateway::start(&pairs, &servers, &running);
    let url = gateway.envoy.url("/mcp/modern-py/mcp");
    let summary = run_client(Sdk::Python, servers[0], &url, "modern");
    assert_eq!(
        step(&summary, "server/discover")["detail"]["protocolVersion"],
        "2026-07-28"
    );
    let expected = [
        ("server/discover", "", "ok"),
        ("tools/list", "", "ok"),
        ("tools/call", "echo", "ok"),
        ("tools/call", "tool_error", "tool_error"),
        ("resources/read", "demo://readme", "ok"),
        ("prompts/get", "greet", "ok"),
    ];
    let stored = wait_until(Duration::from_secs(30), POLL, || {
        let stored = rows(&gateway.db, "modern-py");
        expected
            .iter()
            .all(|(method, target, _)| {
                stored
                    .iter()
                    .any(|r| r.event == "response" && r.method == *method && r.target == *target)
            })
            .then_some(stored)
    })
    .unwrap_or_else(|| panic!("rows never complete: {:#?}", rows(&gateway.db, "modern-py")));
    for (method, target, outcome) in expected {
        let row = stored
            .iter()
            .find(|r| r.event == "response" && r.method == method && r.target == target)
            .expect("found above");
        assert_eq!(row.outcome, outcome, "{method} {target}");
        assert!(row.duration_ms.is_some(), "{row:?}");
    }
    for row in &stored {
        assert!(row.session.is_empty(), "no sessions in 2026-07-28: {row:?}");
        assert!(
            !row.client.is_empty(),
            "every 2026-07-28 request names its client in _meta: {row:?}"
        );
        assert_eq!(
            row.version, "2026-07-28",
            "the version of each request: {row:?}"
        );
    }
    assert!(!stored.iter().any(|r| r.method == "initialize"));
    assert_eq!(
        gateway.db.count(
            "SELECT COUNT(*) FROM mcp_gateway_log WHERE instance_id = 'modern-py' \
             AND event IN ('protocol.unsupported', 'request.validation.failed', 'header.body.mismatch')"
        ),
        0,
        "2026-07-28 is a known revision and the SDK's headers agree with its bodies"
    );
    listen_stream_is_audited(&gateway.db, &summary);
}

/// `subscriptions/listen` (2026-07-28) in place of the GET stream: the request, its response
/// stream's acknowledgment and the resource update, each recorded with its direction, the
/// revision and no session; the update names the resource.
fn listen_stream_is_audited(db: &TestDb, summary: &Value) {
    let listen = step(summary, "subscriptions/listen");
    assert_eq!(listen["ok"], true, "the client saw the update: {listen}");
    let value = |key: &str| format!("IFNULL(JSON_UNQUOTE(JSON_EXTRACT(log, '$.\"{key}\"')), '')");
    let sql = format!(
        "SELECT event, IFNULL(mcp_method, ''), {}, {}, {}, {}, {} FROM mcp_gateway_log \
         WHERE instance_id = 'modern-py' AND (event LIKE 'server.%' \
         OR mcp_method = 'subscriptions/listen') ORDER BY id",
        value("mcp.direction"),
        value("mcp.protocol.version"),
        value("mcp.session.id"),
        value("mcp.resource.uri"),
        value("mcp.outcome"),
    );
    let wanted = [
        ("request", "subscriptions/listen"),
        (
            "server.notification",
            "notifications/subscriptions/acknowledged",
        ),
        ("server.notification", "notifications/resources/updated"),
        ("response", "subscriptions/listen"),
    ];
    let has = |rows: &str, (event, method): (&str, &str)| {
        rows.lines()
            .any(|l| l.starts_with(&format!("{event}\t{method}\t")))
    };
    let rows = wait_until(Duration::from_secs(30), POLL, || {
        let rows = db.query(&sql);
        wanted.iter().all(|w| has(&rows, *w)).then_some(rows)
    })
    .unwrap_or_else(|| panic!("listen rows never complete:\n{}", db.query(&sql)));
    let lines: Vec<Vec<&str>> = rows.lines().map(|l| l.split('\t').collect()).collect();
    for line in &lines {
        assert_eq!(line[3], "2026-07-28", "revision on every row: {line:?}");
        assert_eq!(line[4], "", "no session: {line:?}");
    }
    for line in lines.iter().filter(|l| l[0].starts_with("server.")) {
        assert_eq!(line[2], "server_to_client", "{line:?}");
    }
    let updated = lines
        .iter()
        .find(|l| l[1] == "notifications/resources/updated")
        .expect("found above");
    assert_eq!(updated[5], "demo://readme", "the update names the resource");
    let closed = lines
        .iter()
        .find(|l| l[0] == "response")
        .expect("found above");
    assert_eq!(
        closed[6], "client_closed",
        "the client ending its listen stream is the stream's normal end"
    );
    println!("subscriptions/listen rows:\n{rows}");
}
