//! The pipeline as processes, shared by tests/e2e_pipeline.rs and tests/reliability_*.rs: a
//! MariaDB database per test, the collector as a real process (restartable on the same port,
//! SIGTERM or SIGKILL), a TCP proxy in front of the shared MariaDB that the test can cut and restore, the Envoy
//! config with the filter shipping to the collector, a bounded load generator, the filter's
//! stats summed over workers, and the `RELIABILITY {json}` figures line.
//!
//! Needs `mod support; mod filter_host;` in the including test file.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::filter_host::envoy::{EnvoyConfig, Route};
use crate::support::{self, bin_dir, free_port, wait_until, Envoy, Proc, TestDir, POLL};

pub const COLLECTOR_TOKEN: &str = "reliability-collector-token-0042";

/// Prints (and appends to `$RELIABILITY_FIGURES` if set) one figures line.
pub fn figures(test: &str, value: Value) {
    let line = serde_json::json!({ "test": test, "figures": value });
    eprintln!("RELIABILITY {line}");
    if let Some(path) = std::env::var_os("RELIABILITY_FIGURES") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// `RELIABILITY_LONG=1` selects the long variants.
/// Fault tests restart and flood processes and measure the damage: they run one at a time
/// even when the test harness runs tests in parallel.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn long() -> bool {
    std::env::var("RELIABILITY_LONG").is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------

pub fn mysql(database: Option<&str>, sql: &str) -> String {
    let mut command = Command::new("mysql");
    command.args([
        "-h",
        "127.0.0.1",
        "-P",
        "3306",
        "-u",
        "root",
        "-N",
        "-B",
        "-e",
        sql,
    ]);
    if let Some(db) = database {
        command.arg(db);
    }
    let out = command.output().expect("the mysql client runs");
    assert!(
        out.status.success(),
        "mysql failed ({sql}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database of this test's own on the shared server, dropped at the end.
pub struct Database {
    pub name: String,
}

impl Database {
    pub fn create(label: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "rel_{label}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        mysql(
            None,
            &format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"),
        );
        Database { name }
    }

    pub fn url_via(&self, port: u16) -> String {
        format!("mysql://root@127.0.0.1:{port}/{}", self.name)
    }

    pub fn query(&self, sql: &str) -> String {
        mysql(Some(&self.name), sql)
    }

    pub fn count(&self, sql: &str) -> u64 {
        self.query(sql).parse().unwrap_or(0)
    }

    pub fn rows(&self) -> u64 {
        self.count("SELECT COUNT(*) FROM mcp_gateway_log")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("mysql")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {}", self.name))
            .status();
    }
}

// ---------------------------------------------------------------------------
// A TCP proxy in front of the shared MariaDB, cut and restored by the test
// ---------------------------------------------------------------------------

/// Cut: every open connection is shut down and new ones are closed at once, which is what
/// the collector sees when the database is stopped. Restore: connections pass again.
pub struct DbProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<thread::JoinHandle<()>>,
}

impl DbProxy {
    pub fn start(target_port: u16) -> DbProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, stop2, conns2) = (up.clone(), stop.clone(), conns.clone());
        let accept = thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if !up2.load(Ordering::SeqCst) {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                            continue;
                        };
                        let mut list = conns2.lock().unwrap();
                        list.retain(|s| s.peer_addr().is_ok());
                        for s in [&client, &server] {
                            if let Ok(c) = s.try_clone() {
                                list.push(c);
                            }
                        }
                        drop(list);
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        DbProxy {
            port,
            up,
            stop,
            conns,
            accept: Some(accept),
        }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The collector as a process
// ---------------------------------------------------------------------------

pub struct Collector {
    pub port: u16,
    pub metrics_port: u16,
    pub database_url: String,
    pub extra: Vec<String>,
    pub proc: Option<Proc>,
    /// Logs of earlier incarnations (stdout+stderr), kept across restarts.
    pub old_logs: String,
    starts: u32,
}

impl Collector {
    pub fn start(database_url: &str, extra: &[&str], dir: &TestDir) -> Collector {
        let mut c = Collector {
            port: free_port(),
            metrics_port: free_port(),
            database_url: database_url.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            proc: None,
            old_logs: String::new(),
            starts: 0,
        };
        c.spawn(dir);
        c
    }

    /// (Re)starts the process on the same ports and waits until it answers `/health`
    /// (200 or 503: a down database must not keep it from serving).
    pub fn spawn(&mut self, dir: &TestDir) {
        let bin = bin_dir().join("host-collector");
        assert!(
            bin.exists(),
            "{} missing: run `cargo build -p host-collector` with the same CARGO_TARGET_DIR",
            bin.display()
        );
        self.starts += 1;
        let mut command = Command::new(bin);
        command
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .args(["--database-url", &self.database_url])
            .args(["--token", COLLECTOR_TOKEN])
            // As in production: what the collector acknowledged survives its being killed.
            .arg("--spool-dir")
            .arg(dir.path.join("collector-spool"))
            .args([
                "--retry-initial-backoff",
                "50ms",
                "--retry-max-backoff",
                "500ms",
            ])
            .args([
                "--db-acquire-timeout",
                "1s",
                "--health-check-interval",
                "200ms",
            ])
            .args(&self.extra);
        let name = format!("host-collector-{}", self.starts);
        let mut proc = Proc::spawn(&name, command, &dir.path).expect("spawn collector");
        let health = format!("http://127.0.0.1:{}/health", self.port);
        let up = wait_until(Duration::from_secs(30), POLL, || {
            proc.assert_running();
            matches!(support::http_get(&health), Ok((200 | 503, _)))
        });
        assert!(up.is_some(), "collector not serving\n{}", proc.logs());
        self.proc = Some(proc);
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().expect("running").pid()
    }

    pub fn signal(&mut self, signal: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Sends `signal` and waits (bounded) for the exit; returns the exit code (None: signal).
    pub fn kill_with(&mut self, signal: &str) -> Option<i32> {
        self.signal(signal);
        let mut proc = self.proc.take().expect("running");
        let status = wait_until(Duration::from_secs(30), POLL, || proc.exited())
            .unwrap_or_else(|| panic!("collector did not exit on {signal}\n{}", proc.logs()));
        self.old_logs.push_str(&proc.logs());
        status.code()
    }

    pub fn logs(&self) -> String {
        let mut all = self.old_logs.clone();
        if let Some(p) = &self.proc {
            all.push_str(&p.logs());
        }
        all
    }

    pub fn accounting(&self) -> Value {
        let r = support::http_request(
            "GET",
            &format!("http://127.0.0.1:{}/v1/accounting", self.port),
            &[("authorization", &format!("Bearer {COLLECTOR_TOKEN}"))],
            None,
        )
        .expect("GET /v1/accounting");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    pub fn metrics(&self) -> String {
        support::http_get(&format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Sum of every sample of `name` (any labels) whose label text contains `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> u64 {
        sum_metric(&self.metrics(), name, labels)
    }
}

pub fn sum_metric(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let base = series.split('{').next()?;
            (base == name && series.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .sum()
}

// ---------------------------------------------------------------------------
// Envoy with the filter shipping to the collector
// ---------------------------------------------------------------------------

pub struct EnvoyOptions {
    pub validation: &'static str,
    pub log_events: bool,
    pub buffer_bytes: usize,
    pub workers: u32,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            validation: "observe",
            log_events: false,
            buffer_bytes: 8 * 1024 * 1024,
            workers: 2,
        }
    }
}

pub fn start_envoy(upstream_port: u16, collector_port: u16, options: &EnvoyOptions) -> Envoy {
    let filter = format!(
        r#"{{"instance": {{"source": {{"path_prefix": "/mcp/"}}, "allowed": ["demo"], "on_missing": "reject"}},
 "validation": "{}",
 "max_body_bytes": 1048576,
 "arguments": {{"capture": true, "max_bytes": 4096}},
 "collector": {{"cluster": "collector", "authority": "collector", "token": "{COLLECTOR_TOKEN}",
               "flush_interval_ms": 200, "backoff_initial_ms": 100, "backoff_max_ms": 1000,
               "timeout_ms": 2000, "buffer_bytes": {}, "log_events": {}}}}}"#,
        options.validation, options.buffer_bytes, options.log_events
    );
    let config = crate::filter_host::envoy_yaml(&EnvoyConfig {
        filter: &filter,
        routes: &[
            Route {
                prefix: "/mcp/demo/",
                cluster: "upstream",
                rewrite: Some("/"),
            },
            Route {
                prefix: "/mcp/",
                cluster: "upstream",
                rewrite: None,
            },
        ],
        clusters: &[("upstream", upstream_port), ("collector", collector_port)],
        ..EnvoyConfig::default()
    });
    Envoy::start(&config, options.workers)
}

/// Sum over workers of the stats whose name ends with `suffix`.
pub fn stat_sum(envoy: &Envoy, suffix: &str) -> u64 {
    envoy
        .stats()
        .iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .map(|(_, v)| *v)
        .sum()
}

/// The filter's shipping counters, summed over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterCounts {
    pub emitted: u64,
    pub shipped: u64,
    pub dropped_buffer_full: u64,
    pub dropped_callout_failed: u64,
    pub dropped_rejected: u64,
    pub internal_errors: u64,
}

impl FilterCounts {
    pub fn read(envoy: &Envoy) -> FilterCounts {
        let stats = envoy.stats();
        let sum = |suffix: &str| -> u64 {
            stats
                .iter()
                .filter(|(n, _)| n.ends_with(suffix))
                .map(|(_, v)| *v)
                .sum()
        };
        FilterCounts {
            emitted: sum("mcp_filter_events_emitted"),
            shipped: sum("mcp_filter_events_shipped"),
            dropped_buffer_full: sum("mcp_filter_events_dropped_buffer_full"),
            dropped_callout_failed: sum("mcp_filter_events_dropped_callout_failed"),
            dropped_rejected: sum("mcp_filter_events_dropped_rejected_by_collector"),
            internal_errors: sum("mcp_filter_internal_errors"),
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped_buffer_full + self.dropped_callout_failed + self.dropped_rejected
    }

    pub fn json(&self) -> Value {
        serde_json::json!({
            "emitted": self.emitted,
            "shipped": self.shipped,
            "dropped_buffer_full": self.dropped_buffer_full,
            "dropped_callout_failed": self.dropped_callout_failed,
            "dropped_rejected_by_collector": self.dropped_rejected,
            "internal_errors": self.internal_errors,
        })
    }
}

/// Waits (bounded) until the filter has shipped everything it emitted and the collector has
/// stored it: `emitted = stored + filter drops + collector drops`. Returns the last reading
/// either way, with whether the identity held.
pub fn settle(
    envoy: &Envoy,
    db: &Database,
    collector: &Collector,
    deadline: Duration,
) -> (bool, FilterCounts, u64, u64) {
    let mut last = (false, FilterCounts::default(), 0, 0);
    let mut quiet_reads = 0;
    let _ = wait_until(deadline, Duration::from_millis(250), || {
        let counts = FilterCounts::read(envoy);
        let stored = db.rows();
        let metrics = collector.metrics();
        let collector_dropped = sum_metric(
            &metrics,
            "collector_dropped_events_total",
            "origin=\"collector\"",
        );
        let holds =
            counts.emitted > 0 && counts.emitted == stored + counts.dropped() + collector_dropped;
        // Quiescent: the filter has nothing buffered or in flight, the collector's queue is
        // empty, and nothing changed since the last reading. If the identity still does not
        // hold then, the difference is a real loss (reported by the caller).
        let quiet = counts.emitted == counts.shipped + counts.dropped()
            && sum_metric(&metrics, "collector_queue_entries", "") == 0
            && (counts, stored, collector_dropped) == (last.1, last.2, last.3);
        quiet_reads = if quiet { quiet_reads + 1 } else { 0 };
        last = (holds, counts, stored, collector_dropped);
        holds || quiet_reads >= 8
    });
    last
}

// ---------------------------------------------------------------------------
// Load: MCP tools/call POSTs through Envoy, bounded in count and time
// ---------------------------------------------------------------------------

#[derive(Default)]
pub struct LoadCounters {
    pub ok: AtomicU64,
    pub http_errors: AtomicU64,
    pub io_errors: AtomicU64,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    pub counters: Arc<LoadCounters>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// A JSON-RPC tools/call of the demo server's `echo` tool.
pub fn echo_call(id: u64, text: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}}
    })
    .to_string()
}

pub const MCP_HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

impl Load {
    /// `clients` threads POSTing `echo` calls to `url()` (re-read each request so a test can
    /// switch Envoys) with a pause of `pause` between requests, until stopped or `max_time`.
    pub fn start(
        clients: usize,
        pause: Duration,
        max_time: Duration,
        url: Arc<Mutex<String>>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(LoadCounters::default());
        let threads = (0..clients)
            .map(|c| {
                let (stop, counters, url) = (stop.clone(), counters.clone(), url.clone());
                thread::spawn(move || {
                    let end = Instant::now() + max_time;
                    let mut i = 0u64;
                    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                        i += 1;
                        let target = url.lock().unwrap().clone();
                        let body = echo_call(i, &format!("load-{c}-{i}"));
                        match fast_post(&target, MCP_HEADERS, &body) {
                            Ok((200, _)) => {
                                counters.ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(_) => {
                                counters.http_errors.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => {
                                counters.io_errors.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        thread::sleep(pause);
                    }
                })
            })
            .collect();
        Load {
            stop,
            counters,
            threads,
        }
    }

    pub fn ok(&self) -> u64 {
        self.counters.ok.load(Ordering::SeqCst)
    }

    pub fn errors(&self) -> u64 {
        self.counters.http_errors.load(Ordering::SeqCst)
            + self.counters.io_errors.load(Ordering::SeqCst)
    }

    /// Stops the clients and returns (served, errors).
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (self.ok(), self.errors())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Per source: rows, distinct seqs and the highest seq stored.
pub fn per_source(db: &Database) -> Vec<(String, u64, u64, u64)> {
    db.query("SELECT source, COUNT(*), COUNT(DISTINCT seq), MAX(seq) FROM mcp_gateway_log GROUP BY source")
        .lines()
        .filter_map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Some((
                c.first()?.to_string(),
                c.get(1)?.parse().ok()?,
                c.get(2)?.parse().ok()?,
                c.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Envoy log lines that indicate a wasm trap or a filter panic.
pub fn trap_lines(envoy: &Envoy) -> Vec<String> {
    envoy
        .log_text()
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("runtimeerror")
                || l.contains("unreachable")
                || l.contains("panicked")
                || l.contains("wasm trap")
                || (l.contains("function: proxy_on") && l.contains("failed"))
        })
        .map(str::to_string)
        .collect()
}

/// Like `support::http_request` (POST, `Connection: close`) but returns as soon as the
/// response is complete by `Content-Length` or the chunked terminator, instead of waiting for
/// EOF: Envoy holds locally generated replies' connections open for its 1 s
/// `delayed_close_timeout`, which would make hundreds of refused requests take minutes.
pub fn fast_post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> std::io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.as_ref();
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let body_len = raw.len() - split - 4;
            let content_length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let done = match content_length {
                Some(n) => body_len >= n,
                None => head.contains("transfer-encoding: chunked") && raw.ends_with(b"0\r\n\r\n"),
            };
            if done {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {text:.200}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
