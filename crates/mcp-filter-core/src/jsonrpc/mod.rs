//! JSON-RPC 2.0 message classification for MCP: turns a request body, a JSON response body or
//! one SSE `data` payload into classified messages, in one pass that borrows from the input.
//!
//! Strings the events need (method, id, tool/prompt name, resource URI, `_meta` values) stay
//! JSON string literals borrowed from the body ([`JsonStr`]): they are already valid JSON, so an
//! event copies them verbatim, and only a literal with escapes is ever decoded. Everything MCP
//! does not need (`arguments`, `result.content`, ...) is skipped by the parser without a copy.
//! A batch is parsed as one array and itemised element by element: a malformed element is
//! reported on its own (`Err(Invalid)` in its slot) and does not hide the others.

#[cfg(any(test, fuzzing))]
pub mod reference;
mod scan;

use crate::bytes::{bytes_eq, Packed};
use crate::methods::{self, MethodInfo, Target};
use scan::Scanner;
use std::borrow::Cow;

/// Why a body (or one batch element) is not valid MCP over JSON-RPC 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not JSON at all (or not UTF-8).
    InvalidJson,
    /// JSON, but not a JSON-RPC 2.0 object (`jsonrpc` is not "2.0", not an object, `method`
    /// not a string).
    NotJsonRpc,
    /// Neither a request/notification (`method`) nor a response (`result`/`error`).
    MissingMethod,
    /// `[]`.
    EmptyBatch,
    /// Body sent with a content type other than `application/json`.
    WrongContentType,
    /// A 2026-07-28 POST without the `Mcp-Method` header, or without `Mcp-Name` for a method
    /// that names a tool, prompt or resource (both required by that revision's transport).
    MissingMcpHeaders,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::InvalidJson => "invalid_json",
            Invalid::NotJsonRpc => "not_jsonrpc_2_0",
            Invalid::MissingMethod => "missing_method",
            Invalid::EmptyBatch => "empty_batch",
            Invalid::WrongContentType => "wrong_content_type",
            Invalid::MissingMcpHeaders => "missing_mcp_headers",
        }
    }

    /// The JSON-RPC error code a rejecting gateway answers with.
    pub fn jsonrpc_code(self) -> i64 {
        match self {
            Invalid::InvalidJson => -32700,
            // 2026-07-28's HeaderMismatch: request headers that do not mirror the body.
            Invalid::MissingMcpHeaders => -32020,
            _ => -32600,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
    Error,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Notification => "notification",
            Kind::Response => "response",
            Kind::Error => "error",
        }
    }
}

/// A JSON string literal borrowed from the input, quotes included. The scanner validated
/// it, so without escapes it can be written into JSON output as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a> {
    literal: &'a str,
    escapes: bool,
}

impl<'a> JsonStr<'a> {
    fn scanned((literal, escapes): (&'a str, bool)) -> Self {
        JsonStr { literal, escapes }
    }

    /// A literal from elsewhere (checked for escapes here).
    fn from_literal(literal: &'a str) -> Self {
        JsonStr {
            literal,
            escapes: memchr::memchr(b'\\', literal.as_bytes()).is_some(),
        }
    }

    /// The literal with its quotes, as it appeared in the input.
    pub fn literal(self) -> &'a str {
        self.literal
    }

    /// Between the quotes, still escaped.
    pub fn escaped(self) -> &'a str {
        let end = self.literal.len().saturating_sub(1);
        self.literal.get(1..end).unwrap_or("")
    }

    fn has_escapes(self) -> bool {
        self.escapes
    }

    /// The decoded string (borrowed unless it has escapes).
    pub fn value(self) -> Cow<'a, str> {
        if !self.has_escapes() {
            return Cow::Borrowed(self.escaped());
        }
        Cow::Owned(unescape(self.escaped()))
    }

    /// Appends the string's content as JSON (no quotes): as it came when it has no escapes,
    /// re-escaped otherwise, so what the filter writes is always valid UTF-8 JSON (a lone
    /// surrogate a client escaped becomes U+FFFD).
    pub fn push_content(self, buf: &mut Vec<u8>) {
        if self.has_escapes() {
            crate::json::push_escaped(buf, &self.value());
        } else {
            buf.extend_from_slice(self.escaped().as_bytes());
        }
    }

    /// Appends the string as JSON, quotes included.
    pub fn push_json(self, buf: &mut Vec<u8>) {
        buf.push(b'"');
        self.push_content(buf);
        buf.push(b'"');
    }
}

