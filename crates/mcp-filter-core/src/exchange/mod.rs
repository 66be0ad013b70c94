//! One HTTP exchange through the gateway, as a pure state machine: it takes the request and
//! response heads, body chunks and the stream's end, and returns what the glue must do
//! (forward, hold, reject, rewrite) while emitting the exchange's events. Every classified
//! element ends with exactly one `response` event.
//!
//! One module per phase, each an `impl Exchange` block over the state defined here:
//! - [`request`]: the request head and body (instance, trace, credential, hold or mirror,
//!   validation policy, breaker admission);
//! - [`classify`]: turning the body (or the SEP-2243 headers) into elements;
//! - [`revision`]: what the request's protocol revision allows (methods, required headers);
//! - [`response`]: the response head and body, JSON and SSE, and matching answers to
//!   elements (here or, for the legacy transport, across workers);
//! - [`server_requests`]: requests and notifications the server sends on a stream, and the
//!   client's answers to them;
//! - [`end`]: the stream's end (failure classification, the `response` of every element
//!   still unanswered, the call's result for the upstream's breaker).
//!
//! The body is parsed once, borrowing; the exchange's shared fields ([`common`]) and each
//! element's message fields ([`elements`]) are rendered once and copied into each event.

mod classify;
pub mod common;
pub mod elements;
mod end;
pub mod headers;
mod legacy;
pub mod outcome;
mod request;
mod response;
mod revision;
mod server_requests;

use crate::breaker::UpstreamEnv;
use crate::config::Config;
use crate::events::{Event, EventName, Events, Message};
use crate::pending::SharedPending;
use crate::redact::FingerprintCache;
use crate::sse::SseParser;
use crate::trace::IdGenerator;
use crate::upstream::ProbeTicket;
use common::{Common, TailMemo};
use elements::Elements;
pub use headers::{RequestHeaders, ResponseHeaders};
use std::time::SystemTime;

pub use crate::reply::LocalReply;

/// The time, read from the host at most once per callback, and only if needed.
pub struct Clock<'a> {
    read: &'a dyn Fn() -> SystemTime,
    now: Option<SystemTime>,
}

impl<'a> Clock<'a> {
    pub fn new(read: &'a dyn Fn() -> SystemTime) -> Self {
        Clock { read, now: None }
    }

    /// A clock stopped at `now` (tests, tools).
    pub fn fixed(now: SystemTime) -> Clock<'static> {
        fn unused() -> SystemTime {
            std::time::UNIX_EPOCH
        }
        Clock {
            read: &unused,
            now: Some(now),
        }
    }

    pub fn now(&mut self) -> SystemTime {
        *self.now.get_or_insert_with(|| (self.read)())
    }
}

/// The buffers of finished exchanges, kept per VM for the next ones: in steady state an
/// exchange allocates none of its own. Bounded in number, and buffers a large exchange
/// grew are let go.
#[derive(Debug, Default)]
pub struct BufferPool {
    spare: Vec<Buffers>,
}

#[derive(Debug, Default)]
struct Buffers {
    common: (String, Vec<u8>),
    elements: (Vec<elements::Element>, Vec<u8>),
}

impl BufferPool {
    const KEPT: usize = 8;
    const LARGEST: usize = 4096;

    fn take(&mut self) -> Buffers {
        self.spare.pop().unwrap_or_default()
    }

    fn give(&mut self, buffers: Buffers) {
        let small = buffers.common.0.capacity() <= Self::LARGEST
            && buffers.common.1.capacity() <= Self::LARGEST
            && buffers.elements.1.capacity() <= Self::LARGEST
            && buffers.elements.0.capacity() <= 64;
        if small && self.spare.len() < Self::KEPT {
            self.spare.push(buffers);
        }
    }
}

/// Everything an exchange needs from its VM for one callback.
pub struct Env<'a> {
    pub config: &'a Config,
    pub clock: Clock<'a>,
    pub ids: &'a mut IdGenerator,
    pub events: &'a mut Events,
    /// The last rendered tail of shared fields (see `common`).
    pub memo: &'a mut TailMemo,
    pub buffers: &'a mut BufferPool,
    pub fingerprints: &'a mut FingerprintCache,
    /// Legacy HTTP+SSE requests waiting for their answer on another stream (all workers).
    pub pending: SharedPending<'a>,
    /// Upstream health and breaker, when configured.
    pub upstream: Option<UpstreamEnv<'a>>,
}

/// A header as Envoy gives it: a lower-case name and the value, as bytes.
pub type Header<'a> = (&'a [u8], &'a [u8]);

/// The request head.
pub struct RequestHead<'a> {
    pub headers: RequestHeaders<'a>,
    pub route_name: Option<&'a str>,
    pub cluster_name: Option<&'a str>,
    pub end_of_stream: bool,
}

