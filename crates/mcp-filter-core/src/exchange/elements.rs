//! The elements an exchange accounts for: one per JSON-RPC message of the request, or the
//! request itself when its body could not be classified. Each keeps its message fields
//! rendered once (for its `request` event and again for its `response`), its id as JSON text
//! for matching, and whether it has been answered. Every element ends with exactly one
//! `response` event.

use super::common::{push_field, push_label_field};
use crate::events::keys;
use crate::json::{push_string, push_u64};
use crate::jsonrpc::{self, same_id, ClientInfo, Id, JsonStr, Message};
use crate::methods::{self, Target};
use mcp_contract::fields::{self, limits};
use std::ops::Range;

#[derive(Debug)]
pub struct Element {
    fields: Range<usize>,
    /// The id as JSON text (`7`, `"a"`).
    id: Option<Range<usize>>,
    /// The method as a JSON string literal.
    method: Option<Range<usize>>,
    pub expects_response: bool,
    pub answered: bool,
    /// Parked in shared data for the legacy transport's GET stream to answer.
    pub parked: bool,
}

/// Where the classification came from, for the element's fields.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// `(size, index)` within a batch.
    pub batch: Option<(usize, usize)>,
}

/// Room for the rendered fields of a typical single message.
const TEXT_CAPACITY: usize = 320;

#[derive(Debug, Default)]
pub struct Elements {
    list: Vec<Element>,
    /// Rendered fields, ids and methods of all elements.
    text: Vec<u8>,
}

impl Elements {
    /// Elements written into buffers a finished exchange left (see `BufferPool`).
    pub fn with_buffers((mut list, mut text): (Vec<Element>, Vec<u8>)) -> Self {
        list.clear();
        text.clear();
        Elements { list, text }
    }

    /// The buffers, for the next exchange (this one keeps empty ones).
    pub fn take_buffers(&mut self) -> (Vec<Element>, Vec<u8>) {
        (
            std::mem::take(&mut self.list),
            std::mem::take(&mut self.text),
        )
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// An element classified from a message of the body.
    pub fn push_message(&mut self, message: &Message, origin: Origin) -> usize {
        if self.text.capacity() == 0 {
            self.text.reserve(TEXT_CAPACITY);
        }
        let start = self.text.len();
        let buf = &mut self.text;
        push_message_fields(buf, message);
        if let Some((size, index)) = origin.batch {
            number(buf, keys::BATCH_SIZE, size);
            number(buf, keys::BATCH_INDEX, index);
        }
        if message.method.is_some() {
            flag(buf, keys::METHOD_KNOWN, message.info.is_some());
        }
        push_label_field(buf, keys::CLASSIFIED_FROM, "body");
        flag(buf, keys::BODY_INSPECTED, true);
        let fields = start..buf.len();
        let id = message.id.map(|id| self.keep(id.json()));
        let method = message.method.map(|m| {
            let start = self.text.len();
            m.push_json(&mut self.text);
            start..self.text.len()
        });
        self.list.push(Element {
            fields,
            id,
            method,
            expects_response: message.expects_response(),
            answered: false,
            parked: false,
        });
        self.list.len() - 1
    }

    /// The request classified from its SEP-2243 headers (the body was not inspected, or did
    /// not arrive whole).
    pub fn push_headers(
        &mut self,
        method: Option<&str>,
        name: Option<&str>,
        body_bytes: usize,
        inspected: bool,
    ) -> usize {
        let start = self.text.len();
        let buf = &mut self.text;
        if let Some(method) = method {
            push_field(buf, keys::METHOD, method);
        }
        let target = method.and_then(methods::lookup).map(|m| m.target);
        let key = match target {
            Some(Target::Tool) => Some(keys::TOOL_NAME),
            Some(Target::Prompt | Target::Reference) => Some(keys::PROMPT_NAME),
            Some(Target::Resource) => Some(keys::RESOURCE_URI),
            Some(Target::None) | None => None,
        };
        if let (Some(key), Some(name)) = (key, name) {
            push_field(buf, key, name);
        }
        push_label_field(buf, keys::CLASSIFIED_FROM, "headers");
        flag(buf, keys::BODY_INSPECTED, inspected);
        number(buf, keys::BODY_BYTES, body_bytes);
        if !inspected {
            push_label_field(buf, keys::REASON, "body_over_cap");
        }
        let fields = start..buf.len();
        let method = method.map(|m| {
            let mut literal = Vec::with_capacity(m.len() + 2);
            crate::json::push_string(&mut literal, m);
            let start = self.text.len();
            self.text.extend_from_slice(&literal);
            start..self.text.len()
        });
        self.list.push(Element {
            fields,
            id: None,
            method,
            expects_response: true,
            answered: false,
            parked: false,
        });
        self.list.len() - 1
    }

    fn keep(&mut self, text: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.extend_from_slice(text.as_bytes());
        start..self.text.len()
    }

    fn slice(&self, range: &Range<usize>) -> &[u8] {
        self.text.get(range.clone()).unwrap_or_default()
    }

    /// The element's rendered message fields.
    pub fn fields(&self, index: usize) -> &[u8] {
        self.list.get(index).map_or(&[], |e| self.slice(&e.fields))
    }

    /// The element's id as JSON text, as the client wrote it (for matching; see
    /// `jsonrpc::id_json` to write it out).
    pub fn id(&self, index: usize) -> Option<&str> {
        let range = self.list.get(index)?.id.as_ref()?;
        std::str::from_utf8(self.slice(range)).ok()
    }

    /// The element's method as a JSON string literal.
    pub fn method(&self, index: usize) -> Option<&str> {
        let range = self.list.get(index)?.method.as_ref()?;
        std::str::from_utf8(self.slice(range)).ok()
    }

    pub fn get(&self, index: usize) -> Option<&Element> {
        self.list.get(index)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut Element> {
        self.list.get_mut(index)
    }

    /// The unanswered element a response with this id (JSON text) answers. A request
    /// classified from headers alone has no id; the single response answers it.
    pub fn unanswered(&self, id: Option<&str>) -> Option<usize> {
        let by_id = id.and_then(|id| {
            self.list.iter().position(|e| {
                !e.answered
                    && e.expects_response
                    && e.id
                        .as_ref()
                        .and_then(|r| std::str::from_utf8(self.slice(r)).ok())
                        .is_some_and(|mine| same_id(mine, id))
            })
        });
        by_id.or_else(|| match self.list.as_slice() {
            [only] if !only.answered && only.id.is_none() && only.expects_response => Some(0),
            _ => None,
        })
    }

    /// Indices of the elements not answered yet.
    pub fn unanswered_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.list
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.answered)
            .map(|(i, _)| i)
    }
}

