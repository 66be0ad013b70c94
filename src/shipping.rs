//! Shipping events to host-collector: a per-VM, byte-bounded buffer of event lines that is cut
//! into NDJSON batches (by count, bytes or age), one batch in flight at a time, retried with
//! exponential backoff and jitter. Every event that cannot be kept is counted by reason and
//! the cumulative counters ride along in each batch's status record, so the collector sees
//! loss that happened before it. Pure logic: the glue supplies time, randomness, the callout
//! and its response.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// The `collector` section of the plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShipConfig {
    /// Envoy cluster of host-collector.
    pub cluster: String,
    /// `:authority` of the callout.
    pub authority: String,
    pub path: String,
    /// Bearer token the collector expects.
    pub token: String,
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
    pub flush_interval_ms: u64,
    /// Bound on buffered plus in-flight event bytes per VM; the oldest are dropped beyond it.
    pub buffer_bytes: usize,
    pub timeout_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Attempts per batch before it is dropped as `callout_failed`; 0 means retry forever
    /// (the buffer bound then decides what is lost).
    pub max_attempts: u32,
    /// Also write each event to Envoy's log.
    pub log_events: bool,
}

impl Default for ShipConfig {
    fn default() -> Self {
        ShipConfig {
            cluster: "host-collector".to_string(),
            authority: "host-collector".to_string(),
            path: "/v1/logs".to_string(),
            token: String::new(),
            max_batch_events: 500,
            max_batch_bytes: 512 * 1024,
            flush_interval_ms: 1000,
            buffer_bytes: 8 * 1024 * 1024,
            timeout_ms: 5000,
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
            max_attempts: 0,
            log_events: false,
        }
    }
}

impl ShipConfig {
    /// Checks bounds; the error names the field (relative to `collector`).
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        let checks: [(bool, &'static str, &'static str); 8] = [
            (self.cluster.is_empty(), "cluster", "must not be empty"),
            (!self.path.starts_with('/'), "path", "must start with '/'"),
            (
                self.max_batch_events == 0,
                "max_batch_events",
                "must be at least 1",
            ),
            (
                self.max_batch_bytes < 1024,
                "max_batch_bytes",
                "must be at least 1024",
            ),
            (
                self.flush_interval_ms == 0,
                "flush_interval_ms",
                "must be at least 1",
            ),
            (
                self.buffer_bytes < self.max_batch_bytes,
                "buffer_bytes",
                "must be at least max_batch_bytes",
            ),
            (self.timeout_ms == 0, "timeout_ms", "must be at least 1"),
            (
                self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms,
                "backoff_initial_ms",
                "must be at least 1 and at most backoff_max_ms",
            ),
        ];
        match checks.iter().find(|(bad, _, _)| *bad) {
            Some((_, field, message)) => Err((field, message)),
            None => Ok(()),
        }
    }
}

/// Cumulative drop counters, reported in every status record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Drops {
    pub buffer_full: u64,
    pub callout_failed: u64,
    pub rejected_by_collector: u64,
}

impl Drops {
    pub fn total(&self) -> u64 {
        self.buffer_full + self.callout_failed + self.rejected_by_collector
    }
}

/// A batch ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub events: usize,
}

#[derive(Debug)]
struct InFlight {
    lines: Vec<String>,
    bytes: usize,
    started: SystemTime,
    attempts: u32,
}

/// How the collector answered a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// No response (connect failure, reset, timeout) or the callout could not be made.
    Failed,
    Status(u32, &'a [u8]),
}

#[derive(Deserialize)]
struct CollectorReply {
    #[serde(default)]
    rejected: Vec<serde::de::IgnoredAny>,
}

/// Per-VM shipping state.
#[derive(Debug)]
pub struct Shipper {
    config: ShipConfig,
    source: String,
    queue: VecDeque<String>,
    queued_bytes: usize,
    in_flight: Option<InFlight>,
    /// A failed batch waiting for its backoff to pass.
    retry: Option<InFlight>,
    next_attempt_at: Option<SystemTime>,
    last_flush: Option<SystemTime>,
    /// The VM is being retired: send everything now, no waiting, no retries.
    draining: bool,
    pub drops: Drops,
    /// Events handed to the shipper (= highest seq emitted while shipping was on).
    pub emitted: u64,
    /// Events the collector acknowledged.
    pub shipped: u64,
    pub last_flush_latency: Option<Duration>,
}