/// Decodes the escapes of a scanned string literal's content.
fn unescape(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    let mut pending_high: Option<u16> = None;
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush_surrogate(&mut out, &mut pending_high);
            out.push(c);
            continue;
        }
        let unit = match chars.next() {
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                u16::from_str_radix(&hex, 16).unwrap_or(0xfffd)
            }
            other => {
                flush_surrogate(&mut out, &mut pending_high);
                out.push(match other {
                    Some('b') => '\u{8}',
                    Some('f') => '\u{c}',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some(c) => c,
                    None => '\u{fffd}',
                });
                continue;
            }
        };
        match (pending_high.take(), unit) {
            (Some(high), 0xdc00..=0xdfff) => {
                let code =
                    0x10000 + ((u32::from(high) - 0xd800) << 10) + (u32::from(unit) - 0xdc00);
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            (high, 0xd800..=0xdbff) => {
                if high.is_some() {
                    out.push('\u{fffd}');
                }
                pending_high = Some(unit);
            }
            (high, unit) => {
                if high.is_some() {
                    out.push('\u{fffd}');
                }
                out.push(char::from_u32(u32::from(unit)).unwrap_or('\u{fffd}'));
            }
        }
    }
    flush_surrogate(&mut out, &mut pending_high);
    out
}

fn flush_surrogate(out: &mut String, pending_high: &mut Option<u16>) {
    if pending_high.take().is_some() {
        out.push('\u{fffd}');
    }
}

/// A JSON-RPC id as it appeared: a string literal, or other JSON text (a number; anything else
/// a non-conforming peer sends is kept as its text). `null` is no id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id<'a> {
    Str(JsonStr<'a>),
    Raw(&'a str),
}

impl<'a> Id<'a> {
    /// The id whose JSON text is `text` (as `json` gave it); `None` for `null`.
    pub fn from_text(text: &'a str) -> Option<Self> {
        match text {
            "null" => None,
            _ if text.starts_with('"') => Some(Id::Str(JsonStr::from_literal(text))),
            _ => Some(Id::Raw(text)),
        }
    }

    /// The id's JSON text (a string keeps its quotes, so `"7"` and `7` differ).
    pub fn json(self) -> &'a str {
        match self {
            Id::Str(s) => s.literal(),
            Id::Raw(text) => text,
        }
    }

    /// The id as JSON to write out: a string id sanitised like any copied string.
    pub fn to_json(self) -> Cow<'a, str> {
        match self {
            Id::Str(s) if s.has_escapes() => {
                let mut out = Vec::with_capacity(s.literal.len());
                s.push_json(&mut out);
                Cow::Owned(String::from_utf8_lossy(&out).into_owned())
            }
            other => Cow::Borrowed(other.json()),
        }
    }

    /// The id as event text: numbers as digits, strings decoded.
    pub fn text(self) -> Cow<'a, str> {
        match self {
            Id::Str(s) => s.value(),
            Id::Raw(text) => Cow::Borrowed(text),
        }
    }
}

/// Whether two ids as JSON text are the same id (string escapes compared decoded).
pub fn same_id(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let both_strings = a.starts_with('"') && b.starts_with('"');
    if !both_strings || !(a.contains('\\') || b.contains('\\')) {
        return false;
    }
    let decode = |t: &str| JsonStr::from_literal(t).value().into_owned();
    decode(a) == decode(b)
}

/// One classified JSON-RPC message, borrowing from the body.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Message<'a> {
    pub kind: Kind,
    pub method: Option<JsonStr<'a>>,
    /// The catalogue entry of `method`, when it is a known MCP method.
    pub info: Option<&'static MethodInfo>,
    pub id: Option<Id<'a>>,
    /// Tool or prompt name (also a completion's prompt reference).
    pub name: Option<JsonStr<'a>>,
    pub resource_uri: Option<JsonStr<'a>>,
    /// Raw JSON of `params.arguments` of tools/call and prompts/get, for opt-in capture.
    pub arguments: Option<&'a str>,
    /// `params._meta.traceparent` / `tracestate` (SEP-414).
    pub meta_traceparent: Option<JsonStr<'a>>,
    pub meta_tracestate: Option<JsonStr<'a>>,
    /// Protocol version carried in the message: `initialize`'s `protocolVersion` (request or
    /// result), or the per-request `_meta` of the stateless revision.
    pub protocol_version: Option<JsonStr<'a>>,
    /// The `params` object as JSON text, kept only when the client describes itself in it
    /// (see [`Message::client`]): most messages do not, and those that do are read again
    /// once, when their fields are written.
    pub client_params: Option<&'a str>,
    pub error_code: Option<i64>,
    /// `result.isError` of a tool result.
    pub is_error: bool,
}

/// A client's self-description (`Implementation`: only what an audit line needs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientInfo<'a> {
    pub name: Option<JsonStr<'a>>,
    pub version: Option<JsonStr<'a>>,
}

impl<'a> ClientInfo<'a> {
    /// Reads an `Implementation` object's `name` and `version` (the last occurrence of a
    /// member wins, as for every member); nothing from anything else.
    pub fn read(raw: &'a str) -> Self {
        let mut info = ClientInfo::default();
        let mut s = Scanner::new(raw.as_bytes());
        if s.peek() != Some(b'{') {
            return info;
        }
        let read = s.object(|s, key| {
            match JsonStr::scanned(key).value().as_ref() {
                "name" => info.name = string(s)?,
                "version" => info.version = string(s)?,
                _ => s.skip()?,
            }
            Ok(())
        });
        if read.is_err() {
            return ClientInfo::default();
        }
        info
    }
}