/// The message fields the filter caps, in the order `truncated` names them (bit i of the
/// mask in `push_message_fields` is `CAPPED[i]`).
const CAPPED: [&str; 5] = [
    fields::name::METHOD,
    fields::name::TOOL_NAME,
    fields::name::CLIENT_NAME,
    fields::name::CLIENT_VERSION,
    fields::name::CLIENT_CAPABILITIES,
];

/// A message's own fields: method, kind, target, id, the client's self-description (what
/// its events say of it).
pub(super) fn push_message_fields(buf: &mut Vec<u8>, message: &Message) {
    // One bit per field of `CAPPED` that was cut.
    let mut truncated = 0u8;
    if let Some(method) = message.method {
        truncated |= u8::from(capped_json_str(buf, keys::METHOD, method, limits::METHOD));
    }
    push_label_field(buf, keys::MESSAGE_KIND, message.kind.as_str());
    match message.target_kind() {
        Target::Tool => {
            if let Some(name) = message.name {
                truncated |= u8::from(capped_json_str(
                    buf,
                    keys::TOOL_NAME,
                    name,
                    limits::TOOL_NAME,
                )) << 1;
            }
        }
        Target::Prompt => opt_json_str(buf, keys::PROMPT_NAME, message.name),
        Target::Resource => opt_json_str(buf, keys::RESOURCE_URI, message.resource_uri),
        Target::Reference => {
            opt_json_str(buf, keys::PROMPT_NAME, message.name);
            opt_json_str(buf, keys::RESOURCE_URI, message.resource_uri);
        }
        Target::None => {}
    }
    if let Some(id) = message.id {
        match id {
            Id::Str(s) => json_str(buf, keys::REQUEST_ID, s),
            Id::Raw(text) => push_field(buf, keys::REQUEST_ID, text),
        }
    }
    if message.client_params.is_some() {
        let described = message.client();
        let client = described.info.map(ClientInfo::read).unwrap_or_default();
        if let Some(name) = client.name {
            truncated |= u8::from(capped_json_str(
                buf,
                keys::CLIENT_NAME,
                name,
                limits::CLIENT_NAME,
            )) << 2;
        }
        if let Some(version) = client.version {
            truncated |= u8::from(capped_json_str(
                buf,
                keys::CLIENT_VERSION,
                version,
                limits::CLIENT_VERSION,
            )) << 3;
        }
        if let Some(raw) = described.capabilities {
            truncated |= u8::from(push_capabilities(buf, raw)) << 4;
        }
    }
    if truncated != 0 {
        buf.extend_from_slice(keys::TRUNCATED.as_bytes());
        buf.push(b'[');
        let cut = CAPPED
            .iter()
            .enumerate()
            .filter(|(bit, _)| truncated & (1 << bit) != 0);
        for (i, (_, name)) in cut.enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            push_string(buf, name);
        }
        buf.push(b']');
    }
}

