//! Observability end to end on the shipped `envoy/envoy.yaml` (its ports rendered, nothing
//! else changed): real Envoy with the filter (upstream health, breaker, health path on), the
//! demo MCP servers, host-collector, and
//! - an OTLP/HTTP receiver decoding with `opentelemetry-proto`'s generated types: the span the
//!   collector exports for each request carries the span id the upstream server received as
//!   its parent in `traceparent`, and the client's span as its own parent;
//! - Debian's Prometheus scraping the collector and Envoy's `/stats/prometheus` with
//!   `deploy/prometheus/prometheus.yml`: the RED series, and every query of the Grafana
//!   dashboard (`deploy/grafana/mcp-gateway.json`) returns data after traffic;
//! - Debian's Chromium (through chromedriver) on the audit view: search a tool, open a trace,
//!   screenshot;
//! - `envoy --mode validate` on every shipped Envoy config, and `promtool` on the alert rules.
//!
//! Needs `prometheus`, `promtool`, `chromium` and `chromedriver` (Debian packages; `make test`
//! installs them when missing).
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use prost::Message;
use serde_json::{json, Value};
use test_support::collector::{Collector, COLLECTOR_TOKEN};
use test_support::demo::{DemoClient, DemoKind, DemoServer};
use test_support::envoy::Envoy;
use test_support::http;
use test_support::paths::{free_port, workspace_root, TestDir};
use test_support::poll::{wait_until, POLL};
use test_support::process::Proc;

const CLIENT_TRACE: &str = "6bf92f3577b34da6a3ce929d0e0e4738";
const CLIENT_SPAN: &str = "00f067aa0ba902b9";
const DEADLINE: Duration = Duration::from_secs(30);

fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} missing: `make test-tools` installs Debian's prometheus, chromium and chromium-driver",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------
// An OTLP/HTTP receiver (blocking, keep-alive) that decodes with the official types
// ---------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Receiver {
    port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let receiver = Receiver {
            port: listener.local_addr().expect("addr").port(),
            ..Receiver::default()
        };
        let spans = receiver.spans.clone();
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let spans = spans.clone();
                thread::spawn(move || serve_otlp(stream, spans));
            }
        });
        receiver
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn serve_otlp(stream: std::net::TcpStream, spans: Arc<Mutex<Vec<Span>>>) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if request_line.starts_with("POST /v1/traces") {
            let request = ExportTraceServiceRequest::decode(body.as_slice())
                .expect("the collector sends valid OTLP protobuf");
            let mut all = spans.lock().unwrap_or_else(|p| p.into_inner());
            for rs in request.resource_spans {
                for ss in rs.scope_spans {
                    all.extend(ss.spans);
                }
            }
        }
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------
// The stack: the shipped Envoy config, demo servers, collector
// ---------------------------------------------------------------------------

struct Stack {
    envoy: Envoy,
    demo: DemoServer,
    _legacy: DemoServer,
    collector: Collector,
    dir: TestDir,
}

/// `envoy/envoy.yaml` with its fixed ports replaced by this test's and the filter path made
/// absolute (Envoy runs in a scratch directory).
fn shipped_envoy_config(demo: u16, legacy: u16, collector: u16) -> String {
    let text = std::fs::read_to_string(workspace_root().join("envoy/envoy.yaml"))
        .expect("envoy/envoy.yaml");
    let wasm = test_support::paths::target_dir().join("wasm32-wasip1/wasm/mcp_filter.wasm");
    let replaced = [
        ("port_value: 9901", "port_value: {{ADMIN_PORT}}".to_string()),
        (
            "port_value: 10000",
            "port_value: {{LISTENER_PORT}}".to_string(),
        ),
        ("port_value: 9500", format!("port_value: {demo}")),
        ("port_value: 9501", format!("port_value: {legacy}")),
        ("port_value: 9400", format!("port_value: {collector}")),
        (
            "\"token\": \"local-dev-collector-token-change-me\"",
            format!("\"token\": \"{COLLECTOR_TOKEN}\""),
        ),
        (
            "filename: target/wasm32-wasip1/wasm/mcp_filter.wasm",
            format!("filename: {}", wasm.display()),
        ),
    ];
    replaced.iter().fold(text, |text, (from, to)| {
        assert!(text.contains(from), "envoy/envoy.yaml no longer has {from}");
        text.replace(from, to)
    })
}