/// Bytes an event line costs in the buffer: its text plus a newline.
fn line_cost(line: &str) -> usize {
    line.len() + 1
}

impl Shipper {
    pub fn new(config: ShipConfig, source: String) -> Self {
        Shipper {
            config,
            source,
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: None,
            retry: None,
            next_attempt_at: None,
            last_flush: None,
            draining: false,
            drops: Drops::default(),
            emitted: 0,
            shipped: 0,
            last_flush_latency: None,
        }
    }

    pub fn config(&self) -> &ShipConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: ShipConfig) {
        self.config = config;
    }

    /// Buffered and in-flight event bytes (what `buffer_bytes` bounds).
    pub fn buffered_bytes(&self) -> usize {
        let held = |b: &Option<InFlight>| b.as_ref().map_or(0, |f| f.bytes);
        self.queued_bytes + held(&self.in_flight) + held(&self.retry)
    }

    pub fn buffered_events(&self) -> usize {
        let held = |b: &Option<InFlight>| b.as_ref().map_or(0, |f| f.lines.len());
        self.queue.len() + held(&self.in_flight) + held(&self.retry)
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The host is retiring the VM: from now on every buffered event is due at once,
    /// regardless of batch thresholds, flush interval and backoff, and a failed batch is
    /// dropped (counted as `callout_failed`) instead of waiting for a retry the VM will
    /// not live to make.
    pub fn start_draining(&mut self) {
        self.draining = true;
        self.next_attempt_at = None;
    }

    /// Nothing buffered, waiting for a retry or in flight.
    pub fn is_empty(&self) -> bool {
        self.buffered_events() == 0
    }

    /// Takes one event line; drops the oldest queued ones if the buffer is over its bound.
    pub fn push(&mut self, line: String) {
        self.emitted += 1;
        self.queued_bytes += line_cost(&line);
        self.queue.push_back(line);
        while self.buffered_bytes() > self.config.buffer_bytes {
            if !self.drop_oldest() {
                break;
            }
        }
    }

    /// Drops the oldest event not in flight: a waiting retry batch first, then the queue.
    fn drop_oldest(&mut self) -> bool {
        if let Some(retry) = self.retry.as_mut() {
            if !retry.lines.is_empty() {
                let line = retry.lines.remove(0);
                retry.bytes -= line_cost(&line);
                self.drops.buffer_full += 1;
                if retry.lines.is_empty() {
                    self.retry = None;
                }
                return true;
            }
        }
        match self.queue.pop_front() {
            Some(line) => {
                self.queued_bytes -= line_cost(&line);
                self.drops.buffer_full += 1;
                true
            }
            None => false,
        }
    }

    /// Whether a batch should go out now.
    fn due(&self, now: SystemTime) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        if self.draining {
            return self.retry.is_some() || !self.queue.is_empty();
        }
        if self.next_attempt_at.is_some_and(|at| now < at) {
            return false;
        }
        if self.retry.is_some() {
            return true;
        }
        if self.queue.is_empty() {
            return false;
        }
        let interval = Duration::from_millis(self.config.flush_interval_ms);
        let aged = self
            .last_flush
            .is_some_and(|last| now.duration_since(last).unwrap_or(Duration::ZERO) >= interval);
        aged || self.queue.len() >= self.config.max_batch_events
            || self.queued_bytes >= self.config.max_batch_bytes
    }

    /// The next batch to send, if one is due; it stays in flight until `on_answer`.
    pub fn poll(&mut self, now: SystemTime) -> Option<Batch> {
        // The flush clock starts at the first poll (the VM's first tick).
        self.last_flush.get_or_insert(now);
        if !self.due(now) {
            return None;
        }
        let mut flight = match self.retry.take() {
            Some(retry) => retry,
            None => self.cut_batch(now),
        };
        flight.started = now;
        flight.attempts += 1;
        self.last_flush = Some(now);
        let body = self.encode(&flight.lines, now);
        let events = flight.lines.len();
        self.in_flight = Some(flight);
        Some(Batch { body, events })
    }

    fn cut_batch(&mut self, now: SystemTime) -> InFlight {
        let mut lines = Vec::new();
        let mut bytes = 0;
        while let Some(line) = self.queue.front() {
            let cost = line_cost(line);
            let full = lines.len() >= self.config.max_batch_events
                || (!lines.is_empty() && bytes + cost > self.config.max_batch_bytes);
            if full {
                break;
            }
            bytes += cost;
            if let Some(line) = self.queue.pop_front() {
                lines.push(line);
            }
        }
        self.queued_bytes -= bytes;
        InFlight {
            lines,
            bytes,
            started: now,
            attempts: 0,
        }
    }

    /// NDJSON: the events, then the status record with the cumulative counters.
    fn encode(&self, lines: &[String], now: SystemTime) -> Vec<u8> {
        let mut body =
            String::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 200);
        for line in lines {
            body.push_str(line);
            body.push('\n');
        }
        body.push_str(&self.status_record(now));
        body.push('\n');
        body.into_bytes()
    }

    pub fn status_record(&self, now: SystemTime) -> String {
        serde_json::json!({
            "kind": "status",
            "source": self.source,
            "ts": humantime::format_rfc3339_micros(now).to_string(),
            "dropped": self.drops,
            "emitted": self.emitted,
        })
        .to_string()
    }

    /// The collector's answer to the batch in flight.
    pub fn on_answer(&mut self, now: SystemTime, answer: Answer, random: u64) {
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        self.last_flush_latency = now.duration_since(flight.started).ok();
        match answer {
            Answer::Status(status, body) if (200..300).contains(&status) => {
                self.acknowledged(&flight, body);
                self.next_attempt_at = None;
            }
            // The batch itself is unacceptable (auth, size, format): retrying cannot help.
            Answer::Status(status, _)
                if (400..500).contains(&status) && status != 408 && status != 429 =>
            {
                self.drops.rejected_by_collector += flight.lines.len() as u64;
                self.next_attempt_at = None;
            }
            _ => self.failed(flight, now, random),
        }
    }

    fn acknowledged(&mut self, flight: &InFlight, body: &[u8]) {
        let sent = flight.lines.len() as u64;
        match serde_json::from_slice::<CollectorReply>(body) {
            Ok(reply) => {
                let rejected = (reply.rejected.len() as u64).min(sent);
                self.drops.rejected_by_collector += rejected;
                // Duplicates of an earlier attempt are acknowledged but not re-counted.
                self.shipped += sent - rejected;
            }
            Err(_) => self.shipped += sent,
        }
    }

    fn failed(&mut self, flight: InFlight, now: SystemTime, random: u64) {
        let out_of_attempts =
            self.config.max_attempts > 0 && flight.attempts >= self.config.max_attempts;
        if self.draining || out_of_attempts {
            self.drops.callout_failed += flight.lines.len() as u64;
            self.next_attempt_at = None;
            return;
        }
        self.next_attempt_at = Some(now + self.backoff(flight.attempts, random));
        self.retry = Some(flight);
    }

    /// Exponential backoff with full jitter over the upper half: [d/2, d].
    fn backoff(&self, attempts: u32, random: u64) -> Duration {
        let exp = attempts.saturating_sub(1).min(20);
        let ceiling = self
            .config
            .backoff_initial_ms
            .saturating_mul(1u64 << exp)
            .min(self.config.backoff_max_ms);
        let half = ceiling / 2;
        let jitter = if half == 0 { 0 } else { random % (half + 1) };
        Duration::from_millis(ceiling - half + jitter)
    }

    /// Time the next attempt may start, while a failed batch waits (for tests and metrics).
    pub fn next_attempt_at(&self) -> Option<SystemTime> {
        self.next_attempt_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn config() -> ShipConfig {
        ShipConfig {
            max_batch_events: 3,
            max_batch_bytes: 1024,
            flush_interval_ms: 1000,
            buffer_bytes: 2048,
            ..ShipConfig::default()
        }
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    fn event(seq: u64) -> String {
        format!(r#"{{"seq":{seq},"event":"request"}}"#)
    }

    fn lines(batch: &Batch) -> Vec<serde_json::Value> {
        std::str::from_utf8(&batch.body)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[test]
    fn flushes_on_count_then_on_age() {
        let mut s = Shipper::new(config(), "src".into());
        s.last_flush = Some(at(0));
        s.push(event(1));
        s.push(event(2));
        assert_eq!(s.poll(at(10)), None, "neither full nor old");
        s.push(event(3));
        let batch = s.poll(at(20)).expect("count threshold");
        assert_eq!(batch.events, 3);
        let l = lines(&batch);
        assert_eq!(l.len(), 4);
        assert_eq!(l[3]["kind"], "status");
        assert_eq!(l[3]["emitted"], 3);
        assert_eq!(s.poll(at(30)), None, "one batch in flight");
        s.on_answer(
            at(40),
            Answer::Status(200, br#"{"accepted":3,"rejected":[]}"#),
            0,
        );
        assert_eq!(s.shipped, 3);
        assert_eq!(s.last_flush_latency, Some(Duration::from_millis(20)));
        s.push(event(4));
        assert_eq!(s.poll(at(500)), None);
        assert_eq!(s.poll(at(1020)).expect("age threshold").events, 1);
    }

    #[test]
    fn draining_sends_everything_at_once_and_never_waits_for_a_retry() {
        let mut s = Shipper::new(config(), "src".into());
        s.last_flush = Some(at(0));
        for i in 1..=4 {
            s.push(event(i));
        }
        let first = s.poll(at(1)).expect("count threshold");
        assert_eq!(first.events, 3);
        s.on_answer(at(2), Answer::Failed, 0);
        assert_eq!(s.poll(at(3)), None, "backing off before draining");
        s.start_draining();
        let retried = s.poll(at(3)).expect("the failed batch goes out at once");
        assert_eq!(retried.events, 3);
        s.on_answer(at(4), Answer::Failed, 0);
        assert_eq!(
            s.drops.callout_failed, 3,
            "no retry while draining: counted"
        );
        let rest = s
            .poll(at(4))
            .expect("the partial batch, below every threshold");
        assert_eq!(rest.events, 1);
        assert!(!s.is_empty(), "in flight");
        s.on_answer(
            at(5),
            Answer::Status(200, br#"{"accepted":1,"rejected":[]}"#),
            0,
        );
        assert!(s.is_empty());
        assert_eq!(s.poll(at(6)), None, "nothing left");
        assert_eq!(
            (s.shipped, s.drops.total()),
            (1, 3),
            "every event accounted for"
        );
    }

    #[test]
    fn flushes_on_bytes() {
        let mut s = Shipper::new(
            ShipConfig {
                max_batch_events: 100,
                ..config()
            },
            "src".into(),
        );
        s.last_flush = Some(at(0));
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(600));
        s.push(big.clone());
        assert_eq!(s.poll(at(1)), None);
        s.push(big);
        let batch = s.poll(at(2)).expect("byte threshold");
        assert_eq!(
            batch.events, 1,
            "a batch never exceeds max_batch_bytes after its first line"
        );
    }

    #[test]
    fn failures_retry_with_backoff_and_keep_order() {
        let mut s = Shipper::new(config(), "src".into());
        for i in 1..=4 {
            s.push(event(i));
        }
        let first = s.poll(at(0)).expect("count threshold");
        assert_eq!(first.events, 3);
        s.on_answer(at(100), Answer::Failed, 0);
        let wait = s
            .next_attempt_at()
            .expect("backoff")
            .duration_since(at(100))
            .expect("later");
        assert!(
            wait >= Duration::from_millis(125) && wait <= Duration::from_millis(250),
            "{wait:?}"
        );
        assert_eq!(s.poll(at(101)), None, "backing off");
        let again = s.poll(at(100) + wait).expect("retry");
        assert_eq!(
            again.body[..again.body.len() - 1]
                .split(|b| *b == b'\n')
                .count(),
            4
        );
        assert_eq!(lines(&again)[0]["seq"], 1, "the same batch, first");
        s.on_answer(at(1000), Answer::Status(503, b""), u64::MAX);
        let wait2 = s
            .next_attempt_at()
            .expect("backoff")
            .duration_since(at(1000))
            .expect("later");
        assert!(
            wait2 > wait && wait2 <= Duration::from_millis(500),
            "{wait2:?}"
        );
        let third = s.poll(at(1000) + wait2).expect("retry");
        s.on_answer(at(2000), Answer::Status(200, br#"{"accepted":3}"#), 0);
        assert_eq!(lines(&third)[0]["seq"], 1);
        let next = s.poll(at(3000)).expect("rest");
        assert_eq!(lines(&next)[0]["seq"], 4);
        assert_eq!(s.drops, Drops::default());
    }

    #[test]
    fn backoff_is_capped() {
        let s = Shipper::new(
            ShipConfig {
                backoff_max_ms: 1000,
                ..config()
            },
            "s".into(),
        );
        assert_eq!(s.backoff(30, 0), Duration::from_millis(500));
        assert_eq!(s.backoff(30, u64::MAX - 1), s.backoff(30, u64::MAX - 1));
        assert!(s.backoff(30, 12345) <= Duration::from_millis(1000));
    }

    #[test]
    fn drop_oldest_under_a_tiny_buffer_counts_exactly() {
        let cfg = ShipConfig {
            buffer_bytes: 1024,
            max_batch_bytes: 1024,
            max_batch_events: 1000,
            ..config()
        };
        let mut s = Shipper::new(cfg, "src".into());
        let line = |i: u64| format!(r#"{{"seq":{i},"pad":"{}"}}"#, "y".repeat(80));
        let cost = line_cost(&line(1));
        let fit = 1024 / cost;
        for i in 1..=50 {
            s.push(line(i));
            assert!(s.buffered_bytes() <= 1024);
        }
        assert_eq!(s.drops.buffer_full, 50 - fit as u64);
        assert_eq!(s.poll(at(0)), None, "the flush clock starts now");
        let batch = s.poll(at(1000)).expect("due by age");
        let first_kept = 50 - fit as u64 + 1;
        assert_eq!(lines(&batch)[0]["seq"], first_kept, "the newest are kept");
        assert_eq!(
            lines(&batch).last().expect("status")["dropped"]["buffer_full"],
            50 - fit as u64
        );
        assert_eq!(s.emitted, s.drops.total() + s.buffered_events() as u64);
    }

    #[test]
    fn waiting_retry_batches_lose_their_oldest_first() {
        let cfg = ShipConfig {
            buffer_bytes: 1024,
            max_batch_bytes: 1024,
            max_batch_events: 2,
            ..config()
        };
        let mut s = Shipper::new(cfg, "src".into());
        let line = |i: u64| format!(r#"{{"seq":{i},"pad":"{}"}}"#, "z".repeat(200));
        s.push(line(1));
        s.push(line(2));
        s.poll(at(0)).expect("count threshold");
        s.on_answer(at(1), Answer::Failed, 0);
        for i in 3..=6 {
            s.push(line(i));
        }
        assert!(s.buffered_bytes() <= 1024);
        assert!(s.drops.buffer_full >= 1);
        let retry = s.poll(at(60_000)).expect("retry due");
        let first = lines(&retry)[0]["seq"].as_u64().expect("seq");
        assert!(first >= 2, "seq 1 (oldest) was dropped first");
        assert_eq!(s.emitted, s.drops.total() + s.buffered_events() as u64);
    }

    #[test]
    fn collector_rejections_and_attempt_limits_are_counted() {
        let mut s = Shipper::new(
            ShipConfig {
                max_attempts: 2,
                ..config()
            },
            "src".into(),
        );
        for i in 1..=3 {
            s.push(event(i));
        }
        s.poll(at(0)).expect("due");
        s.on_answer(
            at(1),
            Answer::Status(
                200,
                br#"{"accepted":2,"rejected":[{"line":2,"error":"bad"}]}"#,
            ),
            0,
        );
        assert_eq!((s.shipped, s.drops.rejected_by_collector), (2, 1));
        s.push(event(4));
        s.poll(at(2000)).expect("due");
        s.on_answer(at(2001), Answer::Status(401, b"{}"), 0);
        assert_eq!(s.drops.rejected_by_collector, 2);
        s.push(event(5));
        s.poll(at(4000)).expect("due");
        s.on_answer(at(4001), Answer::Failed, 0);
        let at_retry = s.next_attempt_at().expect("retry");
        s.poll(at_retry).expect("second attempt");
        s.on_answer(at_retry, Answer::Failed, 0);
        assert_eq!(s.drops.callout_failed, 1, "gave up after max_attempts");
        assert_eq!(s.emitted, s.shipped + s.drops.total());
    }

    #[test]
    fn config_validation_names_fields() {
        let bad = |c: ShipConfig| c.validate().expect_err("invalid").0;
        assert_eq!(
            bad(ShipConfig {
                cluster: String::new(),
                ..ShipConfig::default()
            }),
            "cluster"
        );
        assert_eq!(
            bad(ShipConfig {
                buffer_bytes: 10,
                ..ShipConfig::default()
            }),
            "buffer_bytes"
        );
        assert_eq!(
            bad(ShipConfig {
                backoff_max_ms: 1,
                ..ShipConfig::default()
            }),
            "backoff_initial_ms"
        );
        assert!(ShipConfig::default().validate().is_ok());
    }
}
