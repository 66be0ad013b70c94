//! Shipping events to host-collector: per VM, event lines are written straight into an open
//! NDJSON batch, which is sealed when it reaches `max_batch_bytes` or `max_batch_events` (or
//! its age, when it is sent). Sealed batches wait in order; one is in flight at a time, and
//! a failed one is put back at the front and resent as it is after an exponential backoff
//! with jitter. Buffered plus in-flight bytes stay within `buffer_bytes`: beyond it the
//! oldest waiting batch is dropped, every event in it counted. The cumulative counters ride
//! along in each batch's status record, so the collector sees loss that happened before it.
//! Pure logic: the glue supplies time, randomness, the callout and its response.

use mcp_contract::status::{DropReason, Status};
use serde::Deserialize;
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
            // Every callout costs Envoy's worker about as much as proxying a small request
            // (measured ~70 us on the bench machine), so batches are large: at 64 KiB the
            // callouts cost a json request ~3 us of gateway CPU more than at 256 KiB.
            max_batch_events: 1000,
            max_batch_bytes: 256 * 1024,
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

    /// Capacity of a batch buffer: a sealed batch may pass `max_batch_bytes` by its last
    /// event, and the status record is appended when it is sent.
    fn batch_capacity(&self) -> usize {
        self.max_batch_bytes + 2048
    }
}

/// Cumulative drop counters, reported in every status record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// NDJSON event lines (each ending in `\n`) and how many.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    events: u64,
    attempts: u32,
}

#[derive(Debug)]
struct InFlight {
    batch: Batch,
    /// Length of the event lines; the status record follows them while in flight.
    events_len: usize,
    started: SystemTime,
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

/// Buffers of sent batches kept for reuse: a steady stream of batches then allocates
/// nothing, and the allocator is never asked for the same large block twice in a row.
const SPARE_BUFFERS: usize = 1;

/// Per-VM shipping state.
#[derive(Debug)]
pub struct Shipper {
    config: ShipConfig,
    source: String,
    open: Batch,
    /// Sealed batches, oldest first; a failed batch waits at the front for its retry.
    sealed: VecDeque<Batch>,
    in_flight: Option<InFlight>,
    spare: Vec<Vec<u8>>,
    /// Event bytes in the open, sealed and in-flight batches (what `buffer_bytes` bounds).
    held_bytes: usize,
    /// Bytes of the open batch already counted in `held_bytes`.
    open_counted: usize,
    held_events: u64,
    /// The front sealed batch failed: nothing is sent before this time.
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

impl Shipper {
    pub fn new(config: ShipConfig, source: String) -> Self {
        let open = Batch {
            bytes: Vec::with_capacity(config.batch_capacity()),
            ..Batch::default()
        };
        Shipper {
            config,
            source,
            open,
            sealed: VecDeque::new(),
            in_flight: None,
            spare: Vec::new(),
            held_bytes: 0,
            open_counted: 0,
            held_events: 0,
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
        self.held_bytes
    }

    pub fn buffered_events(&self) -> u64 {
        self.held_events
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Nothing buffered, waiting for a retry or in flight.
    pub fn is_empty(&self) -> bool {
        self.held_events == 0
    }

    /// The host is retiring the VM: from now on every buffered event is due at once,
    /// regardless of batch thresholds, flush interval and backoff, and a failed batch is
    /// dropped (counted as `callout_failed`) instead of waiting for a retry the VM will
    /// not live to make.
    pub fn start_draining(&mut self) {
        self.draining = true;
        self.next_attempt_at = None;
    }

    /// Where the next event line is written (the emitter appends to it, then calls
    /// `committed`).
    pub fn open_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.open.bytes
    }

    /// One more complete line (ending in `\n`) was appended to the open batch.
    pub fn committed(&mut self, _now: SystemTime) {
        self.emitted += 1;
        self.open.events += 1;
        self.held_events += 1;
        self.held_bytes += self.open.bytes.len() - self.open_counted;
        self.open_counted = self.open.bytes.len();
        if self.open.bytes.len() >= self.config.max_batch_bytes
            || self.open.events >= self.config.max_batch_events as u64
        {
            self.seal_open();
        }
        while self.held_bytes > self.config.buffer_bytes && self.drop_oldest() {}
    }

    fn fresh_buffer(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.config.batch_capacity()))
    }

