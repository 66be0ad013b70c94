//! Spans from `response` events, one per JSON-RPC request/response pair (the gateway's view,
//! kind SERVER). Trace id, span id and parent are the ones the filter put on the wire, so the
//! upstream server's spans hang under them; the span runs from the filter's request start
//! (`ts - duration_ms`, microsecond precision) to the event's `ts`; attributes follow the
//! OpenTelemetry MCP conventions; status is ERROR when `error.type` is set.
//!
//! A batch's elements share one wire span id. Each element gets a span of its own (id derived
//! from the wire span id and its index), child of the exchange span, which carries the wire
//! id and is emitted by `BatchAssembler` once every element has answered or it has waited
//! `linger`. SSE responses need nothing special: the filter emits one `response` per message.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span, Status};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// W3C sampled flag, plus "the parent's remoteness is known" and "the parent is remote"
/// (OTLP `SpanFlags`).
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// A JSON scalar read leniently (the wire contract allows a string or a number for some
/// fields; anything else gives no value).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Scalar<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Number(serde_json::Number),
    Other(serde::de::IgnoredAny),
}

impl Scalar<'_> {
    fn text(&self) -> Option<String> {
        match self {
            Scalar::Text(t) => Some(t.to_string()),
            Scalar::Number(n) => Some(n.to_string()),
            Scalar::Other(_) => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Scalar::Number(n) => n.as_f64(),
            Scalar::Text(t) => t.parse().ok(),
            Scalar::Other(_) => None,
        }
    }
}

type Text<'a> = Option<Cow<'a, str>>;

/// The fields of a `response` event that spans and metrics use (docs/events.md).
#[derive(Deserialize, Default)]
pub struct ResponseEvent<'a> {
    #[serde(borrow, default)]
    pub source: Text<'a>,
    #[serde(borrow, default)]
    pub trace_id: Text<'a>,
    #[serde(borrow, default)]
    pub span_id: Text<'a>,
    #[serde(borrow, default)]
    pub parent_span_id: Text<'a>,
    #[serde(borrow, default, rename = "trace.origin")]
    pub trace_origin: Text<'a>,
    #[serde(borrow, default)]
    pub instance_id: Text<'a>,
    #[serde(borrow, default, rename = "http.request.method")]
    pub http_method: Text<'a>,
    #[serde(borrow, default, rename = "mcp.transport")]
    pub transport: Text<'a>,
    #[serde(borrow, default, rename = "mcp.session.id")]
    pub session_id: Text<'a>,
    #[serde(borrow, default, rename = "mcp.protocol.version")]
    pub protocol_version: Text<'a>,
    #[serde(borrow, default, rename = "mcp.method.name")]
    pub method: Text<'a>,
    #[serde(borrow, default, rename = "gen_ai.tool.name")]
    pub tool: Text<'a>,
    #[serde(borrow, default, rename = "gen_ai.prompt.name")]
    pub prompt: Text<'a>,
    #[serde(borrow, default, rename = "mcp.resource.uri")]
    pub resource_uri: Text<'a>,
    #[serde(borrow, default, rename = "jsonrpc.request.id")]
    pub request_id: Option<Scalar<'a>>,
    #[serde(borrow, default, rename = "jsonrpc.batch.size")]
    pub batch_size: Option<Scalar<'a>>,
    #[serde(borrow, default, rename = "jsonrpc.batch.index")]
    pub batch_index: Option<Scalar<'a>>,
    #[serde(borrow, default, rename = "http.response.status_code")]
    pub http_status: Option<Scalar<'a>>,
    #[serde(borrow, default, rename = "rpc.response.status_code")]
    pub rpc_status: Option<Scalar<'a>>,
    #[serde(borrow, default, rename = "error.type")]
    pub error_type: Option<Scalar<'a>>,
    #[serde(borrow, default, rename = "mcp.outcome")]
    pub outcome: Text<'a>,
    #[serde(borrow, default)]
    pub duration_ms: Option<Scalar<'a>>,
}

impl ResponseEvent<'_> {
    pub fn error_type(&self) -> Option<String> {
        self.error_type
            .as_ref()
            .and_then(Scalar::text)
            .filter(|e| !e.is_empty())
    }

    pub fn duration_ms(&self) -> Option<f64> {
        self.duration_ms
            .as_ref()
            .and_then(Scalar::number)
            .filter(|d| d.is_finite() && *d >= 0.0)
    }

    fn batch(&self) -> Option<(u64, u64)> {
        let num = |s: &Option<Scalar>| s.as_ref().and_then(Scalar::number).map(|n| n as u64);
        Some((num(&self.batch_index)?, num(&self.batch_size)?))
    }
}