/// Calls `each` with the member names of the JSON object `raw` (a capabilities object), in
/// order; false when `raw` is not an object.
pub fn object_keys<'a>(raw: &'a str, mut each: impl FnMut(JsonStr<'a>)) -> bool {
    let mut s = Scanner::new(raw.as_bytes());
    if s.peek() != Some(b'{') {
        return false;
    }
    s.object(|s, key| {
        each(JsonStr::scanned(key));
        s.skip()
    })
    .is_ok()
}

/// How a client describes itself in a message, as JSON object text: its `Implementation`
/// (read with [`ClientInfo::read`]) and its capabilities. `_meta`'s
/// `io.modelcontextprotocol/clientInfo` / `clientCapabilities` (2026-07-28, every request)
/// win over `initialize`'s `clientInfo` / `capabilities`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientDescription<'a> {
    pub info: Option<&'a str>,
    pub capabilities: Option<&'a str>,
}

impl<'a> ClientDescription<'a> {
    /// Reads a `params` object (the last occurrence of a member wins).
    fn read(params: &'a str) -> Self {
        let mut found = [None; 4];
        let mut s = Scanner::new(params.as_bytes());
        let read = s.object(|s, key| {
            match (key_of(key), client_key(key)) {
                (Key::Meta, _) if s.peek() == Some(b'{') => {
                    found[2] = None;
                    found[3] = None;
                    s.object(|s, key| {
                        match client_key(key) {
                            Some(ClientKey::MetaInfo) => found[2] = Some(s.raw()?),
                            Some(ClientKey::MetaCapabilities) => found[3] = Some(s.raw()?),
                            _ => s.skip()?,
                        }
                        Ok(())
                    })?
                }
                (_, Some(ClientKey::Info)) => found[0] = Some(s.raw()?),
                (_, Some(ClientKey::Capabilities)) => found[1] = Some(s.raw()?),
                _ => s.skip()?,
            }
            Ok(())
        });
        if read.is_err() {
            return ClientDescription::default();
        }
        let [info, capabilities, meta_info, meta_capabilities] = found.map(object);
        ClientDescription {
            info: meta_info.or(info),
            capabilities: meta_capabilities.or(capabilities),
        }
    }
}

impl<'a> Message<'a> {
    /// How the client describes itself in this message, if it does.
    pub fn client(&self) -> ClientDescription<'a> {
        self.client_params
            .map(ClientDescription::read)
            .unwrap_or_default()
    }

    /// Whether the message expects a response (a request with an id).
    pub fn expects_response(&self) -> bool {
        self.kind == Kind::Request
    }

    /// The target named by a method's parameters, for event fields.
    pub fn target(&self) -> Option<JsonStr<'a>> {
        self.name.or(self.resource_uri)
    }

    /// What the method's target parameter names.
    pub fn target_kind(&self) -> Target {
        self.info.map_or(Target::None, |info| info.target)
    }
}

/// A parsed body.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed<'a> {
    Single(Message<'a>),
    Batch {
        /// The first `max_batch_elements` elements, each classified on its own.
        items: Vec<Result<Message<'a>, Invalid>>,
        /// Elements beyond the itemisation cap (counted, not classified).
        not_itemised: usize,
    },
}

impl<'a> Parsed<'a> {
    /// Number of elements in the body (itemised or not); `None` for a single message.
    pub fn batch_size(&self) -> Option<usize> {
        match self {
            Parsed::Single(_) => None,
            Parsed::Batch {
                items,
                not_itemised,
            } => Some(items.len() + not_itemised),
        }
    }

    /// The valid messages, in order.
    pub fn messages(&self) -> impl Iterator<Item = &Message<'a>> {
        let (single, items) = match self {
            Parsed::Single(m) => (Some(m), &[][..]),
            Parsed::Batch { items, .. } => (None, items.as_slice()),
        };
        single
            .into_iter()
            .chain(items.iter().filter_map(|r| r.as_ref().ok()))
    }
}