    fn recycle(&mut self, mut bytes: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS && bytes.capacity() <= self.config.batch_capacity() {
            bytes.clear();
            self.spare.push(bytes);
        }
    }

    fn seal_open(&mut self) {
        if self.open.events == 0 {
            return;
        }
        let fresh = Batch {
            bytes: self.fresh_buffer(),
            ..Batch::default()
        };
        let full = std::mem::replace(&mut self.open, fresh);
        self.open_counted = 0;
        self.sealed.push_back(full);
    }

    /// Drops the oldest batch not in flight (a waiting retry first), counting its events;
    /// false when there is nothing to drop.
    fn drop_oldest(&mut self) -> bool {
        let batch = match self.sealed.pop_front() {
            Some(batch) => {
                // Whatever waited for a retry is gone; the next batch need not wait.
                self.next_attempt_at = None;
                batch
            }
            None if self.open.events > 0 => {
                let fresh = self.fresh_buffer();
                self.open_counted = 0;
                std::mem::replace(
                    &mut self.open,
                    Batch {
                        bytes: fresh,
                        ..Batch::default()
                    },
                )
            }
            None => return false,
        };
        self.drops.buffer_full += batch.events;
        self.release(&batch);
        self.recycle(batch.bytes);
        true
    }

    /// A batch leaves the buffer (sent, dropped or acknowledged).
    fn release(&mut self, batch: &Batch) {
        self.held_bytes -= batch.bytes.len();
        self.held_events -= batch.events;
    }

    /// Whether a batch should go out now.
    fn due(&self, now: SystemTime) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        if self.draining {
            return !self.sealed.is_empty() || self.open.events > 0;
        }
        if self.next_attempt_at.is_some_and(|at| now < at) {
            return false;
        }
        if !self.sealed.is_empty() {
            return true;
        }
        let interval = Duration::from_millis(self.config.flush_interval_ms);
        let aged = self
            .last_flush
            .is_some_and(|last| now.duration_since(last).unwrap_or(Duration::ZERO) >= interval);
        self.open.events > 0 && aged
    }

    /// The body of the next batch, if one is due: its event lines and a status record. It
    /// stays in flight until `on_answer`.
    pub fn poll(&mut self, now: SystemTime) -> Option<&[u8]> {
        // The flush clock starts at the first poll (the VM's first tick).
        self.last_flush.get_or_insert(now);
        if !self.due(now) {
            return None;
        }
        if self.sealed.is_empty() {
            self.seal_open();
        }
        let mut batch = self.sealed.pop_front()?;
        batch.attempts += 1;
        self.last_flush = Some(now);
        self.next_attempt_at = None;
        let events_len = batch.bytes.len();
        self.push_status(&mut batch.bytes, now);
        let flight = self.in_flight.insert(InFlight {
            batch,
            events_len,
            started: now,
        });
        Some(&flight.batch.bytes)
    }

    /// NDJSON status record with the cumulative counters (the contract's writer).
    fn push_status(&self, buf: &mut Vec<u8>, now: SystemTime) {
        let ts = humantime::format_rfc3339_micros(now).to_string();
        let status = Status {
            source: &self.source,
            ts: &ts,
            dropped: [
                (DropReason::BufferFull, self.drops.buffer_full),
                (DropReason::CalloutFailed, self.drops.callout_failed),
                (
                    DropReason::RejectedByCollector,
                    self.drops.rejected_by_collector,
                ),
            ],
            emitted: self.emitted,
        };
        let mut line = String::with_capacity(192);
        status.write_line(&mut line);
        buf.extend_from_slice(line.as_bytes());
    }