fn start_stack(collector_args: &[&str]) -> Stack {
    let dir = TestDir::new("observability");
    let demo = DemoServer::start(DemoKind::Streamable {
        json_response: false,
        stateless: false,
    });
    let legacy = DemoServer::start(DemoKind::LegacySse);
    let database = format!("sqlite://{}", dir.file("collector.db").display());
    let mut collector = Collector::start_pipeline(&database, collector_args);
    let envoy = Envoy::start(
        &shipped_envoy_config(demo.port, legacy.port, collector.port),
        2,
    );
    // Only now is Envoy's port known: restart the collector pointing at the filter's health.
    collector.kill_with("TERM");
    collector.restart_with(&[
        "--gateway-health-url",
        &envoy.url("/.well-known/mcp-gateway/health"),
    ]);
    Stack {
        envoy,
        demo,
        _legacy: legacy,
        collector,
        dir,
    }
}

impl Stack {
    /// What `make demo-traffic` does: every method, 20 tool calls, the legacy transport.
    fn demo_traffic(&self) {
        self.scenario(&["--scenario", "all"]);
        self.scenario(&["--scenario", "traffic", "--count", "20"]);
        self.legacy_traffic();
    }

    /// One demo-client run against the Streamable HTTP instance, with the client's trace.
    fn scenario(&self, args: &[&str]) {
        let url = self.envoy.url("/mcp/demo/mcp");
        let traceparent = format!("traceparent: 00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let mut all = vec![
            "--url",
            &url,
            "--header",
            "authorization: Bearer demo-user-token",
        ];
        if args.contains(&"all") {
            all.extend(["--header", &traceparent]);
        }
        all.extend_from_slice(args);
        let (status, summary) = DemoClient::run(&all);
        assert!(status.success(), "{summary:#}");
    }

    fn legacy_traffic(&self) {
        let legacy = self.envoy.url("/mcp/legacy/sse");
        let (status, summary) = DemoClient::run(&["--url", &legacy, "--scenario", "sse-legacy"]);
        assert!(status.success(), "{summary:#}");
    }

    fn query(&self, path: &str) -> Value {
        let auth = format!("Bearer {COLLECTOR_TOKEN}");
        let r = http::request(
            "GET",
            &format!("http://127.0.0.1:{}{path}", self.collector.port),
            &[("authorization", auth.as_str())],
            "",
        )
        .expect("query API");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json()
    }

    /// Waits until the collector has stored `n` response events.
    fn wait_responses(&self, n: usize) {
        let stored = wait_until(DEADLINE, POLL, || {
            let items = self.query("/v1/logs?event=response&limit=1000")["items"]
                .as_array()
                .map_or(0, Vec::len);
            (items >= n).then_some(())
        });
        assert!(
            stored.is_some(),
            "{n} responses stored\n{}",
            self.collector.logs()
        );
    }
}

// ---------------------------------------------------------------------------
// 1. OTLP: no missing node between the client, the gateway and the server
// ---------------------------------------------------------------------------