/// Parses a request or response body (a message or a batch). A single message that is not
/// valid JSON-RPC is an error; in a batch, each element carries its own result.
pub fn parse_body(body: &[u8], max_batch_elements: usize) -> Result<Parsed<'_>, Invalid> {
    let mut scanner = Scanner::new(body);
    let parsed = if scanner.peek() == Some(b'[') {
        let mut items = Vec::new();
        let mut not_itemised = 0;
        scanner
            .array(|s| {
                if items.len() < max_batch_elements {
                    items.push(element(s)?);
                } else {
                    s.skip()?;
                    not_itemised += 1;
                }
                Ok(())
            })
            .map_err(|_| Invalid::InvalidJson)?;
        // Trailing bytes make the body invalid JSON before it is an empty batch.
        if items.is_empty() && not_itemised == 0 && scanner.at_end() {
            return Err(Invalid::EmptyBatch);
        }
        Parsed::Batch {
            items,
            not_itemised,
        }
    } else {
        let message = element(&mut scanner).map_err(|_| Invalid::InvalidJson)?;
        if !scanner.at_end() {
            return Err(Invalid::InvalidJson);
        }
        Parsed::Single(message?)
    };
    if !scanner.at_end() {
        return Err(Invalid::InvalidJson);
    }
    Ok(parsed)
}

/// Classifies one JSON-RPC message.
pub fn parse_message(bytes: &[u8]) -> Result<Message<'_>, Invalid> {
    match parse_body(bytes, 0)? {
        Parsed::Single(message) => Ok(message),
        // A batch where one message was expected is no message.
        Parsed::Batch { .. } => Err(Invalid::NotJsonRpc),
    }
}

// ---- reading a message object: one pass, nothing owned ----

/// The next value as a message: a syntax error fails the whole body, anything else that
/// is not a JSON-RPC message is this element's own error.
fn element<'a>(s: &mut Scanner<'a>) -> scan::Result<Result<Message<'a>, Invalid>> {
    if s.peek() != Some(b'{') {
        s.skip()?;
        return Ok(Err(Invalid::NotJsonRpc));
    }
    let mut fields = Fields::default();
    s.object(|s, key| fields.member(s, key))?;
    Ok(classify(fields))
}

/// The members the classifier reads, at any level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Jsonrpc,
    Method,
    Id,
    Params,
    Result,
    Error,
    Code,
    Name,
    Uri,
    Arguments,
    ProtocolVersion,
    Meta,
    Ref,
    Traceparent,
    Tracestate,
    MetaProtocolVersion,
    IsError,
    Other,
}

/// Keys as they appear in a body (quotes included).
const KEYS: &[(&[u8], Key)] = &[
    (b"\"jsonrpc\"", Key::Jsonrpc),
    (b"\"id\"", Key::Id),
    (b"\"method\"", Key::Method),
    (b"\"params\"", Key::Params),
    (b"\"result\"", Key::Result),
    (b"\"name\"", Key::Name),
    (b"\"arguments\"", Key::Arguments),
    (b"\"isError\"", Key::IsError),
    (b"\"error\"", Key::Error),
    (b"\"code\"", Key::Code),
    (b"\"uri\"", Key::Uri),
    (b"\"_meta\"", Key::Meta),
    (b"\"protocolVersion\"", Key::ProtocolVersion),
    (b"\"ref\"", Key::Ref),
    (b"\"traceparent\"", Key::Traceparent),
    (b"\"tracestate\"", Key::Tracestate),
    (
        b"\"io.modelcontextprotocol/protocolVersion\"",
        Key::MetaProtocolVersion,
    ),
];

/// The table's keys of up to [`Packed::MAX`] bytes, packed (`None` for the longer ones).
const PACKED_KEYS: [(Option<Packed>, Key); KEYS.len()] = {
    let mut out = [(None, Key::Other); KEYS.len()];
    let mut i = 0;
    while i < KEYS.len() {
        out[i] = (Packed::of_const(KEYS[i].0), KEYS[i].1);
        i += 1;
    }
    out
};

/// Members read only where a client describes itself (`params`, `params._meta`): looked up
/// there, and only for keys the main table does not know, so no other key pays for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientKey {
    Info,
    Capabilities,
    MetaInfo,
    MetaCapabilities,
}

fn client_key((literal, escapes): (&str, bool)) -> Option<ClientKey> {
    let of = |quoted: &[u8]| match quoted {
        br#""clientInfo""# => Some(ClientKey::Info),
        br#""capabilities""# => Some(ClientKey::Capabilities),
        br#""io.modelcontextprotocol/clientInfo""# => Some(ClientKey::MetaInfo),
        br#""io.modelcontextprotocol/clientCapabilities""# => Some(ClientKey::MetaCapabilities),
        _ => None,
    };
    if !escapes {
        return of(literal.as_bytes());
    }
    let mut quoted = Vec::with_capacity(literal.len());
    JsonStr::scanned((literal, true)).push_json(&mut quoted);
    of(&quoted)
}

