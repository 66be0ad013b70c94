//! Shared test harness: starting a collector in-process, MariaDB databases per test (created
//! and dropped), a TCP proxy that can cut the database off, NDJSON builders and polling.
#![allow(dead_code)]

pub mod client;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use host_collector::app::{self, Running};
use host_collector::config::Config;
use sqlx::mysql::MySqlPool;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const TOKEN: &str = "test-token-0123456789";
pub const MARIADB_ADMIN_URL: &str = "mysql://root@127.0.0.1:3306/test";
pub const MARIADB_ADDR: &str = "127.0.0.1:3306";

pub fn auth_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("authorization", "Bearer test-token-0123456789"),
        ("content-type", "application/x-ndjson"),
    ]
}

/// Starts a collector on ephemeral ports with test-friendly timings; `extra` flags override.
pub async fn start(database_url: &str, extra: &[&str]) -> Running {
    let defaults = [
        ("--listen", "127.0.0.1:0"),
        ("--metrics-listen", "127.0.0.1:0"),
        ("--token", TOKEN),
        ("--database-url", database_url),
        ("--retry-initial-backoff", "20ms"),
        ("--retry-max-backoff", "200ms"),
        ("--db-acquire-timeout", "2s"),
        ("--health-check-interval", "100ms"),
        ("--drain-timeout", "5s"),
    ];
    let mut args = vec!["host-collector"];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    let config = Config::try_parse_from(args).unwrap_or_else(|e| panic!("bad test flags: {e}"));
    app::start(&config).await.expect("collector starts")
}

/// One event line with the contract's required fields.
pub fn event(source: &str, seq: u64, extra: &str) -> String {
    format!(
        r#"{{"ts":"2026-11-22T02:53:34.{:06}Z","source":"{source}","seq":{seq},"event":"request","level":"info"{extra}}}"#,
        seq % 1_000_000
    )
}

pub fn events(source: &str, seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
    seqs.into_iter()
        .map(|s| event(source, s, "") + "\n")
        .collect::<String>()
        .into_bytes()
}

pub async fn post(addr: SocketAddr, body: Vec<u8>) -> client::Reply {
    client::request(addr, "POST", "/v1/logs", &auth_headers(), body)
        .await
        .expect("POST /v1/logs")
}

pub async fn get(addr: SocketAddr, path: &str) -> client::Reply {
    client::request(addr, "GET", path, &auth_headers(), Vec::new())
        .await
        .expect("GET")
}

/// Polls `check` until it holds or the deadline passes (then panics with `what`).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_persisted(running: &Running, n: u64) {
    eventually(
        &format!("{n} events persisted"),
        Duration::from_secs(30),
        || async { running.snapshot().counters.persisted >= n },
    )
    .await;
}

/// Value of one sample (exact name and labels as printed) from `/metrics`.
pub async fn metric(running: &Running, sample: &str) -> Option<f64> {
    metric_at(running.metrics_addr, sample).await
}

pub async fn metric_at(metrics_addr: SocketAddr, sample: &str) -> Option<f64> {
    let reply = client::request(metrics_addr, "GET", "/metrics", &[], Vec::new())
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&reply.body).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

/// A MariaDB database that exists only for one test.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:3306/{}", self.name)
    }

    /// The URL reaching the database through a proxy on `port`.
    pub fn url_via(&self, port: u16) -> String {
        format!("mysql://root@127.0.0.1:{port}/{}", self.name)
    }

    pub async fn pool(&self) -> MySqlPool {
        MySqlPool::connect(&self.url())
            .await
            .expect("connect to test database")
    }
}

async fn admin() -> MySqlPool {
    match MySqlPool::connect(MARIADB_ADMIN_URL).await {
        Ok(p) => p,
        Err(e) => panic!(
            "MariaDB must be running at {MARIADB_ADDR} (user root, empty password) for these \
             tests; start it with `start-stop-daemon --start --oknodo --background --exec \
             /usr/sbin/mariadbd`. Error: {e}"
        ),
    }
}

/// Runs `test` with a fresh database and drops the database afterwards, even if it panics.
pub async fn with_mariadb<F, Fut>(test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin = admin().await;
    let name = format!(
        "hc_test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create test database");
    let outcome = tokio::spawn(test(TestDb { name: name.clone() })).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&admin)
    .await
    .expect("drop test database");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A SQLite file in a fresh temporary directory, removed afterwards.
pub struct TempSqlite {
    dir: std::path::PathBuf,
}

impl TempSqlite {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "hc-test-{}-{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempSqlite { dir }
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.dir.join("collector.db").display())
    }

    /// A path inside the temporary directory (removed with it).
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }
}

/// The real `host-collector` binary on ephemeral ports, JSON logs collected as they come.
pub struct CollectorProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub log: Vec<String>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl CollectorProcess {
    /// Starts the binary with `args` (besides listen addresses and the token) and waits for
    /// its `start` log line.
    pub async fn start(args: &[&str]) -> CollectorProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_host-collector"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(args)
            .env("COLLECTOR_TOKEN", TOKEN)
            .env("LOG_FORMAT", "json")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn host-collector");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut process = CollectorProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: Vec::new(),
            lines,
        };
        let start = process.wait_for_log("\"ev\":\"start\"").await;
        let addr = |key: &str| {
            start[key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("{key} in {start}"))
        };
        process.addr = addr("addr");
        process.metrics_addr = addr("metrics_addr");
        process
    }

    /// Waits for a log line containing `needle` and returns it parsed.
    pub async fn wait_for_log(&mut self, needle: &str) -> serde_json::Value {
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return serde_json::from_str(line).expect("JSON log line");
        }
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {needle} in time: {:?}", self.log))
                .unwrap_or_else(|| panic!("process ended before logging {needle}: {:?}", self.log));
            self.log.push(line.clone());
            if line.contains(needle) {
                return serde_json::from_str(&line).expect("JSON log line");
            }
        }
    }

    /// Sends `signal` (e.g. "TERM", "KILL") and returns the exit code (None when killed).
    pub async fn signal_and_wait(mut self, signal: &str) -> (Option<i32>, Vec<String>) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let mut child = self.child;
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        while let Some(line) = self.lines.recv().await {
            self.log.push(line);
        }
        (status.code(), self.log)
    }

    /// Value of one sample (exact name and labels as printed) from `/metrics`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        metric_at(self.metrics_addr, sample).await
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy in front of the database that the test can cut (existing connections reset,
/// new ones refused) and restore, without touching the shared server.
pub struct CutProxy {
    pub port: u16,
    up: watch::Sender<bool>,
}

impl CutProxy {
    pub async fn start(target: &'static str) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let (up, up_rx) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*up_rx.borrow() {
                    drop(client);
                    continue;
                }
                let rx = up_rx.clone();
                tokio::spawn(pipe(client, target, rx));
            }
        });
        CutProxy { port, up }
    }

    pub fn cut(&self) {
        let _ = self.up.send(false);
    }

    pub fn restore(&self) {
        let _ = self.up.send(true);
    }
}

async fn pipe(mut client: TcpStream, target: &str, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|u| !*u) => {}
    }
}
