//! The per-VM emitter and the event builder. An event is written once, field by field, into
//! its destination: the shipper's open batch when shipping to host-collector (so a batch is
//! ready to send as it fills), else a scratch line for Envoy's log. The emitter stamps every
//! line with `ts`, this VM's `source` and a gap-free `seq`, and drops (counts) events below
//! `min_level` before writing anything.

use super::clock::TimestampCache;
use super::EventName;
use crate::config::Level;
use crate::json::{push_label, push_millis, push_string, push_u64};
use crate::jsonrpc::{Id, JsonStr};
use crate::shipping::{ShipConfig, Shipper};
use std::time::SystemTime;

/// Where a finished line goes besides the shipper (Envoy's log in the filter, a buffer in
/// tests). Gets the line without its trailing newline.
pub trait LineSink {
    fn line(&mut self, line: &[u8]);
}

/// Writes `mcp_event {json}` lines through the `log` facade (Envoy's log).
#[derive(Debug, Default)]
pub struct LogSink;

pub const LOG_PREFIX: &str = "mcp_event ";

impl LineSink for LogSink {
    fn line(&mut self, line: &[u8]) {
        log::info!("{LOG_PREFIX}{}", String::from_utf8_lossy(line));
    }
}

/// An event's `message`.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// A fixed text of this program's (never needs escaping).
    Text(&'static str),
    /// `"<method> <target>"` of a request, from the body's own string literals.
    Summary(JsonStr<'a>, Option<JsonStr<'a>>),
}

/// Per-VM event state: identity, sequence, level filter and destinations.
pub struct Events {
    source: String,
    /// `","source":"<source>","seq":` (closing the `ts` string).
    source_field: Vec<u8>,
    next_seq: u64,
    min_level: Level,
    clock: TimestampCache,
    shipper: Option<Shipper>,
    log: Option<Box<dyn LineSink>>,
    /// The line being written when nothing is shipped.
    scratch: Vec<u8>,
    /// Events below `min_level`, not emitted.
    pub suppressed: u64,
}

impl Events {
    /// Events with no destination yet: lines are numbered, then discarded.
    pub fn new(source: String, min_level: Level) -> Self {
        let mut source_field = b"\",\"source\":".to_vec();
        push_string(&mut source_field, &source);
        source_field.extend_from_slice(b",\"seq\":");
        Events {
            source,
            source_field,
            next_seq: 1,
            min_level,
            clock: TimestampCache::default(),
            shipper: None,
            log: None,
            scratch: Vec::new(),
            suppressed: 0,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn set_min_level(&mut self, level: Level) {
        self.min_level = level;
    }

    /// Ships to host-collector with this configuration (keeping what is buffered), or stops
    /// shipping. A VM reconfigured keeps its source and seq, so the collector sees no gap.
    pub fn set_shipping(&mut self, config: Option<ShipConfig>) {
        self.shipper = match (self.shipper.take(), config) {
            (Some(mut shipper), Some(config)) => {
                shipper.set_config(config);
                Some(shipper)
            }
            (None, Some(config)) => Some(Shipper::new(config, self.source.clone())),
            (_, None) => None,
        };
    }

    /// Also (or only, when not shipping) hand every line to `sink`.
    pub fn set_line_sink(&mut self, sink: Option<Box<dyn LineSink>>) {
        self.log = sink;
    }

    pub fn shipper(&self) -> Option<&Shipper> {
        self.shipper.as_ref()
    }

    pub fn shipper_mut(&mut self) -> Option<&mut Shipper> {
        self.shipper.as_mut()
    }

    /// Events emitted so far (the last `seq` handed out).
    pub fn emitted(&self) -> u64 {
        self.next_seq - 1
    }

    /// Starts an event; `None` when its level is below `min_level` (counted). `now` is
    /// only asked for when the event is written. The line is finished when the returned
    /// builder is dropped.
    pub fn begin(
        &mut self,
        now: impl FnOnce() -> SystemTime,
        name: EventName,
        message: Message,
    ) -> Option<Event<'_>> {
        if name.level() < self.min_level {
            self.suppressed += 1;
            return None;
        }
        let now = now();
        let buf = match self.shipper.as_mut() {
            Some(shipper) => shipper.open_buffer(),
            None => &mut self.scratch,
        };
        let start = buf.len();
        self.clock.push_line_start(buf, now);
        buf.extend_from_slice(&self.source_field);
        push_u64(buf, self.next_seq);
        buf.extend_from_slice(name.line_head().as_bytes());
        match message {
            Message::Text(text) => push_label(buf, text),
            Message::Summary(method, target) => {
                buf.push(b'"');
                method.push_content(buf);
                if let Some(target) = target {
                    buf.push(b' ');
                    target.push_content(buf);
                }
                buf.push(b'"');
            }
        }
        Some(Event {
            events: self,
            start,
            now,
        })
    }

    fn buffer(&mut self) -> &mut Vec<u8> {
        match self.shipper.as_mut() {
            Some(shipper) => shipper.open_buffer(),
            None => &mut self.scratch,
        }
    }

    /// The line started at `start` is complete (its closing brace written).
    fn commit(&mut self, start: usize, now: SystemTime) {
        self.next_seq += 1;
        if let Some(log) = self.log.as_mut() {
            let buf = match self.shipper.as_mut() {
                Some(shipper) => shipper.open_buffer(),
                None => &mut self.scratch,
            };
            log.line(buf.get(start..).unwrap_or_default());
        }
        match self.shipper.as_mut() {
            Some(shipper) => {
                shipper.open_buffer().push(b'\n');
                shipper.committed(now);
            }
            None => self.scratch.clear(),
        }
    }
}

/// One event being written. Fields go straight into the line; dropping the builder closes
/// the line and hands it on.
pub struct Event<'a> {
    events: &'a mut Events,
    start: usize,
    now: SystemTime,
}