/// Which member a key literal names (decoded first in the odd case it has escapes).
fn key_of((literal, escapes): (&str, bool)) -> Key {
    // Most keys are not ones the classifier reads; their length alone says so.
    const LENGTHS: u64 = {
        let mut mask = 0u64;
        let mut i = 0;
        while i < KEYS.len() {
            let len = KEYS[i].0.len();
            mask |= 1u64 << if len < 63 { len } else { 63 };
            i += 1;
        }
        mask
    };
    let find = |quoted: &[u8]| {
        if LENGTHS & (1u64 << quoted.len().min(63)) == 0 {
            return Key::Other;
        }
        let Some(packed) = Packed::of(quoted) else {
            return KEYS
                .iter()
                .find(|(k, _)| k.len() > Packed::MAX && bytes_eq(k, quoted))
                .map_or(Key::Other, |(_, key)| *key);
        };
        PACKED_KEYS
            .iter()
            .find(|(k, _)| *k == Some(packed))
            .map_or(Key::Other, |(_, key)| *key)
    };
    if !escapes {
        return find(literal.as_bytes());
    }
    let mut quoted = Vec::with_capacity(literal.len());
    JsonStr::scanned((literal, true)).push_json(&mut quoted);
    find(&quoted)
}

/// The next value when it is a string; anything else is skipped.
fn string<'a>(s: &mut Scanner<'a>) -> scan::Result<Option<JsonStr<'a>>> {
    if s.peek() == Some(b'"') {
        return s.string().map(|lit| Some(JsonStr::scanned(lit)));
    }
    s.skip().map(|()| None)
}

/// The fields of a message object, before classification.
#[derive(Default)]
struct Fields<'a> {
    /// `Some(None)` when present but not a string.
    jsonrpc: Option<Option<JsonStr<'a>>>,
    /// `Err` when `method` is present but not a string.
    method: Option<Result<JsonStr<'a>, ()>>,
    id: Option<&'a str>,
    params: Params<'a>,
    /// The raw `params` object when it describes the client.
    client_params: Option<&'a str>,
    result: Option<ResultPeek<'a>>,
    error: Option<Option<i64>>,
}

impl<'a> Fields<'a> {
    fn member(&mut self, s: &mut Scanner<'a>, key: (&'a str, bool)) -> scan::Result<()> {
        match key_of(key) {
            Key::Jsonrpc => self.jsonrpc = Some(string(s)?),
            Key::Method => {
                self.method = Some(string(s)?.ok_or(()));
            }
            Key::Id => self.id = Some(s.raw()?),
            Key::Params => {
                // The last `params` wins, whatever its shape.
                let mut params = Params::default();
                self.client_params = None;
                if s.peek() == Some(b'{') {
                    let start = s.mark();
                    s.object(|s, key| params.member(s, key))?;
                    if params.describes_client {
                        self.client_params = Some(s.since(start)?);
                    }
                } else {
                    s.skip()?;
                }
                self.params = params;
            }
            // `null` reads as absent, as for any optional member.
            Key::Result if s.peek() == Some(b'n') => {
                s.skip()?;
                self.result = None;
            }
            Key::Result => {
                let mut result = ResultPeek::default();
                if s.peek() == Some(b'{') {
                    s.object(|s, key| result.member(s, key))?;
                } else {
                    s.skip()?;
                }
                self.result = Some(result);
            }
            Key::Error if s.peek() == Some(b'n') => {
                s.skip()?;
                self.error = None;
            }
            Key::Error => {
                let mut code = None;
                if s.peek() == Some(b'{') {
                    s.object(|s, key| {
                        if key_of(key) == Key::Code && s.peek() != Some(b'"') {
                            code = s.raw()?.parse().ok();
                            Ok(())
                        } else {
                            s.skip()
                        }
                    })?;
                } else {
                    s.skip()?;
                }
                self.error = Some(code);
            }
            _ => s.skip()?,
        }
        Ok(())
    }
}

#[derive(Default, Clone, Copy)]
struct Params<'a> {
    name: Option<JsonStr<'a>>,
    uri: Option<JsonStr<'a>>,
    arguments: Option<&'a str>,
    traceparent: Option<JsonStr<'a>>,
    tracestate: Option<JsonStr<'a>>,
    meta_protocol_version: Option<JsonStr<'a>>,
    ref_name: Option<JsonStr<'a>>,
    ref_uri: Option<JsonStr<'a>>,
    protocol_version: Option<JsonStr<'a>>,
    /// A member names the client's info or capabilities (read again from the raw object).
    describes_client: bool,
}

