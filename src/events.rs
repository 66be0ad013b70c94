//! Gateway events: the catalogue (one meaning and one level per name), the event record with
//! OpenTelemetry MCP field names, and the per-VM emitter that stamps `ts`, `source` and `seq`
//! and hands one JSON line per event to a sink. Secrets never enter an event: the exchange
//! puts only fingerprints and redacted, capped arguments into these fields.

use crate::config::Level;
use serde::Serialize;
use std::time::SystemTime;

/// Every event this filter emits. See docs/events.md for each one's field set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    Request,
    Response,
    DirectorBefore,
    DirectorAfter,
    ClientCanceled,
    SseStart,
    SseCancel,
    SseEof,
    SseEndpointRewrite,
    PanicRecovered,
    RequestValidationFailed,
    InstanceMissing,
    ProtocolUnsupported,
    AccessUnsupported,
    UpstreamUrlParseFailed,
    UpstreamError,
    UpstreamConnectionInterrupted,
    HeaderBodyMismatch,
    CircuitOpened,
    CircuitHalfOpened,
    CircuitClosed,
    CircuitRejected,
}

impl EventName {
    pub const ALL: &'static [EventName] = &[
        EventName::Request,
        EventName::Response,
        EventName::DirectorBefore,
        EventName::DirectorAfter,
        EventName::ClientCanceled,
        EventName::SseStart,
        EventName::SseCancel,
        EventName::SseEof,
        EventName::SseEndpointRewrite,
        EventName::PanicRecovered,
        EventName::RequestValidationFailed,
        EventName::InstanceMissing,
        EventName::ProtocolUnsupported,
        EventName::AccessUnsupported,
        EventName::UpstreamUrlParseFailed,
        EventName::UpstreamError,
        EventName::UpstreamConnectionInterrupted,
        EventName::HeaderBodyMismatch,
        EventName::CircuitOpened,
        EventName::CircuitHalfOpened,
        EventName::CircuitClosed,
        EventName::CircuitRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Request => "request",
            EventName::Response => "response",
            EventName::DirectorBefore => "director.before",
            EventName::DirectorAfter => "director.after",
            EventName::ClientCanceled => "client.canceled",
            EventName::SseStart => "sse.start",
            EventName::SseCancel => "sse.cancel",
            EventName::SseEof => "sse.eof",
            EventName::SseEndpointRewrite => "sse.endpoint.rewrite",
            EventName::PanicRecovered => "panic.recovered",
            EventName::RequestValidationFailed => "request.validation.failed",
            EventName::InstanceMissing => "instance.missing",
            EventName::ProtocolUnsupported => "protocol.unsupported",
            EventName::AccessUnsupported => "access.unsupported",
            EventName::UpstreamUrlParseFailed => "upstream.url.parse.failed",
            EventName::UpstreamError => "upstream.error",
            EventName::UpstreamConnectionInterrupted => "upstream.connection.interrupted",
            EventName::HeaderBodyMismatch => "header.body.mismatch",
            EventName::CircuitOpened => "circuit.opened",
            EventName::CircuitHalfOpened => "circuit.half_opened",
            EventName::CircuitClosed => "circuit.closed",
            EventName::CircuitRejected => "circuit.rejected",
        }
    }

    /// The one level of each event name.
    pub fn level(self) -> Level {
        match self {
            EventName::Request
            | EventName::Response
            | EventName::SseStart
            | EventName::SseEof
            | EventName::SseCancel
            | EventName::CircuitClosed => Level::Info,
            EventName::DirectorBefore
            | EventName::DirectorAfter
            | EventName::SseEndpointRewrite => Level::Debug,
            EventName::ClientCanceled
            | EventName::RequestValidationFailed
            | EventName::InstanceMissing
            | EventName::ProtocolUnsupported
            | EventName::AccessUnsupported
            | EventName::HeaderBodyMismatch
            | EventName::CircuitHalfOpened
            | EventName::CircuitRejected => Level::Warn,
            EventName::PanicRecovered
            | EventName::UpstreamUrlParseFailed
            | EventName::UpstreamError
            | EventName::UpstreamConnectionInterrupted
            | EventName::CircuitOpened => Level::Error,
        }
    }
}

