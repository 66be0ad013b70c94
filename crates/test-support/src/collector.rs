//! host-collector for tests: the real binary as a process ([`Collector`]: fresh ports,
//! restartable on the same ports, signalled, its logs and metrics read), the collector
//! in-process ([`start`]), NDJSON event builders, and reading its metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use host_collector::app::{self, Running};
use host_collector::config::Config;
use serde_json::Value;

use crate::http::{self, HttpResponse};
use crate::paths::{binary, free_port, TestDir};
use crate::poll::{eventually, wait_until, POLL, STARTUP_DEADLINE};
use crate::process::Proc;

/// The bearer token every test collector accepts.
pub const COLLECTOR_TOKEN: &str = "test-token-0123456789";

/// The headers of an authenticated NDJSON POST.
pub fn auth_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("authorization", "Bearer test-token-0123456789"),
        ("content-type", "application/x-ndjson"),
    ]
}

// ---------------------------------------------------------------------------
// The binary as a process
// ---------------------------------------------------------------------------

/// The `host-collector` binary on fresh loopback ports, its stdout and stderr in files of
/// its own test directory (kept across restarts, as is anything the arguments put there).
pub struct Collector {
    pub port: u16,
    pub metrics_port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    proc: Option<Proc>,
    /// Logs (stdout and stderr) of earlier incarnations, kept across restarts.
    pub old_logs: String,
    starts: u32,
    // Last: the process stops before its directory goes away.
    dir: TestDir,
}

impl Collector {
    /// The binary with `args`, `--token` [`COLLECTOR_TOKEN`] unless `args` or `env` set one;
    /// returns once it answers `/health` (200 or 503: a down database must not keep it from
    /// serving).
    pub fn start(args: &[&str]) -> Collector {
        Self::start_with_env(args, &[])
    }