/// The trace context headers to set on the request going upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceHeaders {
    /// The `traceparent` value: this hop's span.
    pub traceparent: [u8; 55],
    pub tracestate: TraceState,
}

/// What becomes of the request's `tracestate` header (W3C Trace Context: it belongs to the
/// `traceparent` it came with).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TraceState {
    /// Leave it as the client sent it (or absent): it goes with a continued `traceparent`.
    #[default]
    Keep,
    /// Remove it: its `traceparent` was missing or invalid, so this is a new trace.
    Remove,
    /// Set it to [`Exchange::meta_tracestate`]: the parent came from `_meta` (SEP-414) with
    /// its `_meta.tracestate` (kept out of the action, which the hot path moves around).
    FromMeta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAction {
    /// Forward the headers now, with these trace headers.
    Forward(TraceHeaders),
    /// Nothing to change: let the stream go on.
    Continue,
    /// Hold the headers; the body decides.
    Hold,
    Reject(LocalReply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBodyAction {
    Continue,
    /// Keep buffering (only while looking for the legacy `endpoint` event).
    Buffer,
    /// Replace everything buffered so far with these bytes, then continue.
    Replace(Vec<u8>),
}

/// How the stream ended, from Envoy's stream info.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamEnd<'a> {
    pub code_details: Option<&'a str>,
    pub response_code: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestPhase {
    /// Headers held; buffering the body until classification.
    Holding,
    /// Headers forwarded (classified from SEP-2243 headers); copying the body to check it.
    Mirroring,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseKind {
    Json,
    EventStream,
    Other,
}

/// A bounded copy of a body.
#[derive(Debug, Default)]
struct Capture {
    bytes: Vec<u8>,
    total: usize,
    overflow: bool,
}

impl Capture {
    fn push(&mut self, chunk: &[u8], cap: usize) {
        self.total += chunk.len();
        if self.overflow {
            return;
        }
        if self.bytes.len() + chunk.len() > cap {
            self.overflow = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(chunk);
        }
    }
}

#[derive(Debug)]
struct RequestState {
    phase: RequestPhase,
    body: Capture,
    content_type_ok: bool,
    had_traceparent_header: bool,
    tracestate: TraceState,
    /// `_meta.tracestate` of an adopted `_meta` parent.
    meta_tracestate: Option<Box<str>>,
    /// SEP-2243 `Mcp-Method` / `Mcp-Name`.
    header_method: Option<Box<str>>,
    header_name: Option<Box<str>>,
    /// The body disagreed with `Mcp-Method` / `Mcp-Name`.
    header_mismatch: bool,
    /// Legacy HTTP+SSE: the session of a POST to the message endpoint.
    legacy_post_session: Option<Box<str>>,
    /// The breaker refused the request as it was forwarded at once: its body is awaited
    /// only to answer with its JSON-RPC id (`Retry-After` seconds).
    reject_after_body: Option<u64>,
}

/// The state of an event-stream response.
#[derive(Debug)]
struct EventStream {
    parser: SseParser,
    messages: u64,
    /// The head of a legacy stream, held until its `endpoint` event is rewritten.
    rewrite_head: Option<Vec<u8>>,
    /// Legacy HTTP+SSE: the session this GET stream delivers answers for.
    legacy_session: Option<Box<str>>,
}

#[derive(Debug)]
struct ResponseState {
    status: Option<u32>,
    kind: ResponseKind,
    body: Capture,
    complete: bool,
    first_byte_at: Option<SystemTime>,
    stream: Option<Box<EventStream>>,
    jsonrpc_error_seen: bool,
    tool_error_seen: bool,
}

/// The first element's classification, kept only to mirror it into filter state.
#[derive(Debug, Default)]
struct Mirror {
    method: Option<String>,
    tool: Option<String>,
    request_id: Option<String>,
    /// Changed since the glue last wrote it.
    dirty: bool,
}

pub struct Exchange {
    common: Common,
    started: SystemTime,
    request: RequestState,
    elements: Elements,
    response: ResponseState,
    /// Legacy HTTP+SSE GET stream under a path prefix: where its `endpoint` is moved.
    endpoint_prefix: Option<Box<str>>,
    /// Admitted against a shared upstream record: the outcome is recorded at the end.
    tracked: bool,
    probe: Option<ProbeTicket>,
    rejected: bool,
    ended: bool,
    mirror: Option<Box<Mirror>>,
}

/// Microseconds from `from` to `to` (0 if the clock went back).
fn micros(from: SystemTime, to: SystemTime) -> u64 {
    // Seconds and sub-second micros in u64: `as_micros` would go through u128.
    to.duration_since(from).map_or(0, |d| {
        d.as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()))
    })
}

/// Starts an event with the exchange's shared fields; `None` below `min_level`. A free
/// function over `Common` so the caller can keep borrowing the rest of the exchange.
fn begin<'e>(
    common: &mut Common,
    env: &'e mut Env,
    name: EventName,
    message: Message,
) -> Option<Event<'e>> {
    let clock = &mut env.clock;
    let mut event = env.events.begin(|| clock.now(), name, message)?;
    event.fragment(common.fragment(env.config, env.memo));
    Some(event)
}