/// Fields shared by every event of one HTTP exchange.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Common {
    pub trace_id: String,
    pub span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(rename = "trace.origin")]
    pub trace_origin: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(rename = "http.request.method")]
    pub http_method: String,
    #[serde(rename = "url.path")]
    pub path: String,
    #[serde(rename = "mcp.transport")]
    pub transport: &'static str,
    #[serde(rename = "mcp.session.id", skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(
        rename = "mcp.protocol.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_header: Option<String>,
    /// Fingerprint of the credential, never the credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Event-specific fields; each event name documents which it sets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Fields {
    #[serde(rename = "mcp.method.name", skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(rename = "mcp.message.kind", skip_serializing_if = "Option::is_none")]
    pub message_kind: Option<&'static str>,
    #[serde(rename = "gen_ai.tool.name", skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(rename = "gen_ai.prompt.name", skip_serializing_if = "Option::is_none")]
    pub prompt_name: Option<String>,
    #[serde(rename = "mcp.resource.uri", skip_serializing_if = "Option::is_none")]
    pub resource_uri: Option<String>,
    #[serde(rename = "jsonrpc.request.id", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(rename = "jsonrpc.batch.size", skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(
        rename = "jsonrpc.batch.index",
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_index: Option<usize>,
    #[serde(rename = "mcp.method.known", skip_serializing_if = "Option::is_none")]
    pub known_method: Option<bool>,
    #[serde(
        rename = "mcp.classified_from",
        skip_serializing_if = "Option::is_none"
    )]
    pub classified_from: Option<&'static str>,
    #[serde(rename = "mcp.body.inspected", skip_serializing_if = "Option::is_none")]
    pub body_inspected: Option<bool>,
    #[serde(rename = "mcp.body.bytes", skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<usize>,
    #[serde(
        rename = "gen_ai.tool.call.arguments",
        skip_serializing_if = "Option::is_none"
    )]
    pub arguments: Option<String>,
    #[serde(
        rename = "mcp.arguments.truncated",
        skip_serializing_if = "Option::is_none"
    )]
    pub arguments_truncated: Option<bool>,
    #[serde(
        rename = "http.response.status_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub http_status: Option<u32>,
    #[serde(
        rename = "rpc.response.status_code",
        skip_serializing_if = "Option::is_none"
    )]
    pub rpc_status: Option<String>,
    #[serde(rename = "error.type", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(rename = "mcp.outcome", skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    #[serde(rename = "duration_ms", skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Extra detail for a reason (an offered instance id, a header value, an endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(rename = "mcp.header.method", skip_serializing_if = "Option::is_none")]
    pub header_method: Option<String>,
    #[serde(rename = "mcp.header.name", skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    #[serde(rename = "sse.messages", skip_serializing_if = "Option::is_none")]
    pub sse_messages: Option<u64>,
    #[serde(
        rename = "envoy.response.code_details",
        skip_serializing_if = "Option::is_none"
    )]
    pub code_details: Option<String>,
    /// A breaker transition: states, reason, counts, time in the previous state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit: Option<crate::upstream::Transition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

#[derive(Serialize)]
struct Record<'a> {
    ts: String,
    source: &'a str,
    seq: u64,
    event: &'static str,
    level: &'static str,
    message: &'a str,
    #[serde(flatten)]
    common: &'a Common,
    #[serde(flatten)]
    fields: &'a Fields,
}

/// Where serialized events go. The first sink writes them to Envoy's log; shipping to the
/// collector is another sink.
pub trait EventSink {
    fn deliver(&mut self, line: String);
}

/// Writes one `mcp_event {json}` line per event through the `log` facade (Envoy's log).
#[derive(Debug, Default)]
pub struct LogSink;

pub const LOG_PREFIX: &str = "mcp_event ";

impl EventSink for LogSink {
    fn deliver(&mut self, line: String) {
        log::info!("{LOG_PREFIX}{line}");
    }
}

/// Collects lines in memory (tests).
#[derive(Debug, Default)]
pub struct MemorySink {
    pub lines: Vec<String>,
}

impl EventSink for MemorySink {
    fn deliver(&mut self, line: String) {
        self.lines.push(line);
    }
}

