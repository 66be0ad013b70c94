//! The fields every event of one exchange shares (trace, instance, HTTP request, transport,
//! session, protocol version, credential fingerprint), and their rendering: written once as a
//! fragment of JSON and copied into each event, rendered again only when one of them changes
//! (the server assigns a session, the body names the protocol version, `_meta` carries the
//! trace).

use crate::config::Config;
use crate::events::keys;
use crate::json::{push_escaped, push_label, push_string, push_trusted};
use crate::redact::Fingerprint;
use crate::trace::{push_hex, TraceContext, TraceOrigin, TraceParent};
use std::ops::Range;

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

#[derive(Debug)]
pub struct Common {
    trace: TraceParent,
    parent_span_id: Option<[u8; 8]>,
    origin: TraceOrigin,
    /// The exchange's strings, one allocation: the fields below are ranges into it.
    text: String,
    instance: Option<Range<usize>>,
    http_method: Range<usize>,
    /// Without the query.
    path: Range<usize>,
    transport: Transport,
    session_id: Option<Range<usize>>,
    protocol_version: Option<Range<usize>>,
    /// Index of the credential header in `Config::credential_headers`, and the fingerprint.
    token: Option<(usize, Fingerprint)>,
    fragment: Vec<u8>,
    stale: bool,
}

impl Common {
    pub fn new(trace: TraceContext, http_method: &str, path: &str, transport: Transport) -> Self {
        let mut text = String::with_capacity(TEXT_CAPACITY);
        let http_method = keep(&mut text, http_method);
        let path = keep(&mut text, super::path_only(path));
        Common {
            trace: trace.current,
            parent_span_id: trace.parent_span_id,
            origin: trace.origin,
            text,
            instance: None,
            http_method,
            path,
            transport,
            session_id: None,
            protocol_version: None,
            token: None,
            fragment: Vec::new(),
            stale: true,
        }
    }

    fn get(&self, range: &Option<Range<usize>>) -> Option<&str> {
        range.as_ref().and_then(|r| self.text.get(r.clone()))
    }

    pub fn trace(&self) -> &TraceParent {
        &self.trace
    }

    pub fn origin(&self) -> TraceOrigin {
        self.origin
    }

    pub fn set_trace(&mut self, trace: TraceContext) {
        self.trace = trace.current;
        self.parent_span_id = trace.parent_span_id;
        self.origin = trace.origin;
        self.stale = true;
    }

    pub fn instance(&self) -> Option<&str> {
        self.get(&self.instance)
    }

    pub fn set_instance(&mut self, instance: &str) {
        self.instance = Some(keep(&mut self.text, instance));
        self.stale = true;
    }

    pub fn http_method(&self) -> &str {
        self.text.get(self.http_method.clone()).unwrap_or_default()
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn session_id(&self) -> Option<&str> {
        self.get(&self.session_id)
    }

    pub fn set_session_id(&mut self, session: &str) {
        self.session_id = Some(keep(&mut self.text, session));
        self.stale = true;
    }

    pub fn protocol_version(&self) -> Option<&str> {
        self.get(&self.protocol_version)
    }

    pub fn set_protocol_version(&mut self, version: &str) {
        self.protocol_version = Some(keep(&mut self.text, version));
        self.stale = true;
    }

    pub fn set_token(&mut self, header_index: usize, print: Fingerprint) {
        self.token = Some((header_index, print));
        self.stale = true;
    }

    /// The rendered fields (each `,"key":value`), rendered again if something changed.
    pub fn fragment(&mut self, config: &Config) -> &[u8] {
        if self.stale {
            self.render(config);
            self.stale = false;
        }
        &self.fragment
    }

    fn render(&mut self, config: &Config) {
        let mut buf = std::mem::take(&mut self.fragment);
        buf.clear();
        buf.reserve(FRAGMENT_CAPACITY);
        self.render_into(&mut buf, config);
        self.fragment = buf;
    }

    fn render_into(&self, buf: &mut Vec<u8>, config: &Config) {
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
        label(buf, keys::TRACE_ORIGIN, self.origin.as_str());
        field(buf, keys::INSTANCE_ID, self.instance());
        field(buf, keys::HTTP_METHOD, Some(self.http_method()));
        field(buf, keys::URL_PATH, self.text.get(self.path.clone()));
        label(buf, keys::TRANSPORT, self.transport.as_str());
        field(buf, keys::SESSION_ID, self.session_id());
        field(buf, keys::PROTOCOL_VERSION, self.protocol_version());
        if let Some((index, print)) = &self.token {
            // A configured (validated) header name and hex digits: nothing to escape.
            if let Some(header) = config.credential_headers.get(*index) {
                buf.extend_from_slice(keys::TOKEN_HEADER.as_bytes());
                push_trusted(buf, header);
            }
            buf.extend_from_slice(keys::TOKEN.as_bytes());
            push_trusted(buf, print.as_str());
        }
    }
}

/// Appends `value` to the exchange's strings; its range there.
fn keep(text: &mut String, value: &str) -> Range<usize> {
    let start = text.len();
    text.push_str(value);
    start..text.len()
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

    fn render(common: &mut Common, config: &Config) -> Value {
        let json = format!(
            "{{\"x\":0{}}}",
            String::from_utf8_lossy(common.fragment(config))
        );
        serde_json::from_str(&json).expect("the fragment is JSON members")
    }

    #[test]
    fn renders_once_and_again_only_after_a_change() {
        let config = Config::parse(b"").expect("defaults");
        let mut ids = IdGenerator::new(1);
        let parent = TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let trace = TraceContext::continue_or_start(parent, TraceOrigin::Header, &mut ids);
        let mut common = Common::new(
            trace,
            "POST",
            "/mcp/demo/mcp?x=\"1\"",
            Transport::StreamableHttp,
        );
        common.set_instance("demo");
        common.set_token(0, crate::redact::fingerprint(b"Bearer t", ""));
        let first = render(&mut common, &config);
        assert_eq!(first["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(first["parent_span_id"], "b7ad6b7169203331");
        assert_eq!(first["trace.origin"], "header");
        assert_eq!(first["url.path"], "/mcp/demo/mcp");
        assert_eq!(first["token_header"], "authorization");
        assert!(first.get("mcp.session.id").is_none());
        assert!(!common.stale, "rendered, and kept until something changes");
        common.set_session_id("s\"1");
        assert_eq!(render(&mut common, &config)["mcp.session.id"], "s\"1");
    }
}