/// Like [`begin`], stamped with a time already known (no clock read).
fn begin_at<'e>(
    common: &mut Common,
    env: &'e mut Env,
    at: SystemTime,
    name: EventName,
    message: Message,
) -> Option<Event<'e>> {
    let mut event = env.events.begin(|| at, name, message)?;
    event.fragment(common.fragment(env.config, env.memo));
    Some(event)
}

impl Exchange {
    /// Starts an event of this exchange with its shared fields; `None` below `min_level`.
    fn begin<'e>(
        &mut self,
        env: &'e mut Env,
        name: EventName,
        message: Message,
    ) -> Option<Event<'e>> {
        begin(&mut self.common, env, name, message)
    }

    /// Microseconds since the request started.
    fn elapsed(&self, env: &mut Env) -> u64 {
        micros(self.started, env.clock.now())
    }

    fn reject(&mut self) {
        self.rejected = true;
        self.request.phase = RequestPhase::Done;
    }

    /// Classification to mirror into Envoy filter state (for access logs and RBAC), when the
    /// configuration asks for it and it changed since the last call.
    pub fn take_filter_state(&mut self) -> Vec<(&'static str, String)> {
        let Some(mirror) = self.mirror.as_mut().filter(|m| m.dirty) else {
            return Vec::new();
        };
        mirror.dirty = false;
        let mirror = &**mirror;
        let mut state = vec![(
            "mcp_trace_id",
            crate::trace::to_hex(&self.common.trace().trace_id),
        )];
        let mut push = |key, value: Option<&str>| {
            if let Some(v) = value {
                state.push((key, v.to_string()));
            }
        };
        push("mcp_instance", self.common.instance());
        push("mcp_session_id", self.common.session_id());
        push("mcp_method", mirror.method.as_deref());
        push("mcp_tool", mirror.tool.as_deref());
        push("mcp_request_id", mirror.request_id.as_deref());
        state
    }

    /// The trace id, as the response header echoes it.
    pub fn trace_id_hex(&self) -> [u8; 32] {
        let mut out = [b'0'; 32];
        crate::trace::write_hex(&mut out, &self.common.trace().trace_id);
        out
    }

    /// Whether request body bytes are still needed (classification not finished).
    pub fn wants_request_body(&self) -> bool {
        self.request.phase != RequestPhase::Done
    }

    /// Whether response body bytes are needed; when not, only the end of stream matters.
    pub fn wants_response_bytes(&self) -> bool {
        let useful = match self.response.kind {
            ResponseKind::EventStream => true,
            ResponseKind::Json => !self.response.body.overflow,
            ResponseKind::Other => false,
        };
        useful && !self.rejected && !self.response.complete
    }

    /// Whether the stream end needs Envoy's `response.code_details` and `response.code`: not
    /// after a complete response below 400, whose outcome is already known.
    pub fn needs_stream_details(&self) -> bool {
        let clean = self.response.complete
            && self.response.status.is_some_and(|s| s < 400)
            && !self.rejected;
        !clean
    }

    /// The exchange is over: its buffers go back to the pool for the next one.
    pub fn recycle(&mut self, pool: &mut BufferPool) {
        pool.give(Buffers {
            common: self.common.take_buffers(),
            elements: self.elements.take_buffers(),
        });
    }

    /// A host call failed inside the filter; the stream continues untouched.
    pub fn report_internal_error(&mut self, env: &mut Env, what: &'static str) {
        if let Some(mut event) = self.begin(
            env,
            EventName::HostCallFailed,
            Message::Text("internal error caught; request passed through"),
        ) {
            event.label(crate::events::keys::REASON, what);
        }
    }
}

/// The path without its query.
pub fn path_only(path: &str) -> &str {
    match path.bytes().position(|b| b == b'?') {
        Some(end) => path.get(..end).unwrap_or(path),
        None => path,
    }
}

fn path_matches(path: &str, suffix: &str) -> bool {
    path_only(path).ends_with(suffix)
}

fn is_json_content_type(value: &str) -> bool {
    if crate::bytes::bytes_eq(value.as_bytes(), b"application/json") {
        return true;
    }
    let value = value.as_bytes();
    let media = memchr::memchr(b';', value).map_or(value, |end| &value[..end]);
    media.trim_ascii().eq_ignore_ascii_case(b"application/json")
}

/// `sessionId` (or `session_id`) query parameter of a legacy transport path.
fn query_session(path: &str) -> Option<&str> {
    let query = path.get(path_only(path).len() + 1..)?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        matches!(k, "sessionId" | "session_id").then_some(v)
    })
}

#[cfg(any(test, fuzzing))]
pub mod drive;
#[cfg(test)]
mod tests;