#[test]
fn otlp_spans_link_the_client_the_gateway_and_the_server() {
    let receiver = Receiver::start();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let stack = start_stack(&[
        "--otlp-endpoint",
        &endpoint,
        "--otlp-flush-interval",
        "100ms",
    ]);
    stack.demo_traffic();

    // Every POST that reached the server with the client's trace names its parent span in
    // `traceparent`; that span must have been exported, as a SERVER span whose own parent is
    // the client's span (batches: the exchange span) in the same trace.
    let posts: Vec<String> = stack
        .demo
        .requests()
        .iter()
        .filter(|r| r["method"] == "POST")
        .filter_map(|r| r["traceparent"].as_str().map(str::to_string))
        .filter(|tp| tp.contains(CLIENT_TRACE))
        .collect();
    assert!(posts.len() >= 10, "the scenario's POSTs: {posts:?}");
    let wire_parents: Vec<String> = posts
        .iter()
        .map(|tp| tp.split('-').nth(2).expect("parent-id").to_string())
        .collect();
    let linked = wait_until(DEADLINE, POLL, || {
        let spans = receiver.spans();
        wire_parents
            .iter()
            .all(|p| spans.iter().any(|s| hex(&s.span_id) == *p))
            .then_some(spans)
    });
    let spans = linked.unwrap_or_else(|| {
        panic!(
            "not every span the server hangs under was exported: wire {wire_parents:?}, exported {:?}\n{}",
            receiver.spans().iter().map(|s| (s.name.clone(), hex(&s.span_id))).collect::<Vec<_>>(),
            stack.collector.logs()
        )
    });
    for parent in &wire_parents {
        let span = spans
            .iter()
            .find(|s| hex(&s.span_id) == *parent)
            .expect("exported");
        assert_eq!(hex(&span.trace_id), CLIENT_TRACE, "{}", span.name);
        assert_eq!(hex(&span.parent_span_id), CLIENT_SPAN, "{}", span.name);
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    let echo = spans
        .iter()
        .find(|s| s.name == "tools/call echo" && hex(&s.trace_id) == CLIENT_TRACE)
        .expect("the echo call's span");
    let attr = |key: &str| {
        echo.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    };
    assert!(
        attr("mcp.session.id").is_some(),
        "Streamable HTTP has sessions"
    );
    assert!(attr("jsonrpc.request.id").is_some());
    // The failing tools of the scenario end with status ERROR.
    assert!(spans
        .iter()
        .any(|s| s.name == "tools/call fail" && s.status.as_ref().is_some_and(|st| st.code == 2)));
}

// ---------------------------------------------------------------------------
// 2. Prometheus (Debian) with the shipped config; the dashboard's queries
// ---------------------------------------------------------------------------

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus {
    port: u16,
    _proc: Proc,
}

impl Prometheus {
    /// `deploy/prometheus/prometheus.yml` with this test's targets and a 1 s interval.
    fn start(collector_metrics: u16, envoy_admin: u16, dir: &TestDir) -> Prometheus {
        let deploy = workspace_root().join("deploy/prometheus");
        let text = std::fs::read_to_string(deploy.join("prometheus.yml")).expect("config");
        let rules = deploy.join("alerts/mcp-gateway.rules.yml");
        let config = text
            .replace("127.0.0.1:9401", &format!("127.0.0.1:{collector_metrics}"))
            .replace("127.0.0.1:9901", &format!("127.0.0.1:{envoy_admin}"))
            .replace("interval: 15s", "interval: 1s")
            .replace(
                "- alerts/mcp-gateway.rules.yml",
                &format!("- {}", rules.display()),
            );
        let path = dir.file("prometheus.yml");
        std::fs::write(&path, config).expect("write config");
        let port = free_port();
        let mut command = Command::new(tool("prometheus"));
        command
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.file("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let proc = Proc::spawn("prometheus", command, &dir.path).expect("spawn prometheus");
        let ready = wait_until(DEADLINE, POLL, || {
            matches!(
                http::get(&format!("http://127.0.0.1:{port}/-/ready")),
                Ok((200, _))
            )
            .then_some(())
        });
        assert!(ready.is_some(), "prometheus not ready\n{}", proc.logs());
        Prometheus { port, _proc: proc }
    }

    fn query(&self, expr: &str) -> Vec<Value> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            percent_encode(expr)
        );
        let r = http::request("GET", &url, &[], "").expect("query");
        let body = r.json();
        assert_eq!(body["status"], "success", "{expr}: {}", r.body);
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls until `expr` returns at least one sample that `accept` likes.
    fn wait_for(&self, expr: &str, accept: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut last = Vec::new();
        let found = wait_until(DEADLINE, Duration::from_millis(250), || {
            last = self.query(expr);
            last.iter().any(&accept).then(|| last.clone())
        });
        found.unwrap_or_else(|| panic!("no acceptable result for {expr}: {last:?}"))
    }
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn dashboard_queries() -> Vec<(String, String)> {
    let path = workspace_root().join("deploy/grafana/mcp-gateway.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| {
                    (
                        title.clone(),
                        t["expr"].as_str().unwrap_or_default().to_string(),
                    )
                })
        })
        .collect()
}

