//! collector-bench: measures the collector as ratios side by side in one run (this machine is
//! small and shared, so absolute numbers are noisy). Run with `--release`:
//!
//!   cargo run --release -p host-collector --bin collector-bench
//!
//! 1. Writer: rows/s persisted into MariaDB by the real writer (queue -> ordered batches ->
//!    multi-row INSERT transactions) vs a one-INSERT-per-event writer, rounds interleaved.
//! 2. Ingest: events/s over HTTP NDJSON on loopback into the real binary (MariaDB store),
//!    with 200-event and 10-event requests interleaved.
//! 3. Memory: RSS of the binary flooded with 4x its queue budget while its database is down.
//! 4. Spool: ingest events/s without a spool, with one, and with one fsynced per request,
//!    rounds interleaved (database down, so only the ingest path is measured).
//! 5. OTLP: ingest events/s with export off, on (to a receiver in this process) and on towards
//!    a dead endpoint, rounds interleaved (database down); spans/s the receiver got while
//!    ingest ran, and what the exporter dropped, by reason. `BENCH_ONLY=otlp` runs only this.
//! 6. PostgreSQL: rows/s by the real writer vs one INSERT per event vs `COPY … FROM STDIN`
//!    (the bulk path, no conflict handling), rounds interleaved. `BENCH_ONLY=postgres` runs
//!    only this.
//!
//! Needs MariaDB at 127.0.0.1:3306 (root, no password) and PostgreSQL at 127.0.0.1:5432
//! (trust auth, user root); uses and drops its own databases.

#[path = "collector-bench/client.rs"]
mod client;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use host_collector::buffer::Buffer;
use host_collector::event::{Level, Row};
use host_collector::internal_events::Telemetry;
use host_collector::store::{open_mysql, open_postgres, Store, StoreOptions};
use host_collector::writer::{Writer, WriterConfig};
use sqlx::mysql::MySqlPool;

const ADMIN_URL: &str = "mysql://root@127.0.0.1:3306/test";
const TOKEN: &str = "bench-token-0123456789";
const ROUNDS: usize = 5;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A realistic `response` event line (about 450 bytes).
fn event_line(source: &str, seq: u64) -> String {
    format!(
        r#"{{"ts":"2026-11-22T02:53:34.{:06}Z","source":"{source}","seq":{seq},"event":"response","level":"info","message":"tools/call completed","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","instance_id":"mcp-instance-01","mcp.method.name":"tools/call","gen_ai.tool.name":"search_documents","token_header":"Authorization","token":"sha256:9f86d081884c","jsonrpc.request.id":"{seq}","mcp.session.id":"3c9a1f2e-5d4b-4a7e-9c1d-2b8e7f6a5c4d","rpc.response.status_code":200,"duration_ms":12.5}}"#,
        seq % 1_000_000
    )
}

fn rows(source: &str, n: u64) -> Vec<Row> {
    let now = chrono::Utc::now().naive_utc();
    (1..=n)
        .map(|seq| Row {
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: Some("b7ad6b7169203331".into()),
            instance_id: Some("mcp-instance-01".into()),
            mcp_method: Some("tools/call".into()),
            tool_name: Some("search_documents".into()),
            token_header: Some("Authorization".into()),
            token: Some("sha256:9f86d081884c".into()),
            event: "response".into(),
            level: Level::Info,
            log: event_line(source, seq),
            source: source.into(),
            seq,
            created_at: now,
            received_at: now,
        })
        .collect()
}