pub fn hex_id<const N: usize>(hex: &str) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    // All-zero ids are invalid in W3C trace context and in OTLP.
    out.iter().any(|b| *b != 0).then_some(out)
}

pub fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// `{mcp.method.name} {target}` with the tool or prompt as target; the HTTP method when the
/// exchange carried no JSON-RPC message (a GET stream, a DELETE).
pub fn span_name(event: &ResponseEvent) -> String {
    let target = event.tool.as_deref().or(event.prompt.as_deref());
    match (event.method.as_deref(), target) {
        (Some(m), Some(t)) => format!("{m} {t}"),
        (Some(m), None) => m.to_string(),
        (None, _) => event.http_method.as_deref().unwrap_or("mcp").to_string(),
    }
}

/// The attributes shared by an exchange and its elements.
fn exchange_attributes(event: &ResponseEvent, out: &mut Vec<KeyValue>) {
    out.push(kv("network.transport", "tcp"));
    out.push(kv("network.protocol.name", "http"));
    let texts = [
        ("mcp.session.id", &event.session_id),
        ("mcp.protocol.version", &event.protocol_version),
        ("http.request.method", &event.http_method),
        ("mcp.transport", &event.transport),
        ("mcp.gateway.instance_id", &event.instance_id),
        ("mcp.gateway.source", &event.source),
    ];
    for (key, value) in texts {
        if let Some(v) = value.as_deref() {
            out.push(kv(key, v));
        }
    }
}

fn element_attributes(event: &ResponseEvent, out: &mut Vec<KeyValue>) {
    let texts = [
        ("mcp.method.name", &event.method),
        ("gen_ai.tool.name", &event.tool),
        ("gen_ai.prompt.name", &event.prompt),
        ("mcp.resource.uri", &event.resource_uri),
        ("mcp.gateway.outcome", &event.outcome),
    ];
    for (key, value) in texts {
        if let Some(v) = value.as_deref() {
            out.push(kv(key, v));
        }
    }
    if event.method.as_deref() == Some("tools/call") {
        out.push(kv("gen_ai.operation.name", "execute_tool"));
    }
    let scalars = [
        ("jsonrpc.request.id", &event.request_id),
        ("rpc.response.status_code", &event.rpc_status),
    ];
    for (key, value) in scalars {
        if let Some(v) = value.as_ref().and_then(Scalar::text) {
            out.push(kv(key, v));
        }
    }
    if let Some(e) = event.error_type() {
        out.push(kv("error.type", e));
    }
    if let Some(status) = event.http_status.as_ref().and_then(Scalar::number) {
        out.push(kv_int("http.response.status_code", status as i64));
    }
}

/// The span times of one event, in Unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub start: u64,
    pub end: u64,
}

impl Times {
    pub fn of(event: &ResponseEvent, end: u64) -> Times {
        let took = event
            .duration_ms()
            .map_or(0, |ms| (ms * 1_000_000.0).round() as u64);
        Times {
            start: end.saturating_sub(took),
            end,
        }
    }
}

/// The trace ids of an event, when it has valid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    /// The parent came from the client (a header or `_meta`), not from this gateway.
    pub parent_remote: bool,
}

impl Ids {
    pub fn of(event: &ResponseEvent) -> Option<Ids> {
        let parent = event.parent_span_id.as_deref().and_then(hex_id::<8>);
        Some(Ids {
            trace_id: hex_id::<16>(event.trace_id.as_deref()?)?,
            span_id: hex_id::<8>(event.span_id.as_deref()?)?,
            parent,
            parent_remote: parent.is_some() && event.trace_origin.as_deref() != Some("generated"),
        })
    }
}

/// The span id of batch element `index`: stable (a resent event gets the same id) and
/// distinct from the wire span id.
pub fn element_span_id(ids: &Ids, index: u64) -> [u8; 8] {
    let mut hasher = Sha256::new();
    hasher.update(ids.trace_id);
    hasher.update(ids.span_id);
    hasher.update(index.to_be_bytes());
    let digest = hasher.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    if id == [0u8; 8] || id == ids.span_id {
        id[7] ^= 1;
    }
    id
}

fn flags(has_parent: bool, remote: bool) -> u32 {
    let mut f = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
    if has_parent && remote {
        f |= FLAG_IS_REMOTE;
    }
    f
}

fn status(error_type: Option<String>) -> Option<Status> {
    error_type.map(|message| Status {
        message,
        code: StatusCode::Error as i32,
    })
}

