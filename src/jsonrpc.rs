//! JSON-RPC 2.0 message classification for MCP: turns a request body, a JSON response body or
//! one SSE `data` payload into typed messages (kind, method, id, target, `_meta` trace context,
//! outcome), and batches into one entry per element. Parsing borrows from the input and skips
//! fields MCP does not need, so a large `arguments` object costs one pass and no copies.

use crate::methods::{self, Target};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Why a body is not valid MCP over JSON-RPC 2.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Not JSON at all (or not UTF-8, or nested beyond the parser's depth limit).
    InvalidJson,
    /// JSON, but `jsonrpc` is not "2.0".
    NotJsonRpc,
    /// Neither a request/notification (`method`) nor a response (`result`/`error`).
    MissingMethod,
    /// `[]`.
    EmptyBatch,
    /// Body sent with a content type other than `application/json`.
    WrongContentType,
}

impl Invalid {
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::InvalidJson => "invalid_json",
            Invalid::NotJsonRpc => "not_jsonrpc_2_0",
            Invalid::MissingMethod => "missing_method",
            Invalid::EmptyBatch => "empty_batch",
            Invalid::WrongContentType => "wrong_content_type",
        }
    }

    /// The JSON-RPC error code a rejecting gateway answers with.
    pub fn jsonrpc_code(self) -> i64 {
        match self {
            Invalid::InvalidJson => -32700,
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

/// One classified JSON-RPC message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub kind: Option<Kind>,
    pub method: Option<String>,
    /// The id as JSON-RPC wrote it: numbers as digits, strings without quotes.
    pub id: Option<String>,
    /// Tool or prompt name.
    pub name: Option<String>,
    pub resource_uri: Option<String>,
    /// Whether `method` is in the catalogue.
    pub known_method: bool,
    /// `params._meta.traceparent` (SEP-414).
    pub meta_traceparent: Option<String>,
    pub meta_tracestate: Option<String>,
    /// Protocol version carried in the message: `initialize`'s `protocolVersion`, or the
    /// per-request `_meta` of the stateless revision.
    pub protocol_version: Option<String>,
    /// Raw `params.arguments` of tools/call and prompts/get, for opt-in capture.
    pub arguments: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    /// `result.isError` of a tool result.
    pub is_error: bool,
}

impl Message {
    pub fn kind_str(&self) -> &'static str {
        self.kind.map(Kind::as_str).unwrap_or("unknown")
    }

    /// Whether the message expects a response (a request with an id).
    pub fn expects_response(&self) -> bool {
        self.kind == Some(Kind::Request)
    }

    /// The target named by a method's parameters, for event fields.
    pub fn target_name(&self) -> Option<&str> {
        self.name.as_deref().or(self.resource_uri.as_deref())
    }
}

/// A parsed body: one message, or a batch of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub messages: Vec<Message>,
    pub batch: bool,
    /// Batch elements beyond the itemisation cap (counted, not classified).
    pub not_itemised: usize,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a RawValue>,
    method: Option<String>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    error: Option<RawError>,
}