/// Per-VM emitter: stamps events with this VM's `source` id and a gap-free `seq`.
pub struct Emitter {
    source: String,
    next_seq: u64,
    min_level: Level,
    sink: Box<dyn EventSink>,
    /// Events that could not be serialized (counted, never a trap).
    pub failures: u64,
    /// Events below `min_level`, not emitted.
    pub suppressed: u64,
}

impl Emitter {
    pub fn new(source: String, min_level: Level, sink: Box<dyn EventSink>) -> Self {
        Emitter {
            source,
            next_seq: 1,
            min_level,
            sink,
            failures: 0,
            suppressed: 0,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn set_min_level(&mut self, level: Level) {
        self.min_level = level;
    }

    pub fn set_sink(&mut self, sink: Box<dyn EventSink>) {
        self.sink = sink;
    }

    /// Events emitted so far (the last `seq` handed out).
    pub fn emitted(&self) -> u64 {
        self.next_seq - 1
    }

    /// Emits one event; returns its `seq` when it was emitted.
    pub fn emit(
        &mut self,
        now: SystemTime,
        name: EventName,
        message: &str,
        common: &Common,
        fields: &Fields,
    ) -> Option<u64> {
        let level = name.level();
        if level < self.min_level {
            self.suppressed += 1;
            return None;
        }
        let record = Record {
            ts: humantime::format_rfc3339_micros(now).to_string(),
            source: &self.source,
            seq: self.next_seq,
            event: name.as_str(),
            level: level.as_str(),
            message,
            common,
            fields,
        };
        match serde_json::to_string(&record) {
            Ok(line) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.sink.deliver(line);
                Some(seq)
            }
            Err(_) => {
                self.failures += 1;
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::{Duration, UNIX_EPOCH};

    /// A sink the test can read after handing it to an emitter.
    #[derive(Clone, Default)]
    pub struct SharedSink(pub Rc<RefCell<Vec<String>>>);

    impl EventSink for SharedSink {
        fn deliver(&mut self, line: String) {
            self.0.borrow_mut().push(line);
        }
    }

    impl SharedSink {
        pub fn events(&self) -> Vec<Value> {
            self.0
                .borrow()
                .iter()
                .map(|l| serde_json::from_str(l).expect("event lines are JSON"))
                .collect()
        }
    }

    #[test]
    fn names_are_unique_and_levels_fixed() {
        for (i, a) in EventName::ALL.iter().enumerate() {
            assert!(EventName::ALL[i + 1..]
                .iter()
                .all(|b| b.as_str() != a.as_str()));
        }
        assert_eq!(EventName::ALL.len(), 22);
        assert_eq!(EventName::UpstreamError.level(), Level::Error);
        assert_eq!(
            EventName::HeaderBodyMismatch.as_str(),
            "header.body.mismatch"
        );
    }

    #[test]
    fn emitter_stamps_source_seq_ts_and_filters_levels() {
        let sink = SharedSink::default();
        let mut emitter = Emitter::new("src1".into(), Level::Info, Box::new(sink.clone()));
        let now = UNIX_EPOCH + Duration::from_micros(1_763_780_014_123_456);
        let common = Common {
            trace_id: "t".into(),
            token: Some("sha256:0123456789ab".into()),
            ..Common::default()
        };
        let fields = Fields {
            tool_name: Some("echo".into()),
            ..Fields::default()
        };
        assert_eq!(
            emitter.emit(now, EventName::Request, "m", &common, &fields),
            Some(1)
        );
        assert_eq!(
            emitter.emit(now, EventName::DirectorBefore, "m", &common, &fields),
            None
        );
        assert_eq!(
            emitter.emit(now, EventName::Response, "m", &common, &fields),
            Some(2)
        );
        assert_eq!(emitter.suppressed, 1);
        let events = sink.events();
        assert_eq!(events.len(), 2);
        let e = &events[0];
        assert_eq!(e["ts"], "2025-11-22T02:53:34.123456Z");
        assert_eq!(e["source"], "src1");
        assert_eq!(e["seq"], 1);
        assert_eq!(e["event"], "request");
        assert_eq!(e["level"], "info");
        assert_eq!(e["gen_ai.tool.name"], "echo");
        assert_eq!(e["token"], "sha256:0123456789ab");
        assert!(e.get("mcp.session.id").is_none());
        assert_eq!(events[1]["seq"], 2);
    }
}