    /// The status record as a line (without its newline), for tests and diagnostics.
    pub fn status_record(&self, now: SystemTime) -> String {
        let mut buf = Vec::new();
        self.push_status(&mut buf, now);
        buf.pop();
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The collector's answer to the batch in flight.
    pub fn on_answer(&mut self, now: SystemTime, answer: Answer, random: u64) {
        let Some(flight) = self.in_flight.take() else {
            return;
        };
        let mut batch = flight.batch;
        batch.bytes.truncate(flight.events_len);
        self.last_flush_latency = now.duration_since(flight.started).ok();
        match answer {
            Answer::Status(status, body) if (200..300).contains(&status) => {
                self.acknowledged(&batch, body);
                self.done_with(batch);
            }
            // The batch itself is unacceptable (auth, size, format): retrying cannot help.
            Answer::Status(status, _)
                if (400..500).contains(&status) && status != 408 && status != 429 =>
            {
                self.drops.rejected_by_collector += batch.events;
                self.done_with(batch);
            }
            _ => self.failed(batch, now, random),
        }
    }

    fn done_with(&mut self, batch: Batch) {
        self.release(&batch);
        self.recycle(batch.bytes);
    }

    fn acknowledged(&mut self, batch: &Batch, body: &[u8]) {
        let sent = batch.events;
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

    fn failed(&mut self, batch: Batch, now: SystemTime, random: u64) {
        let out_of_attempts =
            self.config.max_attempts > 0 && batch.attempts >= self.config.max_attempts;
        if self.draining || out_of_attempts {
            self.drops.callout_failed += batch.events;
            self.done_with(batch);
            return;
        }
        self.next_attempt_at = Some(now + self.backoff(batch.attempts, random));
        self.sealed.push_front(batch);
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

    /// Every event line not yet acknowledged (in flight, sealed, open), oldest first, each
    /// without its newline: what a retiring VM writes to Envoy's log so that nothing it could
    /// not ship is lost (see `host-collector import`).
    pub fn unshipped_lines(&self) -> impl Iterator<Item = &[u8]> {
        let in_flight = self
            .in_flight
            .as_ref()
            .map(|f| f.batch.bytes.get(..f.events_len).unwrap_or_default());
        in_flight
            .into_iter()
            .chain(self.sealed.iter().map(|b| b.bytes.as_slice()))
            .chain(std::iter::once(self.open.bytes.as_slice()))
            .flat_map(|bytes| bytes.split(|&b| b == b'\n'))
            .filter(|line| !line.is_empty())
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

    fn push(s: &mut Shipper, line: &str) {
        s.open_buffer().extend_from_slice(line.as_bytes());
        s.open_buffer().push(b'\n');
        s.committed(at(0));
    }

    fn event(seq: u64) -> String {
        format!(r#"{{"seq":{seq},"event":"request"}}"#)
    }

    fn lines(body: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(body)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    fn polled(s: &mut Shipper, now: SystemTime) -> Option<Vec<serde_json::Value>> {
        s.poll(now).map(lines)
    }

    fn seqs(l: &[serde_json::Value]) -> Vec<u64> {
        l.iter().filter_map(|v| v["seq"].as_u64()).collect()
    }

    /// Every event is buffered, shipped or counted as dropped.
    fn assert_identity(s: &Shipper) {
        assert_eq!(
            s.emitted,
            s.shipped + s.drops.total() + s.buffered_events(),
            "{s:?}"
        );
    }

    #[test]
    fn unshipped_lines_are_every_event_not_acknowledged_oldest_first() {
        let mut s = Shipper::new(config(), "src".into());
        s.last_flush = Some(at(0));
        (1..=7).for_each(|seq| push(&mut s, &event(seq)));
        let sent = polled(&mut s, at(10)).expect("a full batch is due");
        assert_eq!(seqs(&sent), [1, 2, 3], "in flight, with its status record");
        let unshipped: Vec<serde_json::Value> = s
            .unshipped_lines()
            .map(|l| serde_json::from_slice(l).expect("one JSON line"))
            .collect();
        assert_eq!(seqs(&unshipped), (1..=7).collect::<Vec<_>>());
        assert!(unshipped.iter().all(|l| l["kind"].is_null()), "events only");
        s.on_answer(at(20), Answer::Status(200, br#"{"rejected":[]}"#), 0);
        let left: Vec<u64> = s
            .unshipped_lines()
            .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .filter_map(|l| l["seq"].as_u64())
            .collect();
        assert_eq!(left, [4, 5, 6, 7], "acknowledged events are not repeated");
    }

    #[test]
    fn flushes_on_count_then_on_age() {
        let mut s = Shipper::new(config(), "src".into());
        s.last_flush = Some(at(0));
        push(&mut s, &event(1));
        push(&mut s, &event(2));
        assert_eq!(polled(&mut s, at(10)), None, "neither full nor old");
        push(&mut s, &event(3));
        let batch = polled(&mut s, at(20)).expect("count threshold");
        assert_eq!(seqs(&batch), [1, 2, 3]);
        assert_eq!(batch[3]["kind"], "status");
        assert_eq!(batch[3]["emitted"], 3);
        assert_eq!(batch[3]["source"], "src");
        assert_eq!(polled(&mut s, at(30)), None, "one batch in flight");
        s.on_answer(
            at(40),
            Answer::Status(200, br#"{"accepted":3,"rejected":[]}"#),
            0,
        );
        assert_eq!(s.shipped, 3);
        assert_eq!(s.last_flush_latency, Some(Duration::from_millis(20)));
        push(&mut s, &event(4));
        assert_eq!(polled(&mut s, at(500)), None);
        assert_eq!(seqs(&polled(&mut s, at(1020)).expect("age threshold")), [4]);
        assert_identity(&s);
    }

    #[test]
    fn draining_sends_everything_at_once_and_never_waits_for_a_retry() {
        let mut s = Shipper::new(config(), "src".into());
        s.last_flush = Some(at(0));
        for i in 1..=4 {
            push(&mut s, &event(i));
        }
        assert_eq!(
            seqs(&polled(&mut s, at(1)).expect("count threshold")),
            [1, 2, 3]
        );
        s.on_answer(at(2), Answer::Failed, 0);
        assert_eq!(polled(&mut s, at(3)), None, "backing off before draining");
        s.start_draining();
        let retried = polled(&mut s, at(3)).expect("the failed batch goes out at once");
        assert_eq!(seqs(&retried), [1, 2, 3]);
        s.on_answer(at(4), Answer::Failed, 0);
        assert_eq!(
            s.drops.callout_failed, 3,
            "no retry while draining: counted"
        );
        let rest = polled(&mut s, at(4)).expect("the partial batch, below every threshold");
        assert_eq!(seqs(&rest), [4]);
        assert!(!s.is_empty(), "in flight");
        s.on_answer(
            at(5),
            Answer::Status(200, br#"{"accepted":1,"rejected":[]}"#),
            0,
        );
        assert!(s.is_empty());
        assert_eq!(polled(&mut s, at(6)), None, "nothing left");
        assert_eq!((s.shipped, s.drops.total()), (1, 3));
        assert_identity(&s);
    }

    #[test]
    fn seals_on_bytes() {
        let mut s = Shipper::new(
            ShipConfig {
                max_batch_events: 100,
                ..config()
            },
            "src".into(),
        );
        s.last_flush = Some(at(0));
        let big = |seq: u64| format!(r#"{{"seq":{seq},"pad":"{}"}}"#, "x".repeat(600));
        push(&mut s, &big(1));
        assert_eq!(polled(&mut s, at(1)), None);
        push(&mut s, &big(2));
        let batch = polled(&mut s, at(2)).expect("byte threshold");
        assert_eq!(
            seqs(&batch),
            [1, 2],
            "a batch is sealed once it reaches max_batch_bytes"
        );
        assert_identity(&s);
    }

    #[test]
    fn failures_retry_the_same_bytes_with_backoff_and_keep_order() {
        let mut s = Shipper::new(config(), "src".into());
        for i in 1..=4 {
            push(&mut s, &event(i));
        }
        let first = s.poll(at(0)).expect("count threshold").to_vec();
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
        assert_eq!(polled(&mut s, at(101)), None, "backing off");
        let again = s.poll(at(100) + wait).expect("retry").to_vec();
        let events_only = |b: &[u8]| {
            b[..b.len() - 1]
                .rsplitn(2, |c| *c == b'\n')
                .nth(1)
                .map(<[u8]>::to_vec)
        };
        assert_eq!(
            events_only(&again),
            events_only(&first),
            "the same event bytes"
        );
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
        let third = polled(&mut s, at(1000) + wait2).expect("retry");
        assert_eq!(seqs(&third), [1, 2, 3]);
        s.on_answer(at(2000), Answer::Status(200, br#"{"accepted":3}"#), 0);
        assert_eq!(seqs(&polled(&mut s, at(3000)).expect("rest")), [4]);
        assert_eq!(s.drops, Drops::default());
        assert_identity(&s);
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
        assert!(s.backoff(30, 12345) <= Duration::from_millis(1000));
    }

    #[test]
    fn the_buffer_bound_drops_whole_oldest_batches_and_counts_them() {
        let cfg = ShipConfig {
            buffer_bytes: 2048,
            max_batch_bytes: 1024,
            max_batch_events: 1000,
            ..config()
        };
        let mut s = Shipper::new(cfg, "src".into());
        let line = |i: u64| format!(r#"{{"seq":{i},"pad":"{}"}}"#, "y".repeat(80));
        for i in 1..=100 {
            push(&mut s, &line(i));
            assert!(s.buffered_bytes() <= 2048, "bounded at every step");
            assert_identity(&s);
        }
        assert!(s.drops.buffer_full > 0);
        let batch = polled(&mut s, at(0)).expect("a sealed batch is due at once");
        let first_kept = seqs(&batch)[0];
        assert_eq!(
            first_kept,
            s.drops.buffer_full + 1,
            "the oldest were dropped"
        );
        assert_eq!(
            batch.last().expect("status")["dropped"]["buffer_full"],
            s.drops.buffer_full
        );
        assert_identity(&s);
    }

    #[test]
    fn a_waiting_retry_batch_is_the_first_to_go() {
        let cfg = ShipConfig {
            buffer_bytes: 1024,
            max_batch_bytes: 1024,
            max_batch_events: 2,
            ..config()
        };
        let mut s = Shipper::new(cfg, "src".into());
        let line = |i: u64| format!(r#"{{"seq":{i},"pad":"{}"}}"#, "z".repeat(200));
        push(&mut s, &line(1));
        push(&mut s, &line(2));
        s.poll(at(0)).expect("count threshold");
        s.on_answer(at(1), Answer::Failed, 0);
        for i in 3..=6 {
            push(&mut s, &line(i));
        }
        assert!(s.buffered_bytes() <= 1024);
        let retry = polled(&mut s, at(60_000)).expect("due");
        assert!(
            seqs(&retry)[0] >= 3,
            "seq 1 and 2 (the retry batch) went first"
        );
        assert_identity(&s);
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
            push(&mut s, &event(i));
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
        push(&mut s, &event(4));
        s.poll(at(2000)).expect("due");
        s.on_answer(at(2001), Answer::Status(401, b"{}"), 0);
        assert_eq!(s.drops.rejected_by_collector, 2);
        push(&mut s, &event(5));
        s.poll(at(4000)).expect("due");
        s.on_answer(at(4001), Answer::Failed, 0);
        let at_retry = s.next_attempt_at().expect("retry");
        s.poll(at_retry).expect("second attempt");
        s.on_answer(at_retry, Answer::Failed, 0);
        assert_eq!(s.drops.callout_failed, 1, "gave up after max_attempts");
        assert_eq!(s.emitted, s.shipped + s.drops.total());
        assert_identity(&s);
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
