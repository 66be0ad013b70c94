//! The fields every event of one exchange shares (trace, instance, HTTP request, transport,
//! session, protocol version, credential fingerprint), and their rendering: written once as a
//! fragment of JSON and copied into each event, rendered again only when one of them changes
//! (the server assigns a session, the body names the protocol version, `_meta` carries the
//! trace). All but the trace ids usually repeat from one exchange to the next on a worker,
//! so that part is memoised per VM ([`TailMemo`]).

use crate::bytes::bytes_eq;
use crate::config::Config;
use crate::events::keys;
use crate::json::{push_escaped, push_label, push_string, push_trusted};
use crate::methods::Revision;
use crate::redact::Fingerprint;
use crate::trace::{push_hex, TraceContext, TraceOrigin, TraceParent};

/// Room for the strings of a typical exchange, and for its rendered fields.
const TEXT_CAPACITY: usize = 192;
const FRAGMENT_CAPACITY: usize = 448;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    StreamableHttp,
    /// The legacy HTTP+SSE transport.
    Sse,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable_http",
            Transport::Sse => "sse",
        }
    }
}

/// Everything the tail of the rendered fields (all but the trace ids) depends on, beside
/// the strings themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    origin: TraceOrigin,
    transport: Transport,
    instance: Option<(usize, usize)>,
    http_method: (usize, usize),
    /// Without the query.
    path: (usize, usize),
    session_id: Option<(usize, usize)>,
    protocol_version: Option<(usize, usize)>,
    /// The protocol version as a revision, when it is one this filter knows.
    revision: Option<Revision>,
    /// Index of the credential header in `Config::credential_headers`, and the fingerprint.
    token: Option<(usize, Fingerprint)>,
}

#[derive(Debug)]
pub struct Common {
    trace: TraceParent,
    parent_span_id: Option<[u8; 8]>,
    /// The exchange's strings, one allocation: the shape's ranges point into it.
    text: String,
    shape: Shape,
    fragment: Vec<u8>,
    stale: bool,
}

/// The last rendered tail of shared fields, per VM, with what it was rendered from. A worker
/// serves runs of requests from the same clients, whose tails are the same bytes: copying
/// them back is much cheaper than escaping and writing each field again.
#[derive(Debug, Default)]
pub struct TailMemo {
    text: String,
    shape: Option<Shape>,
    rendered: Vec<u8>,
    /// Tails rendered (not served from the memo).
    misses: u64,
}

impl Common {
    pub fn new(trace: TraceContext, http_method: &str, path: &str, transport: Transport) -> Self {
        Common::with_buffers(
            trace,
            http_method,
            path,
            transport,
            (String::new(), Vec::new()),
        )
    }

    /// Like `new`, writing into buffers a finished exchange left (see `BufferPool`).
    pub fn with_buffers(
        trace: TraceContext,
        http_method: &str,
        path: &str,
        transport: Transport,
        (mut text, mut fragment): (String, Vec<u8>),
    ) -> Self {
        text.clear();
        fragment.clear();
        text.reserve(TEXT_CAPACITY);
        let http_method = keep(&mut text, http_method);
        let path = keep(&mut text, super::path_only(path));
        Common {
            trace: trace.current,
            parent_span_id: trace.parent_span_id,
            text,
            shape: Shape {
                origin: trace.origin,
                transport,
                instance: None,
                http_method,
                path,
                session_id: None,
                protocol_version: None,
                revision: None,
                token: None,
            },
            fragment,
            stale: true,
        }
    }

    /// The buffers, for the next exchange (this one keeps empty ones).
    pub fn take_buffers(&mut self) -> (String, Vec<u8>) {
        (
            std::mem::take(&mut self.text),
            std::mem::take(&mut self.fragment),
        )
    }

    fn get(&self, range: Option<(usize, usize)>) -> Option<&str> {
        range.and_then(|(start, end)| self.text.get(start..end))
    }

    pub fn trace(&self) -> &TraceParent {
        &self.trace
    }

    pub fn origin(&self) -> TraceOrigin {
        self.shape.origin
    }

    pub fn set_trace(&mut self, trace: TraceContext) {
        self.trace = trace.current;
        self.parent_span_id = trace.parent_span_id;
        self.shape.origin = trace.origin;
        self.stale = true;
    }