#[derive(Deserialize)]
struct RawError {
    code: Option<i64>,
    message: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawParams<'a> {
    name: Option<String>,
    uri: Option<String>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
    #[serde(rename = "_meta")]
    meta: Option<RawMeta>,
    #[serde(rename = "ref")]
    reference: Option<RawRef>,
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMeta {
    traceparent: Option<String>,
    tracestate: Option<String>,
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRef {
    name: Option<String>,
    uri: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawResult {
    #[serde(rename = "isError")]
    is_error: bool,
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
}

/// Parses a request or response body (a message or a batch).
pub fn parse_body(body: &[u8], max_batch_elements: usize) -> Result<Parsed, Invalid> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let raws: Vec<&RawValue> =
            serde_json::from_slice(body).map_err(|_| Invalid::InvalidJson)?;
        if raws.is_empty() {
            return Err(Invalid::EmptyBatch);
        }
        let not_itemised = raws.len().saturating_sub(max_batch_elements);
        let messages = raws
            .iter()
            .take(max_batch_elements)
            .map(|raw| parse_message(raw.get().as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Parsed {
            messages,
            batch: true,
            not_itemised,
        })
    } else {
        Ok(Parsed {
            messages: vec![parse_message(body)?],
            batch: false,
            not_itemised: 0,
        })
    }
}

/// Classifies one JSON-RPC message.
pub fn parse_message(bytes: &[u8]) -> Result<Message, Invalid> {
    let raw: RawMessage = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            // Valid JSON of the wrong shape (e.g. a number, or `method: 5`).
            Invalid::NotJsonRpc
        } else {
            Invalid::InvalidJson
        }
    })?;
    if raw.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
        return Err(Invalid::NotJsonRpc);
    }
    let id = raw.id.and_then(render_id);
    let kind = match (&raw.method, &raw.error, raw.result) {
        (Some(_), _, _) if id.is_some() => Kind::Request,
        (Some(_), _, _) => Kind::Notification,
        (None, Some(_), _) => Kind::Error,
        (None, None, Some(_)) => Kind::Response,
        (None, None, None) => return Err(Invalid::MissingMethod),
    };
    let mut message = Message {
        kind: Some(kind),
        id,
        ..Message::default()
    };
    if let Some(method) = raw.method {
        classify_request(&mut message, &method, raw.params);
        message.method = Some(method);
    }
    if let Some(error) = raw.error {
        message.error_code = error.code;
        message.error_message = error.message;
    }
    if let Some(result) = raw.result {
        let peek: RawResult = serde_json::from_str(result.get()).unwrap_or_default();
        message.is_error = peek.is_error;
        message.protocol_version = peek.protocol_version;
    }
    Ok(message)
}

fn classify_request(message: &mut Message, method: &str, params: Option<&RawValue>) {
    let info = methods::lookup(method);
    message.known_method = info.is_some();
    // Positional (array) params or odd shapes carry nothing MCP defines; classify without them.
    let params: RawParams = params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or_default();
    match info.map(|i| i.target).unwrap_or(Target::None) {
        Target::Tool | Target::Prompt => message.name = params.name,
        Target::Resource => message.resource_uri = params.uri,
        Target::Reference => {
            let reference = params.reference.unwrap_or_default();
            message.name = reference.name;
            message.resource_uri = reference.uri;
        }
        Target::None => {}
    }
    if matches!(method, "tools/call" | "prompts/get") {
        message.arguments = params.arguments.map(|a| a.get().to_string());
    }
    let meta = params.meta.unwrap_or_default();
    message.meta_traceparent = meta.traceparent;
    message.meta_tracestate = meta.tracestate;
    message.protocol_version = meta.protocol_version.or(params.protocol_version);
}