    /// As [`start`](Self::start), with environment variables (`LOG_FORMAT`, `COLLECTOR_TOKEN`, ...).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Collector {
        Self::start_in(TestDir::new("collector"), args, env)
    }

    /// The collector of the pipeline tests: storing into `database_url`, with a spool (what it
    /// acknowledged survives its being killed, as in production) and short retry and health
    /// timings; `extra` flags come last.
    pub fn start_pipeline(database_url: &str, extra: &[&str]) -> Collector {
        let dir = TestDir::new("collector");
        let spool = dir.file("spool").display().to_string();
        let mut args = vec![
            "--database-url",
            database_url,
            "--spool-dir",
            &spool,
            "--retry-initial-backoff",
            "50ms",
            "--retry-max-backoff",
            "500ms",
            "--db-acquire-timeout",
            "1s",
            "--health-check-interval",
            "200ms",
        ];
        args.extend_from_slice(extra);
        Self::start_in(dir, &args, &[])
    }

    fn start_in(dir: TestDir, args: &[&str], env: &[(&str, &str)]) -> Collector {
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let has_token =
            args.iter().any(|a| a == "--token") || env.iter().any(|(k, _)| *k == "COLLECTOR_TOKEN");
        if !has_token {
            args.extend(["--token".to_string(), COLLECTOR_TOKEN.to_string()]);
        }
        let mut collector = Collector {
            port: free_port(),
            metrics_port: free_port(),
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            proc: None,
            old_logs: String::new(),
            starts: 0,
            dir,
        };
        collector.spawn();
        collector
    }

    /// Starts the stopped process again on the same ports with the same arguments.
    pub fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// As [`restart`](Self::restart), with `extra` arguments from now on.
    pub fn restart_with(&mut self, extra: &[&str]) {
        assert!(self.proc.is_none(), "restart of a running collector");
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn();
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let mut command = std::process::Command::new(binary("host-collector"));
        command
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let name = format!("host-collector-{}", self.starts);
        let mut proc = Proc::spawn(&name, command, &self.dir.path).expect("spawn collector");
        let health = format!("http://127.0.0.1:{}/health", self.port);
        // A TLS listener is up once it accepts connections (this client speaks plain HTTP).
        let tls = self.args.iter().any(|a| a == "--tls-cert");
        let up = wait_until(STARTUP_DEADLINE, POLL, || {
            proc.assert_running();
            if tls {
                return std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            }
            matches!(http::get(&health), Ok((200 | 503, _)))
        });
        assert!(up.is_some(), "collector not serving\n{}", proc.logs());
        self.proc = Some(proc);
    }

    fn running(&self) -> &Proc {
        self.proc.as_ref().expect("the collector is running")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.metrics_port))
    }

    /// A path in the collector's own directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.file(name)
    }

    pub fn pid(&self) -> u32 {
        self.running().pid()
    }

    pub fn signal(&self, signal: &str) {
        self.running().signal(signal);
    }

    /// Sends `signal` and waits (bounded) for the exit; returns the exit code (None: killed
    /// by a signal). The incarnation's logs move to [`old_logs`](Self::old_logs).
    pub fn kill_with(&mut self, signal: &str) -> Option<i32> {
        self.signal(signal);
        let mut proc = self.proc.take().expect("the collector is running");
        let status = wait_until(STARTUP_DEADLINE, POLL, || proc.exited())
            .unwrap_or_else(|| panic!("collector did not exit on {signal}\n{}", proc.logs()));
        self.old_logs.push_str(&proc.logs());
        status.code()
    }

    /// Logs of every incarnation, stdout and stderr.
    pub fn logs(&self) -> String {
        let mut all = self.old_logs.clone();
        if let Some(p) = &self.proc {
            all.push_str(&p.logs());
        }
        all
    }

    /// Waits for a stdout line of the running incarnation containing `needle` and returns it
    /// parsed (the collector must log JSON: `LOG_FORMAT=json`).
    pub fn wait_for_log(&self, needle: &str) -> Value {
        let proc = self.running();
        let line = wait_until(STARTUP_DEADLINE, POLL, || {
            proc.stdout()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no log line with {needle} in time:\n{}", proc.logs()));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"))
    }

    /// `GET /v1/accounting`.
    pub fn accounting(&self) -> Value {
        let r = http::request(
            "GET",
            &format!("http://127.0.0.1:{}/v1/accounting", self.port),
            &[("authorization", &format!("Bearer {COLLECTOR_TOKEN}"))],
            "",
        )
        .expect("GET /v1/accounting");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// The `/metrics` text ("" when it does not answer).
    pub fn metrics(&self) -> String {
        http::get(&format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Sum of every sample of `name` (any labels) whose label text contains `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> u64 {
        sum_metric(&self.metrics(), name, labels)
    }

    /// Value of one sample (exact name and labels as printed).
    pub fn sample(&self, sample: &str) -> Option<f64> {
        sample_value(&self.metrics(), sample)
    }
}

// ---------------------------------------------------------------------------
// Metrics text
// ---------------------------------------------------------------------------

/// Sum of every sample of `name` (any labels) whose label text contains `labels`.
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

/// Value of one sample (exact name and labels as printed) in a metrics text.
pub fn sample_value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Value of one sample from the `/metrics` endpoint at `metrics_addr`.
pub async fn metric_at(metrics_addr: SocketAddr, sample: &str) -> Option<f64> {
    let reply = http::request_at(metrics_addr, "GET", "/metrics", &[], Vec::new())
        .await
        .ok()?;
    sample_value(&reply.body, sample)
}

// ---------------------------------------------------------------------------
// In-process
// ---------------------------------------------------------------------------

/// Starts a collector in this process on ephemeral ports with test-friendly timings;
/// `extra` flags override.
pub async fn start(database_url: &str, extra: &[&str]) -> Running {
    let defaults = [
        ("--listen", "127.0.0.1:0"),
        ("--metrics-listen", "127.0.0.1:0"),
        ("--token", COLLECTOR_TOKEN),
        ("--database-url", database_url),
        ("--retry-initial-backoff", "20ms"),
        ("--retry-max-backoff", "200ms"),
        ("--db-acquire-timeout", "2s"),
        ("--health-check-interval", "100ms"),
        ("--drain-timeout", "5s"),
    ];
    let mut args = vec!["host-collector"];
    for (flag, value) in defaults {
        // Scoped tokens replace the default one.
        let replaced = flag == "--token" && extra.contains(&"--ingest-token");
        if !extra.contains(&flag) && !replaced {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    let config = Config::try_parse_from(args).unwrap_or_else(|e| panic!("bad test flags: {e}"));
    app::start(&config).await.expect("collector starts")
}

/// Waits until the in-process collector has persisted `n` events.
pub async fn wait_persisted(running: &Running, n: u64) {
    eventually(
        &format!("{n} events persisted"),
        Duration::from_secs(30),
        || async { running.snapshot().counters.persisted >= n },
    )
    .await;
}

/// Value of one sample from the in-process collector's `/metrics`.
pub async fn metric(running: &Running, sample: &str) -> Option<f64> {
    metric_at(running.metrics_addr, sample).await
}

/// Waits until the collector has failed at least `failures` database writes.
pub async fn wait_for_db_errors(running: &Running, failures: f64, what: &str) {
    eventually(what, Duration::from_secs(30), || async {
        metric(running, "collector_db_errors_total")
            .await
            .is_some_and(|errors| errors >= failures)
    })
    .await;
}

// ---------------------------------------------------------------------------
// Ingest
// ---------------------------------------------------------------------------

/// One event line with the contract's required fields.
pub fn event(source: &str, seq: u64, extra: &str) -> String {
    format!(
        r#"{{"ts":"2026-11-22T02:53:34.{:06}Z","source":"{source}","seq":{seq},"event":"request","level":"info"{extra}}}"#,
        seq % 1_000_000
    )
}

/// An NDJSON body of one event per seq.
pub fn events(source: &str, seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
    seqs.into_iter()
        .map(|s| event(source, s, "") + "\n")
        .collect::<String>()
        .into_bytes()
}

/// Authenticated `POST /v1/logs`.
pub async fn post(addr: SocketAddr, body: Vec<u8>) -> HttpResponse {
    http::request_at(addr, "POST", "/v1/logs", &auth_headers(), body)
        .await
        .expect("POST /v1/logs")
}

/// Authenticated `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http::request_at(addr, "GET", path, &auth_headers(), Vec::new())
        .await
        .expect("GET")
}

/// A SQLite file in a fresh test directory, removed with it.
pub struct TempSqlite {
    dir: TestDir,
}

impl Default for TempSqlite {
    fn default() -> Self {
        TempSqlite {
            dir: TestDir::new("sqlite"),
        }
    }
}

impl TempSqlite {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.dir.file("collector.db").display())
    }

    /// A path inside the temporary directory (removed with it).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.file(name)
    }
}