#[test]
fn prometheus_scrapes_red_series_and_every_dashboard_query_returns_data() {
    let receiver = Receiver::start();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let stack = start_stack(&[
        "--otlp-endpoint",
        &endpoint,
        "--otlp-flush-interval",
        "100ms",
    ]);
    let prometheus = Prometheus::start(
        stack.collector.metrics_port,
        stack.envoy.admin_port,
        &stack.dir,
    );
    for job in ["host-collector", "envoy"] {
        prometheus.wait_for(&format!("up{{job=\"{job}\"}}"), |s| value(s) == 1.0);
    }
    // Traffic in two waves with a scrape between them, so every counter the checks below
    // look at has moved between two samples (a series first scraped at N has no rate yet).
    stack.scenario(&["--scenario", "all"]);
    stack.legacy_traffic();
    prometheus.wait_for("mcp_server_operations_total{tool=\"echo\"}", |s| {
        value(s) >= 1.0
    });
    stack.scenario(&["--scenario", "traffic", "--count", "20"]);
    stack.wait_responses(30);

    // RED from the collector, per instance and tool; the filter's own stats from Envoy.
    // The MCP instance arrives as `mcp_instance` (prometheus.yml), not Prometheus' `instance`.
    let rate = prometheus.wait_for(
        "sum by (mcp_instance) (increase(mcp_server_operations_total[5m]))",
        |s| s["metric"]["mcp_instance"] == "demo" && value(s) > 0.0,
    );
    assert!(!rate.is_empty());
    // The legacy transport's series appear with its traffic (counted since it started).
    prometheus.wait_for("sum by (mcp_instance) (mcp_server_operations_total)", |s| {
        s["metric"]["mcp_instance"] == "legacy" && value(s) >= 1.0
    });
    prometheus.wait_for(
        "sum by (tool, error_type) (mcp_server_operation_errors_total{method=\"tools/call\"})",
        |s| s["metric"]["tool"] == "fail" && value(s) >= 1.0,
    );
    prometheus.wait_for(
        "histogram_quantile(0.95, sum by (le) (rate(mcp_server_operation_duration_seconds_bucket{tool=\"echo\"}[5m])))",
        |s| value(s) > 0.0,
    );
    prometheus.wait_for("mcp_filter_upstream_breaker_state", |s| {
        s["metric"]["upstream"] == "demo" && value(s) == 0.0
    });
    prometheus.wait_for("sum(mcp_filter_events_emitted)", |s| value(s) > 0.0);

    // Every panel of the Grafana dashboard shows something after this traffic.
    let queries = dashboard_queries();
    assert!(queries.len() >= 16, "{queries:?}");
    for (title, expr) in &queries {
        let expr = expr.replace("$__rate_interval", "1m");
        let result = prometheus.wait_for(&expr, |_| true);
        eprintln!("panel {title:?}: {} series", result.len());
    }

    // The alert rules are loaded and healthy, and nothing fires on a healthy pipeline.
    let rules = http::request(
        "GET",
        &format!("http://127.0.0.1:{}/api/v1/rules", prometheus.port),
        &[],
        "",
    )
    .expect("rules")
    .json();
    let rules: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(rules.len(), 6, "{rules:?}");
    for rule in rules {
        assert_eq!(rule["health"], "ok", "{rule}");
        assert_eq!(rule["state"], "inactive", "{rule}");
    }
}

// ---------------------------------------------------------------------------
// 3. The audit view in Debian's Chromium (W3C WebDriver through chromedriver)
// ---------------------------------------------------------------------------

struct Browser {
    base: String,
    session: String,
    _driver: Proc,
}