/// Writes the member names of a capabilities object as a list, at most
/// `limits::CLIENT_CAPABILITIES` of them, leaving out names over `limits::CLIENT_NAME`
/// characters; true when any was left out.
fn push_capabilities(buf: &mut Vec<u8>, raw: &str) -> bool {
    buf.extend_from_slice(keys::CLIENT_CAPABILITIES.as_bytes());
    buf.push(b'[');
    let (mut listed, mut left_out) = (0, false);
    jsonrpc::object_keys(raw, |name| {
        let too_long = name.escaped().len() > limits::CLIENT_NAME
            && name.value().chars().count() > limits::CLIENT_NAME;
        if listed == limits::CLIENT_CAPABILITIES || too_long {
            left_out = true;
            return;
        }
        if listed > 0 {
            buf.push(b',');
        }
        name.push_json(buf);
        listed += 1;
    });
    buf.push(b']');
    left_out
}

/// Writes a string field cut to `limit` characters (the collector's column for it, so the
/// stored line and the column agree); true when it was cut. Most values are short: their
/// byte length settles it without decoding.
fn capped_json_str(buf: &mut Vec<u8>, key: &str, value: JsonStr, limit: usize) -> bool {
    if value.literal().len() <= limit {
        json_str(buf, key, value);
        return false;
    }
    let decoded = value.value();
    let Some((cut, _)) = decoded.char_indices().nth(limit) else {
        json_str(buf, key, value);
        return false;
    };
    buf.extend_from_slice(key.as_bytes());
    push_string(buf, &decoded[..cut]);
    true
}

fn json_str(buf: &mut Vec<u8>, key: &str, value: JsonStr) {
    buf.extend_from_slice(key.as_bytes());
    value.push_json(buf);
}

fn opt_json_str(buf: &mut Vec<u8>, key: &str, value: Option<JsonStr>) {
    if let Some(value) = value {
        json_str(buf, key, value);
    }
}

fn number(buf: &mut Vec<u8>, key: &str, value: usize) {
    buf.extend_from_slice(key.as_bytes());
    push_u64(buf, value as u64);
}