impl<'a> Params<'a> {
    fn member(&mut self, s: &mut Scanner<'a>, key: (&'a str, bool)) -> scan::Result<()> {
        match key_of(key) {
            Key::Name => self.name = string(s)?,
            Key::Uri => self.uri = string(s)?,
            Key::Arguments => self.arguments = Some(s.raw()?).filter(|raw| *raw != "null"),
            Key::ProtocolVersion => self.protocol_version = string(s)?,
            Key::Meta => {
                self.traceparent = None;
                self.tracestate = None;
                self.meta_protocol_version = None;
                if s.peek() != Some(b'{') {
                    return s.skip();
                }
                s.object(|s, key| {
                    match key_of(key) {
                        Key::Traceparent => self.traceparent = string(s)?,
                        Key::Tracestate => self.tracestate = string(s)?,
                        Key::MetaProtocolVersion => self.meta_protocol_version = string(s)?,
                        Key::Other => {
                            self.describes_client |= client_key(key).is_some();
                            s.skip()?
                        }
                        _ => s.skip()?,
                    }
                    Ok(())
                })?
            }
            Key::Ref => {
                self.ref_name = None;
                self.ref_uri = None;
                if s.peek() != Some(b'{') {
                    return s.skip();
                }
                s.object(|s, key| {
                    match key_of(key) {
                        Key::Name => self.ref_name = string(s)?,
                        Key::Uri => self.ref_uri = string(s)?,
                        _ => s.skip()?,
                    }
                    Ok(())
                })?
            }
            Key::Other => {
                self.describes_client |= client_key(key).is_some();
                s.skip()?
            }
            _ => s.skip()?,
        }
        Ok(())
    }
}

#[derive(Default, Clone, Copy)]
struct ResultPeek<'a> {
    is_error: bool,
    protocol_version: Option<JsonStr<'a>>,
}

impl<'a> ResultPeek<'a> {
    fn member(&mut self, s: &mut Scanner<'a>, key: (&'a str, bool)) -> scan::Result<()> {
        match key_of(key) {
            Key::IsError => self.is_error = s.raw()? == "true",
            Key::ProtocolVersion => self.protocol_version = string(s)?,
            _ => s.skip()?,
        }
        Ok(())
    }
}

/// Raw JSON text when it is an object.
fn object(raw: Option<&str>) -> Option<&str> {
    raw.filter(|raw| raw.starts_with('{'))
}

