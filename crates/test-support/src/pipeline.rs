//! The pipeline under test as processes: Envoy running the filter that ships to the
//! collector ([`start_envoy`]), the filter's counters summed over workers ([`FilterCounts`]),
//! waiting for the loss identity `emitted = stored + dropped` ([`settle`]), a bounded load
//! of MCP calls ([`Load`]), Envoy log traps, and the `RELIABILITY {json}` figures line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::collector::{sum_metric, Collector, COLLECTOR_TOKEN};
use crate::db::TestDb;
use crate::envoy::{envoy_yaml, stat_sum, Envoy, EnvoyConfig, DEMO_ROUTES};
use crate::http;
use crate::poll::wait_until;

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

/// Fault tests restart and flood processes and measure the damage: they run one at a time
/// even when the test harness runs tests in parallel.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `RELIABILITY_LONG=1` selects the long variants.
pub fn long() -> bool {
    std::env::var("RELIABILITY_LONG").is_ok_and(|v| v == "1")
}

pub struct EnvoyOptions {
    pub validation: &'static str,
    pub log_events: bool,
    pub buffer_bytes: usize,
    pub workers: u32,
    /// The collectors serve TLS with a certificate this PEM CA file signs.
    pub collector_tls_ca: Option<String>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            validation: "observe",
            log_events: false,
            buffer_bytes: 8 * 1024 * 1024,
            workers: 2,
            collector_tls_ca: None,
        }
    }
}

pub fn start_envoy(upstream_port: u16, collector_port: u16, options: &EnvoyOptions) -> Envoy {
    start_envoy_with_collectors(upstream_port, &[collector_port], options)
}

/// As [`start_envoy`], with the filter's callouts balanced over several collectors.
pub fn start_envoy_with_collectors(
    upstream_port: u16,
    collector_ports: &[u16],
    options: &EnvoyOptions,
) -> Envoy {
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
    let mut clusters = vec![("upstream", upstream_port)];
    clusters.extend(collector_ports.iter().map(|&port| ("collector", port)));
    let tls: Vec<(&str, &str)> = options
        .collector_tls_ca
        .as_deref()
        .map(|ca| ("collector", ca))
        .into_iter()
        .collect();
    let config = envoy_yaml(&EnvoyConfig {
        filter: &filter,
        routes: DEMO_ROUTES,
        clusters: &clusters,
        tls_clusters: &tls,
        ..EnvoyConfig::default()
    });
    Envoy::start(&config, options.workers)
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
        let sum = |suffix: &str| stat_sum(&stats, suffix);
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

/// Where the pipeline's events ended up when `settle` returned.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// `emitted = stored + dead_letters + filter drops + collector drops` held.
    pub held: bool,
    pub counts: FilterCounts,
    /// Rows in `mcp_gateway_log`.
    pub stored: u64,
    /// Rows in `mcp_dead_letters`: refused by the database for good, kept with the refusal.
    pub dead_letters: u64,
    /// `collector_dropped_events_total{origin="collector"}` of the running collector.
    pub collector_dropped: u64,
}

impl Settled {
    /// Events nobody accounts for, given collector drops that are not in the running
    /// collector's metrics (a stopped collector's final log line).
    pub fn lost(&self, earlier_collector_drops: u64) -> i64 {
        self.counts.emitted as i64
            - (self.stored
                + self.dead_letters
                + self.counts.dropped()
                + self.collector_dropped
                + earlier_collector_drops) as i64
    }
}

/// Waits (bounded) until the filter has shipped everything it emitted and the collector has
/// stored it: `emitted = stored + dead letters + filter drops + collector drops`. Returns the
/// last reading either way, with whether the identity held.
pub fn settle(envoy: &Envoy, db: &TestDb, collector: &Collector, deadline: Duration) -> Settled {
    let mut last = Settled::default();
    let mut quiet_reads = 0;
    let _ = wait_until(deadline, Duration::from_millis(250), || {
        let counts = FilterCounts::read(envoy);
        let metrics = collector.metrics();
        let mut now = Settled {
            held: false,
            counts,
            stored: db.rows(),
            dead_letters: db.dead_letters(),
            collector_dropped: sum_metric(
                &metrics,
                "collector_dropped_events_total",
                "origin=\"collector\"",
            ),
        };
        now.held = counts.emitted > 0 && now.lost(0) == 0;
        // Quiescent: the filter has nothing buffered or in flight, the collector's queue is
        // empty, and nothing changed since the last reading. If the identity still does not
        // hold then, the difference is a real loss (reported by the caller).
        let quiet = counts.emitted == counts.shipped + counts.dropped()
            && sum_metric(&metrics, "collector_queue_entries", "") == 0
            && Settled {
                held: last.held,
                ..now
            } == last;
        quiet_reads = if quiet { quiet_reads + 1 } else { 0 };
        last = now;
        now.held || quiet_reads >= 8
    });
    last
}

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
                        match http::post(&target, MCP_HEADERS, &body).map(|r| r.status) {
                            Ok(200) => {
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
pub fn per_source(db: &TestDb) -> Vec<(String, u64, u64, u64)> {
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