async fn writer_batched(store: Arc<dyn Store>, source: &str, n: u64) -> Result<f64, Error> {
    let telemetry = Arc::new(Telemetry::default());
    let buffer = Arc::new(Buffer::memory(1 << 30, telemetry.clone()));
    let writer = Writer {
        buffer: buffer.clone(),
        store,
        telemetry,
        observers: Vec::new(),
        config: WriterConfig {
            batch_max_rows: 1000,
            batch_max_bytes: 4 << 20,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            write_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(60),
            isolate_after_refusals: 3,
        },
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(writer.run(stop_rx));
    let input = rows(source, n);
    let started = Instant::now();
    buffer.push(input)?;
    while buffer.levels().counters.persisted < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    task.await?;
    Ok(n as f64 / elapsed)
}

async fn writer_one_by_one(url: &str, source: &str, n: u64) -> Result<f64, Error> {
    let store = open_mysql(url, &store_options())?;
    let input = rows(source, n);
    let started = Instant::now();
    let inserted = store.insert_each(&input).await?;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(inserted, n);
    Ok(n as f64 / elapsed)
}

fn store_options() -> StoreOptions {
    StoreOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(10),
    }
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Collector {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Collector {
    async fn spawn(database_url: &str, extra: &[&str]) -> Result<Collector, Error> {
        let exe = std::env::current_exe()?.with_file_name("host-collector");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let child = Command::new(&exe)
            .args([
                "--listen",
                &addr.to_string(),
                "--metrics-listen",
                &metrics.to_string(),
            ])
            .args(["--database-url", database_url, "--token", TOKEN])
            .args(extra)
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {} (build it first): {e}", exe.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while client::request(addr, "GET", "/health", &[], Vec::new())
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err("collector did not start".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Collector {
            child,
            addr,
            metrics,
        })
    }

    fn rss_kib(&self, field: &str) -> Result<u64, Error> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {field} in /proc status").into())
    }

    async fn metric(&self, name: &str) -> Result<f64, Error> {
        let reply = client::request(self.metrics, "GET", "/metrics", &[], Vec::new()).await?;
        let text = String::from_utf8_lossy(&reply.body).to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("metric {name} missing").into())
    }

    fn stop(mut self) -> Result<(), Error> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Collector {
    /// Never leave a collector behind if the bench fails half-way (a no-op after `stop`).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends `requests` bodies of `per_request` events over `connections` keep-alive connections.
async fn flood(
    addr: SocketAddr,
    tag: &str,
    connections: usize,
    requests: usize,
    per_request: u64,
) -> Result<f64, Error> {
    let headers = [
        ("authorization", "Bearer bench-token-0123456789"),
        ("content-type", "application/x-ndjson"),
    ];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let source = format!("{tag}-c{c}");
        let bodies: Vec<Vec<u8>> = (0..requests / connections)
            .map(|r| {
                let first = r as u64 * per_request + 1;
                (first..first + per_request)
                    .map(|seq| event_line(&source, seq) + "\n")
                    .collect::<String>()
                    .into_bytes()
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut client = client::Client::connect(addr).await?;
            for body in bodies {
                let reply = client.send("POST", "/v1/logs", &headers, body).await?;
                if reply.status != 200 {
                    return Err(format!("status {}", reply.status));
                }
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let events = (requests / connections * connections) as u64 * per_request;
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

async fn bench_writer(db_url: &str) -> Result<(), Error> {
    let store: Arc<dyn Store> = Arc::new(open_mysql(db_url, &store_options())?);
    store.prepare().await?;
    let (mut batched, mut single) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        batched.push(writer_batched(store.clone(), &format!("batched-{round}"), 20_000).await?);
        single.push(writer_one_by_one(db_url, &format!("single-{round}"), 2_000).await?);
        println!(
            "  round {round}: batched writer {:>9.0} rows/s   one INSERT per event {:>7.0} rows/s",
            batched[round], single[round]
        );
    }
    let (b, s) = (median(batched), median(single));
    println!("writer into MariaDB (median of {ROUNDS}): batched {b:.0} rows/s, one-per-event {s:.0} rows/s, ratio {:.1}x", b / s);
    Ok(())
}

/// One column of PostgreSQL's COPY text format: tabs, newlines and backslashes escaped.
fn copy_text(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// Rows/s of one `COPY … FROM STDIN` of `n` rows.
async fn writer_copy(pool: &sqlx::PgPool, source: &str, n: u64) -> Result<f64, Error> {
    let input = rows(source, n);
    let started = Instant::now();
    let opt = |v: &Option<String>| v.as_deref().map_or("\\N".to_string(), copy_text);
    let mut text = String::with_capacity(input.len() * 600);
    for row in &input {
        let fields = [
            opt(&row.trace_id),
            opt(&row.span_id),
            opt(&row.instance_id),
            opt(&row.mcp_method),
            opt(&row.tool_name),
            opt(&row.token_header),
            opt(&row.token),
            copy_text(&row.event),
            // The "char" level, as an octal escape of its byte.
            format!("\\{:03o}", row.level as i8),
            copy_text(&row.log),
            copy_text(&row.source),
            row.seq.to_string(),
            row.created_at.to_string(),
            row.received_at.to_string(),
        ];
        text.push_str(&fields.join("\t"));
        text.push('\n');
    }
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY mcp_gateway_log (trace_id, span_id, instance_id, mcp_method, tool_name, \
             token_header, token, event, level, log, source, seq, created_at, received_at) \
             FROM STDIN",
        )
        .await?;
    copy.send(text.as_bytes()).await?;
    let copied = copy.finish().await?;
    assert_eq!(copied, n);
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

async fn bench_postgres() -> Result<(), Error> {
    let admin = sqlx::PgPool::connect("postgres://root@127.0.0.1:5432/postgres")
        .await
        .map_err(|e| format!("PostgreSQL at 127.0.0.1:5432 is required: {e}"))?;
    let name = format!("hc_bench_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    let url = format!("postgres://root@127.0.0.1:5432/{name}");
    let result = async {
        let store = Arc::new(open_postgres(&url, &store_options())?);
        store.prepare().await?;
        let pool = sqlx::PgPool::connect(&url).await?;
        let (mut batched, mut single, mut copied) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            batched.push(writer_batched(store.clone(), &format!("batched-{round}"), 20_000).await?);
            let input = rows(&format!("single-{round}"), 2_000);
            let started = Instant::now();
            let inserted = store.insert_each(&input).await?;
            assert_eq!(inserted, 2_000);
            single.push(2_000.0 / started.elapsed().as_secs_f64());
            copied.push(writer_copy(&pool, &format!("copy-{round}"), 20_000).await?);
            println!(
                "  round {round}: batched writer {:>9.0} rows/s   one INSERT per event {:>7.0} rows/s   COPY {:>9.0} rows/s",
                batched[round], single[round], copied[round]
            );
        }
        let (b, s, c) = (median(batched), median(single), median(copied));
        println!(
            "writer into PostgreSQL (median of {ROUNDS}): batched {b:.0} rows/s, one-per-event {s:.0} rows/s ({:.1}x slower), COPY {c:.0} rows/s ({:.2}x the batched writer)",
            b / s,
            c / b
        );
        Ok::<(), Error>(())
    }
    .await;
    pool_drop(&admin, &name).await?;
    result
}

async fn pool_drop(admin: &sqlx::PgPool, name: &str) -> Result<(), Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(admin)
    .await?;
    Ok(())
}

async fn bench_ingest(db_url: &str) -> Result<(), Error> {
    let collector = Collector::spawn(db_url, &[]).await?;
    let started = Instant::now();
    let (mut big, mut small) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        big.push(flood(collector.addr, &format!("big{round}"), 4, 200, 200).await?);
        small.push(flood(collector.addr, &format!("small{round}"), 4, 400, 10).await?);
        println!(
            "  round {round}: 200 events/request {:>9.0} events/s   10 events/request {:>9.0} events/s",
            big[round], small[round]
        );
    }
    let sent = (ROUNDS * (200 * 200 + 400 * 10)) as f64;
    let ingested_in = started.elapsed().as_secs_f64();
    // Ingest outpaces the writer, so the queue may have shed its oldest events: wait until
    // it is empty, then every event is either persisted or counted as dropped.
    while collector.metric("collector_queue_entries").await? > 0.0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_in = started.elapsed().as_secs_f64();
    let persisted = collector.metric("collector_events_persisted_total").await?;
    let dropped = collector
        .metric(r#"collector_dropped_events_total{origin="collector",reason="queue_full"}"#)
        .await?;
    collector.stop()?;
    let (b, s) = (median(big), median(small));
    println!("ingest over HTTP NDJSON, loopback, 4 connections (median of {ROUNDS}): {b:.0} events/s with 200-event requests, {s:.0} events/s with 10-event requests, ratio {:.1}x", b / s);
    println!("full pipeline: {sent} events accepted in {ingested_in:.1} s; queue empty after {drained_in:.1} s: {persisted} persisted ({:.0} rows/s end to end, ingest and writer sharing the CPUs), {dropped} dropped as queue_full (default 200 MiB budget)", persisted / drained_in);
    Ok(())
}

async fn bench_spool() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("hc-bench-spool-{}", std::process::id()));
    let spool = dir.join("spool");
    let fsynced = dir.join("spool-fsync");
    let (spool, fsynced) = (spool.to_string_lossy(), fsynced.to_string_lossy());
    let down = "mysql://root@127.0.0.1:1/down";
    let variants = [
        // A short drain: at the end nothing can be written anyway.
        (
            "no spool",
            Collector::spawn(down, &["--drain-timeout", "1s"]).await?,
        ),
        (
            "spool",
            Collector::spawn(down, &["--drain-timeout", "1s", "--spool-dir", &spool]).await?,
        ),
        (
            "spool + fsync",
            Collector::spawn(
                down,
                &[
                    "--drain-timeout",
                    "1s",
                    "--spool-dir",
                    &fsynced,
                    "--spool-fsync",
                ],
            )
            .await?,
        ),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..ROUNDS {
        for (i, (_, collector)) in variants.iter().enumerate() {
            rates[i].push(flood(collector.addr, &format!("spool{round}"), 4, 100, 200).await?);
        }
    }
    let medians: Vec<f64> = rates.into_iter().map(median).collect();
    for (_, collector) in variants {
        collector.stop()?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "spool, ingest over HTTP NDJSON, 200-event requests, database down (median of {ROUNDS}): no spool {:.0} events/s, spool {:.0} events/s ({:.2}x), spool + fsync {:.0} events/s ({:.2}x)",
        medians[0],
        medians[1],
        medians[1] / medians[0],
        medians[2],
        medians[2] / medians[0]
    );
    Ok(())
}

/// An OTLP/HTTP endpoint that reads each request and answers 200, counting requests and bytes.
async fn otlp_sink() -> Result<(SocketAddr, Arc<std::sync::atomic::AtomicU64>), Error> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let bytes = Arc::new(AtomicU64::new(0));
    let counter = bytes.clone();
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(body.len() as u64, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, bytes))
}

async fn bench_otlp() -> Result<(), Error> {
    let down = "mysql://root@127.0.0.1:1/down";
    let (sink, _) = otlp_sink().await?;
    let sink = format!("http://{sink}");
    let dead = "http://127.0.0.1:1";
    let common = ["--drain-timeout", "1s", "--otlp-metrics-interval", "1h"];
    let with = |endpoint: &str| {
        let mut args = common.to_vec();
        args.extend(["--otlp-endpoint", endpoint]);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let args: [Vec<String>; 3] = [
        common.iter().map(|s| s.to_string()).collect(),
        with(&sink),
        with(dead),
    ];
    let mut variants = Vec::new();
    for a in &args {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        variants.push(Collector::spawn(down, &a).await?);
    }
    let names = ["export off", "export on", "export on, dead endpoint"];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut span_rates = Vec::new();
    for round in 0..ROUNDS {
        for (i, collector) in variants.iter().enumerate() {
            const EXPORTED: &str = r#"collector_otlp_exported_total{signal="spans"}"#;
            let before = if i == 1 {
                collector.metric(EXPORTED).await?
            } else {
                0.0
            };
            let started = Instant::now();
            rates[i].push(flood(collector.addr, &format!("otlp{round}"), 4, 100, 200).await?);
            if i == 1 {
                // Spans the endpoint accepted while ingest ran, plus what the exporter still
                // had in hand after it: wait for it to go quiet (bounded).
                let mut last = collector.metric(EXPORTED).await?;
                for _ in 0..50 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let now = collector.metric(EXPORTED).await?;
                    if now == last {
                        break;
                    }
                    last = now;
                }
                span_rates.push((last - before) / started.elapsed().as_secs_f64());
            }
        }
    }
    let medians: Vec<f64> = rates.into_iter().map(median).collect();
    for (i, collector) in variants.iter().enumerate().skip(1) {
        let mut drops = Vec::new();
        for sample in [
            r#"collector_otlp_dropped_total{signal="events",reason="queue_full"}"#,
            r#"collector_otlp_dropped_total{signal="spans",reason="queue_full"}"#,
            r#"collector_otlp_dropped_total{signal="spans",reason="unreachable"}"#,
            r#"collector_otlp_dropped_total{signal="spans",reason="timeout"}"#,
        ] {
            drops.push(format!(
                "{} {}",
                sample
                    .split('{')
                    .nth(1)
                    .unwrap_or(sample)
                    .trim_end_matches('}'),
                collector.metric(sample).await.unwrap_or(0.0)
            ));
        }
        let exported = collector
            .metric(r#"collector_otlp_exported_total{signal="spans"}"#)
            .await
            .unwrap_or(0.0);
        println!(
            "  {}: {exported} spans exported; dropped: {}",
            names[i],
            drops.join(", ")
        );
    }
    for collector in variants {
        collector.stop()?;
    }
    println!(
        "otlp, ingest over HTTP NDJSON, 200-event requests, database down (median of {ROUNDS}): export off {:.0} events/s, export on {:.0} events/s ({:.2}x), dead endpoint {:.0} events/s ({:.2}x); spans exported while ingesting: {:.0} spans/s (median)",
        medians[0],
        medians[1],
        medians[1] / medians[0],
        medians[2],
        medians[2] / medians[0],
        median(span_rates)
    );
    Ok(())
}

async fn bench_memory() -> Result<(), Error> {
    let budget_mib = 64u64;
    // Port 1 on loopback refuses connections: the database is down for the whole run.
    let collector = Collector::spawn(
        "mysql://root@127.0.0.1:1/down",
        &["--queue-budget", &format!("{budget_mib}MiB")],
    )
    .await?;
    let idle = collector.rss_kib("VmRSS:")?;
    let mut sent = 0.0;
    let mut samples = Vec::new();
    // Each round sends ~90 MiB of events; 4 rounds is about 5.5x the budget.
    for round in 0..4 {
        sent += 200.0 * 500.0 * 900.0 / (1024.0 * 1024.0);
        flood(collector.addr, &format!("mem{round}"), 4, 200, 500).await?;
        let rss = collector.rss_kib("VmRSS:")?;
        let queue = collector.metric("collector_queue_bytes").await? / (1024.0 * 1024.0);
        println!(
            "  after ~{sent:.0} MiB sent: RSS {:.1} MiB, queue {queue:.1} MiB",
            rss as f64 / 1024.0
        );
        samples.push(rss);
    }
    let peak = collector.rss_kib("VmHWM:")?;
    let dropped = collector
        .metric(r#"collector_dropped_events_total{origin="collector",reason="queue_full"}"#)
        .await?;
    let queued = collector.metric("collector_queue_entries").await?;
    collector.stop()?;
    println!(
        "memory with the database down, budget {budget_mib} MiB: idle RSS {:.1} MiB, final RSS {:.1} MiB, peak RSS {:.1} MiB ({:.2}x budget); {queued} events held, {dropped} dropped as queue_full",
        idle as f64 / 1024.0,
        *samples.last().unwrap_or(&0) as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak as f64 / 1024.0 / budget_mib as f64
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "otlp") {
        println!("== OTLP export cost on ingest ==");
        return bench_otlp().await;
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "postgres") {
        println!("== writer into PostgreSQL: batched vs one INSERT per event vs COPY ==");
        return bench_postgres().await;
    }
    let admin = MySqlPool::connect(ADMIN_URL)
        .await
        .map_err(|e| format!("MariaDB at 127.0.0.1:3306 is required: {e}"))?;
    let name = format!("hc_bench_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    let db_url = format!("mysql://root@127.0.0.1:3306/{name}");
    let result = async {
        println!("== writer: batched vs one INSERT per event ==");
        bench_writer(&db_url).await?;
        println!("== ingest ==");
        bench_ingest(&db_url).await?;
        println!("== spool cost on ingest ==");
        bench_spool().await?;
        println!("== OTLP export cost on ingest ==");
        bench_otlp().await?;
        println!("== writer into PostgreSQL: batched vs one INSERT per event vs COPY ==");
        bench_postgres().await?;
        println!("== memory under flood, database down ==");
        bench_memory().await
    }
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&admin)
    .await?;
    result
}