fn classify(fields: Fields) -> Result<Message, Invalid> {
    if fields.jsonrpc.flatten().map(JsonStr::value).as_deref() != Some("2.0") {
        return Err(Invalid::NotJsonRpc);
    }
    let method = match fields.method {
        Some(Ok(method)) => Some(method),
        Some(Err(())) => return Err(Invalid::NotJsonRpc),
        None => None,
    };
    let id = fields.id.and_then(Id::from_text);
    let kind = match (method, fields.error, fields.result) {
        (Some(_), _, _) if id.is_some() => Kind::Request,
        (Some(_), _, _) => Kind::Notification,
        (None, Some(_), _) => Kind::Error,
        (None, None, Some(_)) => Kind::Response,
        (None, None, None) => return Err(Invalid::MissingMethod),
    };
    let info = method.and_then(|m| methods::lookup(&m.value()));
    let params = fields.params;
    let mut message = Message {
        kind,
        method,
        info,
        id,
        name: None,
        resource_uri: None,
        arguments: None,
        meta_traceparent: params.traceparent,
        meta_tracestate: params.tracestate,
        protocol_version: params.meta_protocol_version.or(params.protocol_version),
        client_params: fields.client_params,
        error_code: fields.error.flatten(),
        is_error: false,
    };
    match message.target_kind() {
        Target::Tool | Target::Prompt => message.name = params.name,
        Target::Resource => message.resource_uri = params.uri,
        Target::Reference => {
            message.name = params.ref_name;
            message.resource_uri = params.ref_uri;
        }
        Target::None => {}
    }
    if info.is_some_and(|i| i.has_arguments) {
        message.arguments = params.arguments;
    }
    if let Some(result) = fields.result {
        message.is_error = result.is_error;
        message.protocol_version = message.protocol_version.or(result.protocol_version);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Message<'_> {
        parse_message(json.as_bytes()).expect("valid message")
    }

    fn text(s: Option<JsonStr>) -> Option<String> {
        s.map(|s| s.value().into_owned())
    }

    #[test]
    fn every_key_is_found_and_no_near_miss_is() {
        for (quoted, key) in KEYS {
            let literal = std::str::from_utf8(quoted).expect("ASCII");
            assert_eq!(key_of((literal, false)), *key, "{literal}");
            // Any other byte inside the quotes is another key.
            for at in 1..quoted.len() - 1 {
                let mut near = quoted.to_vec();
                near[at] ^= 0x01;
                let near = String::from_utf8(near).expect("ASCII");
                assert_eq!(key_of((&near, false)), Key::Other, "{near}");
            }
            // One byte longer, same ends.
            let longer = format!("{}x\"", &literal[..literal.len() - 1]);
            assert_eq!(key_of((&longer, false)), Key::Other, "{longer}");
        }
        // Escaped, it is still the key.
        assert_eq!(key_of((r#""\u006aSONRPC""#, true)), Key::Other);
        assert_eq!(key_of((r#""\u006asonrpc""#, true)), Key::Jsonrpc);
    }

    #[test]
    fn tools_call_request() {
        let m = one(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"k=v"}}}"#,
        );
        assert_eq!(m.kind, Kind::Request);
        assert_eq!(text(m.method).as_deref(), Some("tools/call"));
        assert_eq!(m.id, Some(Id::Raw("7")));
        assert_eq!(m.id.map(|i| i.text().into_owned()).as_deref(), Some("7"));
        assert_eq!(m.name.map(JsonStr::literal), Some("\"echo\""));
        assert_eq!(m.arguments, Some(r#"{"text":"hi"}"#));
        assert_eq!(m.info.map(|i| i.name), Some("tools/call"));
        assert_eq!(
            text(m.meta_traceparent).as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(text(m.meta_tracestate).as_deref(), Some("k=v"));
    }

    #[test]
    fn every_catalogued_method_classifies() {
        for info in methods::METHODS {
            let params = match info.target {
                Target::Tool | Target::Prompt => r#"{"name":"n"}"#,
                Target::Resource => r#"{"uri":"file:///x"}"#,
                Target::Reference => r#"{"ref":{"type":"ref/prompt","name":"n"}}"#,
                Target::None => "{}",
            };
            let json = format!(
                r#"{{"jsonrpc":"2.0","id":"a-1","method":"{}","params":{params}}}"#,
                info.name
            );
            let m = one(&json);
            assert_eq!(text(m.method).as_deref(), Some(info.name));
            assert!(m.info.is_some(), "{}", info.name);
            assert_eq!(m.id.map(Id::json), Some("\"a-1\""));
            match info.target {
                Target::Tool | Target::Prompt | Target::Reference => {
                    assert_eq!(text(m.name).as_deref(), Some("n"), "{}", info.name)
                }
                Target::Resource => {
                    assert_eq!(text(m.resource_uri).as_deref(), Some("file:///x"))
                }
                Target::None => assert_eq!(m.target(), None),
            }
        }
    }

    #[test]
    fn escaped_strings_are_decoded_only_when_asked() {
        let m = one(
            r#"{"jsonrpc":"2.0","id":"a\"b","method":"tools\/call","params":{"name":"\u00e9cho\n"}}"#,
        );
        assert_eq!(m.info.map(|i| i.name), Some("tools/call"));
        assert_eq!(m.name.map(JsonStr::literal), Some(r#""\u00e9cho\n""#));
        assert_eq!(text(m.name).as_deref(), Some("écho\n"));
        assert_eq!(m.id.map(|i| i.text().into_owned()).as_deref(), Some("a\"b"));
    }

    #[test]
    fn notifications_responses_errors() {
        let n = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(n.kind, Kind::Notification);
        assert!(!n.expects_response());
        let r = one(r#"{"jsonrpc":"2.0","id":"x","result":{"content":[],"isError":true}}"#);
        assert_eq!(r.kind, Kind::Response);
        assert!(r.is_error);
        let e = one(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"bad"}}"#);
        assert_eq!(e.kind, Kind::Error);
        assert_eq!(e.error_code, Some(-32602));
        let null_id = one(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#);
        assert_eq!(null_id.id, None);
        let init = one(r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#);
        assert_eq!(text(init.protocol_version).as_deref(), Some("2025-06-18"));
        // Odd shapes a non-conforming server sends still classify as what they are.
        let odd = one(r#"{"jsonrpc":"2.0","id":1,"error":"boom"}"#);
        assert_eq!((odd.kind, odd.error_code), (Kind::Error, None));
        let not_bool = one(r#"{"jsonrpc":"2.0","id":1,"result":{"isError":"yes"}}"#);
        assert!(!not_bool.is_error);
    }

    #[test]
    fn string_and_number_ids_stay_distinct() {
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":"7","result":{}}"#)
                .id
                .map(Id::json),
            Some("\"7\"")
        );
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#)
                .id
                .map(Id::json),
            Some("7")
        );
        assert!(same_id("7", "7"));
        assert!(!same_id("7", "\"7\""));
        assert!(same_id("\"ab\"", "\"a\\u0062\""));
        assert!(!same_id("\"ab\"", "\"a\\u0063\""));
    }

    #[test]
    fn unknown_method_and_positional_params_still_classify() {
        let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"x/y","params":[1,2]}"#);
        assert!(m.info.is_none());
        assert_eq!(text(m.method).as_deref(), Some("x/y"));
        let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#);
        assert_eq!(m.name, None);
        let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#);
        assert_eq!((m.kind, m.name), (Kind::Request, None));
    }

    #[test]
    fn stateless_revision_meta() {
        let m = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"s","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(text(m.protocol_version).as_deref(), Some("2026-07-28"));
        let i = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#,
        );
        assert_eq!(text(i.protocol_version).as_deref(), Some("2025-03-26"));
    }

    #[test]
    fn invalid_bodies() {
        let err = |b: &str| parse_body(b.as_bytes(), 10).expect_err("invalid");
        assert_eq!(err("{"), Invalid::InvalidJson);
        assert_eq!(err(""), Invalid::InvalidJson);
        assert_eq!(err("{} x"), Invalid::InvalidJson);
        assert_eq!(
            err(r#"{"jsonrpc":"1.0","method":"ping","id":1}"#),
            Invalid::NotJsonRpc
        );
        assert_eq!(err(r#"{"method":"ping","id":1}"#), Invalid::NotJsonRpc);
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","method":5,"id":1}"#),
            Invalid::NotJsonRpc
        );
        assert_eq!(err("42"), Invalid::NotJsonRpc);
        assert_eq!(err(r#"{"jsonrpc":"2.0","id":1}"#), Invalid::MissingMethod);
        assert_eq!(err("[]"), Invalid::EmptyBatch);
        assert_eq!(err("[] \r\n"), Invalid::EmptyBatch);
        // Found by fuzz-short: an empty batch followed by garbage is invalid JSON.
        assert_eq!(err("\r[]\"].\x06"), Invalid::InvalidJson);
        assert_eq!(err("[1,"), Invalid::InvalidJson);
        // Deep nesting is valid JSON but no message; it must not exhaust the stack.
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let deep = parse_body(deep.as_bytes(), 10).expect("a batch of one odd element");
        assert_eq!(
            deep,
            Parsed::Batch {
                items: vec![Err(Invalid::NotJsonRpc)],
                not_itemised: 0
            }
        );
        let deep_params = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{}1{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        match parse_body(deep_params.as_bytes(), 10) {
            Ok(Parsed::Single(m)) => assert_eq!(text(m.name).as_deref(), Some("t")),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            parse_body(b"\xff\xfe", 10).expect_err("not utf-8"),
            Invalid::InvalidJson
        );
    }

    /// Hand-picked bodies and thousands of mutations of them (bytes changed, removed,
    /// inserted, truncated) agree with the `serde_json::Value` reference.
    #[test]
    fn agrees_with_the_reference_on_a_corpus_and_its_mutations() {
        let corpus: &[&str] = &[
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"a":[1,2,{"b":null}]},"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            r#"[{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///x"}},{"jsonrpc":"2.0","method":"notifications/progress"},{"jsonrpc":"2.0","id":1}]"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"é
"}],"isError":true,"protocolVersion":"2025-06-18"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"bad","data":[1.5e3,true,false]}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p","uri":"u"},"argument":{"name":"a","value":"v"}}}"#,
            r#" { "jsonrpc" : "2.0" , "method" : "initialize" , "id" : 0 , "params" : { "protocolVersion" : "2025-03-26" } } "#,
            r#"{"method":"ping","jsonrpc":"2.0","id":-1.25E+2,"params":null,"params":{"name":5}}"#,
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{"listChanged":true},"sampling":{},"roots":1},"clientInfo":{"name":"py","version":"1.2","name":"py2"}}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"e","capabilities":{"x":1},"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"c\u00e9","version":"2"},"io.modelcontextprotocol/clientCapabilities":{"elicitation":{},"a\"b":[]}}}}"#,
            // fuzz-short found the empty batch with trailing garbage.
            "[]",
            "\r[]\"].\x06",
        ];
        let alphabet = br#"{}[]:,"\ 0123456789.-+eEtrufalsn/u"#;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound.max(1) as u64) as usize
        };
        for body in corpus {
            for cap in [0, 1, 256] {
                reference::check_against_reference(body.as_bytes(), cap);
            }
            for _ in 0..2000 {
                let mut bytes = body.as_bytes().to_vec();
                for _ in 0..1 + next(3) {
                    let at = next(bytes.len() + 1);
                    match next(4) {
                        0 if at < bytes.len() => bytes[at] = alphabet[next(alphabet.len())],
                        1 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        2 => bytes.insert(at, alphabet[next(alphabet.len())]),
                        _ => bytes.truncate(at),
                    }
                }
                reference::check_against_reference(&bytes, 2);
            }
        }
    }

    #[test]
    fn batches_itemise_each_element_up_to_the_cap() {
        let body = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                       {"jsonrpc":"2.0","method":"notifications/progress"},
                       {"jsonrpc":"2.0","id":2},
                       {"jsonrpc":"2.0","id":"z","method":"ping"}]"#;
        let p = parse_body(body.as_bytes(), 10).expect("valid");
        assert_eq!(p.batch_size(), Some(4));
        let Parsed::Batch { items, .. } = &p else {
            panic!("a batch")
        };
        assert_eq!(items[2], Err(Invalid::MissingMethod), "one bad element");
        let valid: Vec<_> = p.messages().collect();
        assert_eq!(valid.len(), 3, "the others are still itemised");
        assert_eq!(text(valid[0].name).as_deref(), Some("a"));
        assert_eq!(valid[1].kind, Kind::Notification);
        assert_eq!(valid[2].id.map(Id::json), Some("\"z\""));
        let capped = parse_body(body.as_bytes(), 2).expect("valid");
        assert_eq!(capped.messages().count(), 2);
        assert_eq!(capped.batch_size(), Some(4));
    }
}