impl Browser {
    fn start(dir: &TestDir) -> Browser {
        let port = free_port();
        let mut command = Command::new(tool("chromedriver"));
        command.arg(format!("--port={port}"));
        let driver = Proc::spawn("chromedriver", command, &dir.path).expect("chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let up = wait_until(DEADLINE, POLL, || {
            webdriver_http("GET", &base, "/status", None)
                .ok()
                .filter(|(s, body)| *s == 200 && body["value"]["ready"] == true)
        });
        assert!(up.is_some(), "chromedriver not ready\n{}", driver.logs());
        let profile = dir.file("chromium-profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": tool("chromium").display().to_string(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         format!("--user-data-dir={}", profile.display()),
                         "--window-size=1440,1400", "--hide-scrollbars"]
            }
        }}});
        let mut browser = Browser {
            base,
            session: String::new(),
            _driver: driver,
        };
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = if path == "/session" {
            path.to_string()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let (status, reply) = webdriver_http(method, &self.base, &path, body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let value = reply["value"].clone();
        assert_eq!(status, 200, "webdriver {method} {path}: {value}");
        value
    }

    fn script(&self, source: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": source, "args": []})),
        )
    }

    fn wait(&self, what: &str, source: &str) -> Value {
        let mut last = Value::Null;
        let done = wait_until(DEADLINE, Duration::from_millis(100), || {
            last = self.script(source);
            (!last.is_null() && last != json!(false)).then(|| last.clone())
        });
        done.unwrap_or_else(|| panic!("page never showed {what}: {last}"))
    }

    fn click(&self, css: &str) {
        let element = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {element}"))
            .to_string();
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn screenshot(&self) -> Vec<u8> {
        let encoded = self.call("GET", "/screenshot", None);
        base64_decode(encoded.as_str().expect("base64 PNG"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = webdriver_http("DELETE", &self.base, &path, None);
        }
    }
}

/// One WebDriver call. chromedriver keeps connections open whatever the request says, so the
/// reply is read by its Content-Length rather than to the end of the stream.
fn webdriver_http(
    method: &str,
    base: &str,
    path: &str,
    body: Option<Value>,
) -> std::io::Result<(u16, Value)> {
    let authority = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut reply = vec![0u8; length];
    reader.read_exact(&mut reply)?;
    Ok((
        status,
        serde_json::from_slice(&reply).unwrap_or(Value::Null),
    ))
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | (d << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

fn save_screenshot(png: &[u8], target: &Path) {
    std::fs::write(target, png).unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
    eprintln!("screenshot: {}", target.display());
}

#[test]
fn audit_view_searches_a_tool_and_opens_a_trace_in_headless_chromium() {
    let stack = start_stack(&[]);
    stack.demo_traffic();
    stack.wait_responses(30);
    let browser = Browser::start(&stack.dir);
    let url = format!(
        "http://127.0.0.1:{}/ui/#token={COLLECTOR_TOKEN}",
        stack.collector.port
    );
    browser.call("POST", "/url", Some(json!({ "url": url })));

    // The panels load from the query API with the token.
    browser.wait(
        "upstream health",
        "return [...document.querySelectorAll('#upstreams td')].some(td => td.textContent === 'demo')",
    );
    browser.wait(
        "loss accounting",
        "return document.querySelectorAll('#accounting tr').length >= 3",
    );
    assert_eq!(
        browser.script("return location.hash"),
        json!(""),
        "the token leaves the address bar"
    );

    // Search a tool.
    browser.script("document.getElementById('f-tool').value = 'echo'");
    browser.click("#search");
    let tools = browser.wait(
        "echo results only",
        "const rows = [...document.querySelectorAll('#results tbody tr')];
         const tools = rows.map(r => r.cells[4].textContent);
         return rows.length >= 20 && tools.every(t => t === 'echo') ? tools.length : false",
    );
    assert!(tools.as_u64().unwrap_or(0) >= 20, "{tools}");

    // Open the trace of the newest echo call: its events as a timeline.
    browser.click("#results tbody tr a.trace");
    let events = browser.wait(
        "the trace timeline",
        "const rows = [...document.querySelectorAll('#timeline .timeline-row[data-event]')];
         const events = rows.map(r => r.dataset.event);
         return events.includes('request') && events.includes('response') ? events : false",
    );
    let events: Vec<&str> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    // The shipped config logs at `info`: the request and its response, not the debug-level
    // director events.
    for expected in ["request", "response"] {
        assert!(events.contains(&expected), "{expected} in {events:?}");
    }
    assert!(
        !events.iter().any(|e| e.starts_with("director.")),
        "debug events under min_level info: {events:?}"
    );
    let shown = browser.script("return document.getElementById('trace-id').textContent");
    let stored = stack.query(&format!(
        "/v1/logs?trace_id={}",
        shown.as_str().unwrap_or_default()
    ));
    assert_eq!(
        stored["items"].as_array().map(Vec::len),
        Some(events.len()),
        "the timeline shows every stored event of the trace"
    );
    browser.click("#timeline .timeline-row[data-event='response']");
    browser.wait(
        "the event detail",
        "return document.getElementById('event-detail').textContent.includes('mcp.outcome')",
    );

    browser.script("window.scrollTo(0, 0)");
    let png = browser.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert!(png.len() > 20_000, "a rendered page, {} bytes", png.len());
    save_screenshot(
        &png,
        &test_support::paths::target_dir().join("audit-view.png"),
    );
    if std::env::var_os("UPDATE_DOCS_SCREENSHOT").is_some() {
        save_screenshot(&png, &workspace_root().join("docs/audit-view.png"));
    }
}

// ---------------------------------------------------------------------------
// 4. Shipped configs and rules
// ---------------------------------------------------------------------------

#[test]
fn every_shipped_envoy_config_passes_envoy_validate() {
    let dir = workspace_root().join("envoy");
    let configs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("envoy/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    assert!(!configs.is_empty());
    for config in configs {
        // From the repository root, as `make run` starts it (the filter path is relative).
        let out = Command::new(test_support::envoy::envoy_bin())
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&config)
            .current_dir(workspace_root())
            .output()
            .expect("envoy runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("OK"),
            "{} does not validate:\n{text}",
            config.display()
        );
    }
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let deploy = workspace_root().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts/mcp-gateway.rules.yml"],
        vec!["test", "rules", "alerts/mcp-gateway.rules.test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new(tool("promtool"))
            .args(&args)
            .current_dir(&deploy)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