impl Event<'_> {
    /// The event's time (its `ts`).
    pub fn at(&self) -> SystemTime {
        self.now
    }

    fn buf(&mut self) -> &mut Vec<u8> {
        self.events.buffer()
    }

    /// Fields rendered earlier (each `,"key":value`), copied as they are.
    pub fn fragment(&mut self, fields: &[u8]) -> &mut Self {
        self.buf().extend_from_slice(fields);
        self
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        let buf = self.buf();
        buf.extend_from_slice(key.as_bytes());
        push_string(buf, value);
        self
    }

    /// A label of this program's own (no escaping needed).
    pub fn label(&mut self, key: &str, value: &'static str) -> &mut Self {
        let buf = self.buf();
        buf.extend_from_slice(key.as_bytes());
        push_label(buf, value);
        self
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.str(key, value);
        }
        self
    }

    /// A string from a parsed body, copied as it came when it has no escapes.
    pub fn json_str(&mut self, key: &str, value: JsonStr) -> &mut Self {
        let buf = self.buf();
        buf.extend_from_slice(key.as_bytes());
        value.push_json(buf);
        self
    }

    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        let buf = self.buf();
        buf.extend_from_slice(key.as_bytes());
        push_u64(buf, value);
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        let buf = self.buf();
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// A duration in milliseconds (microsecond precision).
    pub fn millis(&mut self, key: &str, micros: u64) -> &mut Self {
        let buf = self.buf();
        buf.extend_from_slice(key.as_bytes());
        push_millis(buf, micros);
        self
    }

    /// A JSON-RPC id as a string field: a string id as written, a number as its digits.
    pub fn id(&mut self, key: &str, id: Id) -> &mut Self {
        match id {
            Id::Str(s) => self.json_str(key, s),
            Id::Raw(text) => self.str(key, text),
        }
    }

    /// A structured value (rare events only: it goes through serde).
    pub fn serialized(&mut self, key: &str, value: &impl serde::Serialize) -> &mut Self {
        let buf = self.buf();
        let mark = buf.len();
        buf.extend_from_slice(key.as_bytes());
        if serde_json::to_writer(&mut *buf, value).is_err() {
            buf.truncate(mark);
        }
        self
    }
}

impl Drop for Event<'_> {
    fn drop(&mut self) {
        self.buf().push(b'}');
        self.events.commit(self.start, self.now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::capture::capturing;
    use crate::events::keys;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn stamps_source_seq_ts_and_filters_levels() {
        let (mut events, sink) = capturing(Level::Info);
        let now = UNIX_EPOCH + Duration::from_micros(1_763_780_014_123_456);
        events
            .begin(|| now, EventName::Request, Message::Text("m q"))
            .expect("info is on")
            .str(keys::TOOL_NAME, "echo")
            .str(keys::TOKEN, "sha256:0123456789ab")
            .u64(keys::BATCH_SIZE, 3)
            .bool(keys::BODY_INSPECTED, true)
            .millis(keys::DURATION_MS, 25_000);
        assert!(events
            .begin(|| now, EventName::DirectorBefore, Message::Text("m"))
            .is_none());
        drop(events.begin(|| now, EventName::Response, Message::Text("ok")));
        assert_eq!((events.suppressed, events.emitted()), (1, 2));
        let lines = sink.events();
        assert_eq!(lines.len(), 2);
        let e = &lines[0];
        assert_eq!(e["ts"], "2025-11-22T02:53:34.123456Z");
        assert_eq!(e["source"], "src1");
        assert_eq!(e["seq"], 1);
        assert_eq!(e["event"], "request");
        assert_eq!(e["level"], "info");
        assert_eq!(e["message"], "m q");
        assert_eq!(e["gen_ai.tool.name"], "echo");
        assert_eq!(e["jsonrpc.batch.size"], 3);
        assert_eq!(e["mcp.body.inspected"], true);
        assert_eq!(e["duration_ms"], 25.0);
        assert!(e.get("mcp.session.id").is_none());
        assert_eq!(lines[1]["seq"], 2);
    }

    #[test]
    fn body_literals_are_copied_verbatim_and_ids_become_strings() {
        let (mut events, sink) = capturing(Level::Debug);
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a\"b"}}"#;
        let m = crate::jsonrpc::parse_message(body).expect("valid");
        let method = m.method.expect("method");
        events
            .begin(
                || UNIX_EPOCH,
                EventName::Request,
                Message::Summary(method, m.name),
            )
            .expect("on")
            .json_str(keys::METHOD, method)
            .id(keys::REQUEST_ID, m.id.expect("id"));
        let string_id =
            crate::jsonrpc::parse_message(br#"{"jsonrpc":"2.0","id":"x\u0041","result":{}}"#)
                .expect("valid");
        events
            .begin(|| UNIX_EPOCH, EventName::Response, Message::Text("ok"))
            .expect("on")
            .id(keys::REQUEST_ID, string_id.id.expect("id"));
        let lines = sink.events();
        assert_eq!(lines[0]["message"], "tools/call a\"b");
        assert_eq!(lines[0]["mcp.method.name"], "tools/call");
        assert_eq!(lines[0]["jsonrpc.request.id"], "7");
        assert_eq!(lines[1]["jsonrpc.request.id"], "xA");
    }
}