fn flag(buf: &mut Vec<u8>, key: &str, value: bool) {
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(if value { b"true" } else { b"false" });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::parse_message;
    use serde_json::Value;

    fn fields(elements: &Elements, i: usize) -> Value {
        let json = format!("{{\"x\":0{}}}", String::from_utf8_lossy(elements.fields(i)));
        serde_json::from_str(&json).expect("JSON members")
    }

    #[test]
    fn long_names_are_cut_to_the_collectors_columns_and_named() {
        let tool = format!("{}\\u00fc", "ü".repeat(300));
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
        );
        let long_method = format!(r#"{{"jsonrpc":"2.0","method":"x/{}"}}"#, "y".repeat(200));
        let short = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#;
        let mut elements = Elements::default();
        for body in [call.as_bytes(), long_method.as_bytes(), short] {
            let message = parse_message(body).expect("valid");
            elements.push_message(&message, Origin { batch: None });
        }
        let f = fields(&elements, 0);
        let name = f["gen_ai.tool.name"].as_str().expect("kept");
        assert_eq!(name.chars().count(), limits::TOOL_NAME);
        assert!(
            name.chars().all(|c| c == 'ü'),
            "cut at a character boundary"
        );
        assert_eq!(f["truncated"], serde_json::json!(["gen_ai.tool.name"]));
        let f = fields(&elements, 1);
        assert_eq!(
            f["mcp.method.name"].as_str().map(|m| m.chars().count()),
            Some(limits::METHOD)
        );
        assert_eq!(f["truncated"], serde_json::json!(["mcp.method.name"]));
        assert!(fields(&elements, 2).get("truncated").is_none());
    }

    #[test]
    fn the_client_describes_itself_in_initialize_or_in_every_2026_request() {
        let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{"listChanged":true},"sampling":{}},"clientInfo":{"name":"claude-code","version":"2.1"}}}"#;
        let modern = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"py\u00e9","version":"2.3.0"},"io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}}}"#;
        let many: String = (0..20)
            .map(|i| format!("\"c{i}\":{{}}"))
            .collect::<Vec<_>>()
            .join(",");
        let hostile = format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"ping","params":{{"_meta":{{"io.modelcontextprotocol/clientInfo":{{"name":"{}","version":"{}"}},"io.modelcontextprotocol/clientCapabilities":{{"{}":1,{many}}}}}}}}}"#,
            "n".repeat(500),
            "v".repeat(100),
            "k".repeat(200),
        );
        let plain = br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
        let mut elements = Elements::default();
        for body in [&init[..], modern, hostile.as_bytes(), plain] {
            let message = parse_message(body).expect("valid");
            elements.push_message(&message, Origin { batch: None });
        }
        let f = fields(&elements, 0);
        assert_eq!(f["mcp.client.name"], "claude-code");
        assert_eq!(f["mcp.client.version"], "2.1");
        assert_eq!(
            f["mcp.client.capabilities"],
            serde_json::json!(["roots", "sampling"])
        );
        let f = fields(&elements, 1);
        assert_eq!(f["mcp.client.name"], "py\u{e9}", "decoded as JSON");
        assert_eq!(
            f["mcp.client.capabilities"],
            serde_json::json!(["elicitation"])
        );
        let f = fields(&elements, 2);
        assert_eq!(
            f["mcp.client.name"].as_str().map(str::len),
            Some(limits::CLIENT_NAME)
        );
        assert_eq!(
            f["mcp.client.version"].as_str().map(str::len),
            Some(limits::CLIENT_VERSION)
        );
        let listed = f["mcp.client.capabilities"].as_array().expect("a list");
        assert_eq!(
            listed.len(),
            limits::CLIENT_CAPABILITIES,
            "the over-long name left out"
        );
        assert_eq!(listed[0], "c0");
        assert_eq!(
            f["truncated"],
            serde_json::json!([
                "mcp.client.name",
                "mcp.client.version",
                "mcp.client.capabilities"
            ])
        );
        let f = fields(&elements, 3);
        assert!(f.get("mcp.client.name").is_none() && f.get("mcp.client.capabilities").is_none());
    }

    #[test]
    fn message_fields_are_rendered_once_and_ids_matched_as_sent() {
        let mut elements = Elements::default();
        let call = parse_message(
            br#"{"jsonrpc":"2.0","id":"7","method":"tools/call","params":{"name":"ec\"ho"}}"#,
        )
        .expect("valid");
        let note = parse_message(br#"{"jsonrpc":"2.0","method":"x/y"}"#).expect("valid");
        elements.push_message(
            &call,
            Origin {
                batch: Some((2, 0)),
            },
        );
        elements.push_message(
            &note,
            Origin {
                batch: Some((2, 1)),
            },
        );
        let f = fields(&elements, 0);
        assert_eq!(f["mcp.method.name"], "tools/call");
        assert_eq!(f["gen_ai.tool.name"], "ec\"ho");
        assert_eq!(f["jsonrpc.request.id"], "7");
        assert_eq!(f["jsonrpc.batch.size"], 2);
        assert_eq!(f["mcp.method.known"], true);
        assert_eq!(f["mcp.classified_from"], "body");
        assert_eq!(fields(&elements, 1)["mcp.method.known"], false);
        assert_eq!(elements.method(0), Some("\"tools/call\""));
        assert_eq!(
            elements.unanswered(Some("7")),
            None,
            "a number is not the string \"7\""
        );
        assert_eq!(elements.unanswered(Some("\"7\"")), Some(0));
        assert_eq!(elements.unanswered(Some("\"\\u0037\"")), Some(0));
        assert!(!elements.get(1).expect("note").expects_response);
    }

    #[test]
    fn a_request_classified_from_headers_is_answered_by_the_single_response() {
        let mut elements = Elements::default();
        elements.push_headers(Some("tools/call"), Some("echo"), 10_000, false);
        let f = fields(&elements, 0);
        assert_eq!(f["gen_ai.tool.name"], "echo");
        assert_eq!(f["mcp.body.inspected"], false);
        assert_eq!(f["mcp.body.bytes"], 10_000);
        assert_eq!(f["reason"], "body_over_cap");
        assert_eq!(elements.unanswered(Some("1")), Some(0));
        assert_eq!(elements.method(0), Some("\"tools/call\""));
    }
}