/// The span of one request/response pair. For a batch element, `exchange` is the wire span
/// it hangs under.
pub fn element_span(event: &ResponseEvent, ids: &Ids, times: Times) -> Span {
    let mut attributes = Vec::with_capacity(16);
    element_attributes(event, &mut attributes);
    exchange_attributes(event, &mut attributes);
    let (span_id, parent, remote) = match event.batch() {
        Some((index, size)) => {
            attributes.push(kv_int("jsonrpc.batch.index", index as i64));
            attributes.push(kv_int("jsonrpc.batch.size", size as i64));
            (element_span_id(ids, index), Some(ids.span_id), false)
        }
        None => (ids.span_id, ids.parent, ids.parent_remote),
    };
    Span {
        trace_id: ids.trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: flags(parent.is_some(), remote),
        name: span_name(event),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: times.start,
        end_time_unix_nano: times.end,
        attributes,
        status: status(event.error_type()),
        ..Default::default()
    }
}

/// An exchange span waiting for the rest of its batch.
struct Pending {
    span: Span,
    expected: u64,
    seen: u64,
    failed: u64,
    since: Instant,
}

/// Collects the elements of each batch and emits its exchange span (the wire span id) when
/// all have answered, or after `linger` with what arrived (the filter itemises at most
/// `max_batch_elements`; the rest never get an event). Bounded: beyond `max_pending` open
/// batches, a new batch's exchange span is emitted at once from its first element.
pub struct BatchAssembler {
    pending: HashMap<([u8; 16], [u8; 8]), Pending>,
    max_pending: usize,
    linger: Duration,
}

impl BatchAssembler {
    pub fn new(max_pending: usize, linger: Duration) -> Self {
        BatchAssembler {
            pending: HashMap::new(),
            max_pending,
            linger,
        }
    }

    /// Records a batch element; returns the exchange span once complete.
    pub fn element(
        &mut self,
        event: &ResponseEvent,
        ids: &Ids,
        times: Times,
        now: Instant,
    ) -> Option<Span> {
        let (_, size) = event.batch()?;
        let key = (ids.trace_id, ids.span_id);
        if !self.pending.contains_key(&key) {
            let mut attributes = vec![kv_int("jsonrpc.batch.size", size as i64)];
            exchange_attributes(event, &mut attributes);
            let span = Span {
                trace_id: ids.trace_id.to_vec(),
                span_id: ids.span_id.to_vec(),
                parent_span_id: ids.parent.map(|p| p.to_vec()).unwrap_or_default(),
                flags: flags(ids.parent.is_some(), ids.parent_remote),
                name: "batch".to_string(),
                kind: SpanKind::Server as i32,
                start_time_unix_nano: times.start,
                end_time_unix_nano: times.end,
                attributes,
                ..Default::default()
            };
            let pending = Pending {
                span,
                expected: size.max(1),
                seen: 0,
                failed: 0,
                since: now,
            };
            if self.pending.len() >= self.max_pending {
                return Some(finish(record(pending, times, event)));
            }
            self.pending.insert(key, pending);
        }
        let entry = self.pending.remove(&key)?;
        let entry = record(entry, times, event);
        if entry.seen >= entry.expected {
            return Some(finish(entry));
        }
        self.pending.insert(key, entry);
        None
    }

    /// Exchange spans that waited `linger` for elements that did not come.
    pub fn expire(&mut self, now: Instant) -> Vec<Span> {
        let linger = self.linger;
        let expired: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.since) >= linger)
            .map(|(k, _)| *k)
            .collect();
        expired
            .into_iter()
            .filter_map(|k| self.pending.remove(&k))
            .map(finish)
            .collect()
    }

    /// Everything still open (at shutdown).
    pub fn drain(&mut self) -> Vec<Span> {
        self.pending.drain().map(|(_, p)| finish(p)).collect()
    }

    pub fn open(&self) -> usize {
        self.pending.len()
    }
}

fn record(mut p: Pending, times: Times, event: &ResponseEvent) -> Pending {
    p.seen += 1;
    p.failed += u64::from(event.error_type().is_some());
    p.span.start_time_unix_nano = p.span.start_time_unix_nano.min(times.start);
    p.span.end_time_unix_nano = p.span.end_time_unix_nano.max(times.end);
    p
}