    pub fn instance(&self) -> Option<&str> {
        self.get(self.shape.instance)
    }

    pub fn set_instance(&mut self, instance: &str) {
        self.shape.instance = Some(keep(&mut self.text, instance));
        self.stale = true;
    }

    pub fn http_method(&self) -> &str {
        self.get(Some(self.shape.http_method)).unwrap_or_default()
    }

    pub fn transport(&self) -> Transport {
        self.shape.transport
    }

    pub fn session_id(&self) -> Option<&str> {
        self.get(self.shape.session_id)
    }

    pub fn set_session_id(&mut self, session: &str) {
        self.shape.session_id = Some(keep(&mut self.text, session));
        self.stale = true;
    }

    pub fn protocol_version(&self) -> Option<&str> {
        self.get(self.shape.protocol_version)
    }

    /// The protocol version to record; `declared` when the request speaks it (its header,
    /// `_meta`, or an answer), not when it only offers it (`initialize`).
    pub fn set_protocol_version(&mut self, version: &str, declared: bool) {
        self.shape.protocol_version = Some(keep(&mut self.text, version));
        self.shape.revision = Revision::parse(version).filter(|_| declared);
        self.stale = true;
    }

    /// The protocol version the request declares, as a known revision.
    pub fn revision(&self) -> Option<Revision> {
        self.shape.revision
    }

    pub fn set_token(&mut self, header_index: usize, print: Fingerprint) {
        self.shape.token = Some((header_index, print));
        self.stale = true;
    }

    /// The rendered fields (each `,"key":value`), rendered again if something changed.
    pub fn fragment(&mut self, config: &Config, memo: &mut TailMemo) -> &[u8] {
        if self.stale {
            self.render(config, memo);
            self.stale = false;
        }
        &self.fragment
    }

    fn render(&mut self, config: &Config, memo: &mut TailMemo) {
        let mut buf = std::mem::take(&mut self.fragment);
        buf.clear();
        buf.reserve(FRAGMENT_CAPACITY);
        self.render_trace(&mut buf);
        let same =
            memo.shape == Some(self.shape) && bytes_eq(memo.text.as_bytes(), self.text.as_bytes());
        if !same {
            memo.misses += 1;
            memo.rendered.clear();
            self.render_tail(&mut memo.rendered, config);
            memo.text.clear();
            memo.text.push_str(&self.text);
            memo.shape = Some(self.shape);
        }
        buf.extend_from_slice(&memo.rendered);
        self.fragment = buf;
    }

    fn render_trace(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(keys::TRACE_ID.as_bytes());
        buf.push(b'"');
        push_hex(buf, &self.trace.trace_id);
        buf.extend_from_slice(b"\"");
        buf.extend_from_slice(keys::SPAN_ID.as_bytes());
        buf.push(b'"');
        push_hex(buf, &self.trace.span_id);
        buf.push(b'"');
        if let Some(parent) = &self.parent_span_id {
            buf.extend_from_slice(keys::PARENT_SPAN_ID.as_bytes());
            buf.push(b'"');
            push_hex(buf, parent);
            buf.push(b'"');
        }
    }

    fn render_tail(&self, buf: &mut Vec<u8>, config: &Config) {
        label(buf, keys::TRACE_ORIGIN, self.shape.origin.as_str());
        field(buf, keys::INSTANCE_ID, self.instance());
        field(buf, keys::HTTP_METHOD, Some(self.http_method()));
        field(buf, keys::URL_PATH, self.get(Some(self.shape.path)));
        label(buf, keys::TRANSPORT, self.shape.transport.as_str());
        field(buf, keys::SESSION_ID, self.session_id());
        field(buf, keys::PROTOCOL_VERSION, self.protocol_version());
        if let Some((index, print)) = &self.shape.token {
            // A configured (validated) header name and hex digits: nothing to escape.
            if let Some(header) = config.credential_headers.get(*index) {
                buf.extend_from_slice(keys::TOKEN_HEADER.as_bytes());
                push_trusted(buf, header);
            }
            buf.extend_from_slice(keys::TOKEN.as_bytes());
            buf.push(b'"');
            buf.extend_from_slice(print.as_bytes());
            buf.push(b'"');
        }
    }
}