fn render_id(raw: &RawValue) -> Option<String> {
    match raw.get() {
        "null" => None,
        text if text.starts_with('"') => serde_json::from_str::<String>(text).ok(),
        text => Some(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Message {
        parse_message(json.as_bytes()).expect("valid message")
    }

    #[test]
    fn tools_call_request() {
        let m = one(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}"#,
        );
        assert_eq!(m.kind, Some(Kind::Request));
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert_eq!(m.id.as_deref(), Some("7"));
        assert_eq!(m.name.as_deref(), Some("echo"));
        assert_eq!(m.arguments.as_deref(), Some(r#"{"text":"hi"}"#));
        assert!(m.known_method);
        assert_eq!(
            m.meta_traceparent.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
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
            assert_eq!(m.method.as_deref(), Some(info.name));
            assert!(m.known_method, "{}", info.name);
            assert_eq!(m.id.as_deref(), Some("a-1"));
            match info.target {
                Target::Tool | Target::Prompt | Target::Reference => {
                    assert_eq!(m.name.as_deref(), Some("n"), "{}", info.name)
                }
                Target::Resource => {
                    assert_eq!(
                        m.resource_uri.as_deref(),
                        Some("file:///x"),
                        "{}",
                        info.name
                    )
                }
                Target::None => assert_eq!(m.target_name(), None),
            }
        }
    }

    #[test]
    fn notifications_responses_errors() {
        let n = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(n.kind, Some(Kind::Notification));
        assert!(!n.expects_response());
        let r = one(r#"{"jsonrpc":"2.0","id":"x","result":{"content":[],"isError":true}}"#);
        assert_eq!(r.kind, Some(Kind::Response));
        assert!(r.is_error);
        let e = one(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"bad"}}"#);
        assert_eq!(e.kind, Some(Kind::Error));
        assert_eq!(e.error_code, Some(-32602));
        assert_eq!(e.error_message.as_deref(), Some("bad"));
        let null_id = one(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#);
        assert_eq!(null_id.id, None);
        let init = one(r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#);
        assert_eq!(init.protocol_version.as_deref(), Some("2025-06-18"));
    }

    #[test]
    fn unknown_method_and_positional_params_still_classify() {
        let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"x/y","params":[1,2]}"#);
        assert!(!m.known_method);
        assert_eq!(m.method.as_deref(), Some("x/y"));
        let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#);
        assert_eq!(m.name, None);
    }

    #[test]
    fn stateless_revision_meta() {
        let m = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"s","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(m.protocol_version.as_deref(), Some("2026-07-28"));
        let i = one(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#,
        );
        assert_eq!(i.protocol_version.as_deref(), Some("2025-03-26"));
    }

    #[test]
    fn invalid_bodies() {
        let err = |b: &str| parse_body(b.as_bytes(), 10).expect_err("invalid");
        assert_eq!(err("{"), Invalid::InvalidJson);
        assert_eq!(err(""), Invalid::InvalidJson);
        assert_eq!(
            err(r#"{"jsonrpc":"1.0","method":"ping","id":1}"#),
            Invalid::NotJsonRpc
        );
        assert_eq!(err(r#"{"method":"ping","id":1}"#), Invalid::NotJsonRpc);
        assert_eq!(err("42"), Invalid::NotJsonRpc);
        assert_eq!(err(r#"{"jsonrpc":"2.0","id":1}"#), Invalid::MissingMethod);
        assert_eq!(err("[]"), Invalid::EmptyBatch);
        assert_eq!(err(r#"[{"jsonrpc":"2.0","id":1}]"#), Invalid::MissingMethod);
        // Deep nesting is valid JSON but no message; it must not exhaust the stack.
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(err(&deep), Invalid::NotJsonRpc);
        let deep_params = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{}1{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(
            parse_body(deep_params.as_bytes(), 10).map(|p| p.messages[0].name.clone()),
            Ok(Some("t".to_string()))
        );
        assert_eq!(
            parse_body(b"\xff\xfe", 10).expect_err("not utf-8"),
            Invalid::InvalidJson
        );
    }

    #[test]
    fn batches_itemise_up_to_the_cap() {
        let body = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
                       {"jsonrpc":"2.0","method":"notifications/progress"},
                       {"jsonrpc":"2.0","id":"z","method":"ping"}]"#;
        let p = parse_body(body.as_bytes(), 10).expect("valid");
        assert!(p.batch);
        assert_eq!(p.messages.len(), 3);
        assert_eq!(p.messages[0].name.as_deref(), Some("a"));
        assert_eq!(p.messages[1].kind, Some(Kind::Notification));
        assert_eq!(p.messages[2].id.as_deref(), Some("z"));
        let capped = parse_body(body.as_bytes(), 2).expect("valid");
        assert_eq!(capped.messages.len(), 2);
        assert_eq!(capped.not_itemised, 1);
    }
}