fn finish(mut p: Pending) -> Span {
    p.span
        .attributes
        .push(kv_int("jsonrpc.batch.answered", p.seen as i64));
    if p.failed > 0 {
        p.span.status = Some(Status {
            message: format!("{} of {} elements failed", p.failed, p.seen),
            code: StatusCode::Error as i32,
        });
    }
    p.span
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> ResponseEvent<'_> {
        serde_json::from_str(json).expect("event JSON")
    }

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn text(span: &Span, key: &str) -> Option<String> {
        match attr(span, key)? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    }

    #[test]
    fn a_tool_call_becomes_a_server_span_with_the_wire_ids() {
        let json = format!(
            r#"{{"trace_id":"{TRACE}","span_id":"b7ad6b7169203331","parent_span_id":"00f067aa0ba902b7","trace.origin":"header","http.request.method":"POST","mcp.method.name":"tools/call","gen_ai.tool.name":"echo","jsonrpc.request.id":"7","mcp.session.id":"s1","mcp.protocol.version":"2025-06-18","mcp.outcome":"jsonrpc_error","error.type":"-32602","rpc.response.status_code":"-32602","http.response.status_code":200,"duration_ms":12.5}}"#
        );
        let event = parse(&json);
        let ids = Ids::of(&event).expect("ids");
        let span = element_span(&event, &ids, Times::of(&event, 1_000_000_000));
        assert_eq!(span.name, "tools/call echo");
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(
            span.span_id,
            hex_id::<8>("b7ad6b7169203331").unwrap().to_vec()
        );
        assert_eq!(
            span.parent_span_id,
            hex_id::<8>("00f067aa0ba902b7").unwrap().to_vec()
        );
        assert_eq!(
            span.flags,
            FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE
        );
        assert_eq!(span.start_time_unix_nano, 1_000_000_000 - 12_500_000);
        assert_eq!(
            span.status.as_ref().map(|s| s.code),
            Some(StatusCode::Error as i32)
        );
        assert_eq!(
            text(&span, "gen_ai.operation.name").as_deref(),
            Some("execute_tool")
        );
        assert_eq!(text(&span, "error.type").as_deref(), Some("-32602"));
        assert_eq!(text(&span, "network.transport").as_deref(), Some("tcp"));
        assert_eq!(
            attr(&span, "http.response.status_code"),
            Some(&any_value::Value::IntValue(200))
        );
    }

    #[test]
    fn names_fall_back_and_ok_spans_have_no_status() {
        let get = parse(r#"{"http.request.method":"GET","mcp.outcome":"client_closed"}"#);
        assert_eq!(span_name(&get), "GET");
        let prompt = parse(r#"{"mcp.method.name":"prompts/get","gen_ai.prompt.name":"p"}"#);
        assert_eq!(span_name(&prompt), "prompts/get p");
        let ok_json = format!(
            r#"{{"trace_id":"{TRACE}","span_id":"b7ad6b7169203331","trace.origin":"generated","mcp.method.name":"ping","mcp.outcome":"ok"}}"#
        );
        let ok = parse(&ok_json);
        let ids = Ids::of(&ok).expect("ids");
        let span = element_span(&ok, &ids, Times::of(&ok, 5));
        assert!(span.status.is_none());
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.flags, FLAG_SAMPLED | FLAG_HAS_IS_REMOTE);
        assert!(Ids::of(&parse(
            r#"{"trace_id":"00000000000000000000000000000000","span_id":"b7ad6b7169203331"}"#
        ))
        .is_none());
    }

    #[test]
    fn batch_elements_hang_under_the_exchange_span() {
        let element = |i: u64, end_ms: f64| {
            format!(
                r#"{{"trace_id":"{TRACE}","span_id":"b7ad6b7169203331","mcp.method.name":"tools/call","gen_ai.tool.name":"echo","jsonrpc.batch.size":2,"jsonrpc.batch.index":{i},"duration_ms":{end_ms}}}"#
            )
        };
        let mut assembler = BatchAssembler::new(10, Duration::from_secs(5));
        let now = Instant::now();
        let (a, b) = (element(0, 10.0), element(1, 30.0));
        let (a, b) = (parse(&a), parse(&b));
        let ids = Ids::of(&a).expect("ids");
        let span_a = element_span(&a, &ids, Times::of(&a, 100_000_000));
        assert_eq!(span_a.parent_span_id, ids.span_id.to_vec());
        assert_ne!(span_a.span_id, ids.span_id.to_vec());
        assert!(assembler
            .element(&a, &ids, Times::of(&a, 100_000_000), now)
            .is_none());
        let exchange = assembler
            .element(&b, &ids, Times::of(&b, 120_000_000), now)
            .expect("complete");
        assert_eq!(exchange.span_id, ids.span_id.to_vec());
        assert_eq!(exchange.start_time_unix_nano, 90_000_000);
        assert_eq!(exchange.end_time_unix_nano, 120_000_000);
        assert_eq!(assembler.open(), 0);
        // An incomplete batch is emitted after the linger time.
        assert!(assembler.element(&a, &ids, Times::of(&a, 1), now).is_none());
        assert!(assembler.expire(now).is_empty());
        assert_eq!(assembler.expire(now + Duration::from_secs(5)).len(), 1);
    }
}