/// Appends `value` to the exchange's strings; its range there.
fn keep(text: &mut String, value: &str) -> (usize, usize) {
    let start = text.len();
    text.push_str(value);
    (start, text.len())
}

fn label(buf: &mut Vec<u8>, key: &str, value: &'static str) {
    buf.extend_from_slice(key.as_bytes());
    push_label(buf, value);
}

/// Appends `,"key":"value"` for a label of this program's own.
pub fn push_label_field(buf: &mut Vec<u8>, key: &str, value: &'static str) {
    label(buf, key, value);
}

fn field(buf: &mut Vec<u8>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        buf.extend_from_slice(key.as_bytes());
        push_string(buf, value);
    }
}

/// Appends `,"key":"value"` (value escaped); for fragments built elsewhere in the exchange.
pub fn push_field(buf: &mut Vec<u8>, key: &str, value: &str) {
    buf.extend_from_slice(key.as_bytes());
    buf.push(b'"');
    push_escaped(buf, value);
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::IdGenerator;
    use serde_json::Value;

    fn render(common: &mut Common, config: &Config, memo: &mut TailMemo) -> Value {
        let json = format!(
            "{{\"x\":0{}}}",
            String::from_utf8_lossy(common.fragment(config, memo))
        );
        serde_json::from_str(&json).expect("the fragment is JSON members")
    }

    fn common(ids: &mut IdGenerator, session: &str) -> Common {
        let parent = TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let trace = TraceContext::continue_or_start(parent, TraceOrigin::Header, ids);
        let mut common = Common::new(
            trace,
            "POST",
            "/mcp/demo/mcp?x=\"1\"",
            Transport::StreamableHttp,
        );
        common.set_instance("demo");
        common.set_session_id(session);
        common.set_token(
            0,
            crate::redact::fingerprint(
                b"Bearer t",
                &crate::config::Fingerprinting::Unkeyed {
                    salt: String::new(),
                },
            ),
        );
        common
    }

    #[test]
    fn renders_once_and_again_only_after_a_change() {
        let config = Config::parse(b"").expect("defaults");
        let (mut ids, mut memo) = (IdGenerator::new(1), TailMemo::default());
        let mut common = common(&mut ids, "s1");
        let first = render(&mut common, &config, &mut memo);
        assert_eq!(first["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(first["parent_span_id"], "b7ad6b7169203331");
        assert_eq!(first["trace.origin"], "header");
        assert_eq!(first["url.path"], "/mcp/demo/mcp");
        assert_eq!(first["token_header"], "authorization");
        assert_eq!(first["mcp.session.id"], "s1");
        assert!(first.get("mcp.protocol.version").is_none());
        assert!(!common.stale, "rendered, and kept until something changes");
        common.set_protocol_version("2025\"06", true);
        assert_eq!(
            render(&mut common, &config, &mut memo)["mcp.protocol.version"],
            "2025\"06"
        );
    }

    #[test]
    fn the_memo_serves_identical_tails_and_never_a_different_one() {
        let config = Config::parse(b"").expect("defaults");
        let (mut ids, mut memo) = (IdGenerator::new(1), TailMemo::default());
        let first = render(&mut common(&mut ids, "s1"), &config, &mut memo);
        let again = render(&mut common(&mut ids, "s1"), &config, &mut memo);
        assert_eq!(memo.misses, 1, "served from the memo");
        assert_ne!(
            again["span_id"], first["span_id"],
            "trace ids are always fresh"
        );
        assert_eq!(again["mcp.session.id"], "s1");
        // Same lengths, other bytes: rendered again.
        let other = render(&mut common(&mut ids, "s2"), &config, &mut memo);
        assert_eq!(other["mcp.session.id"], "s2");
        assert_eq!(memo.misses, 2);
        // Same bytes, other layout ("POST" + "/x" vs "POS" + "T/x"): rendered again.
        let trace = TraceContext::continue_or_start(None, TraceOrigin::Header, &mut ids);
        let mut a = Common::new(trace.clone(), "POST", "/x", Transport::StreamableHttp);
        let mut b = Common::new(trace, "POS", "T/x", Transport::StreamableHttp);
        assert_eq!(render(&mut a, &config, &mut memo)["url.path"], "/x");
        assert_eq!(render(&mut b, &config, &mut memo)["url.path"], "T/x");
    }
}
