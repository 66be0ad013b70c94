//! A slow, obviously-correct classifier on `serde_json::Value`, and the check that the
//! scanner-based one agrees with it on a body: the oracle of the `jsonrpc_parse_body` fuzz
//! target and of the unit tests. Only built for tests and fuzzing; it reports a disagreement
//! by panicking, which is what a fuzz target or a test needs.
#![allow(clippy::panic)]

use super::{object_keys, parse_body, ClientInfo, Id, Invalid, JsonStr, Kind, Message, Parsed};
use crate::methods::{self, Target};
use serde_json::Value;

/// What the reference reads from one message.
#[derive(Debug, PartialEq)]
struct Expected {
    kind: Kind,
    method: Option<String>,
    id: Option<String>,
    name: Option<String>,
    uri: Option<String>,
    error_code: Option<i64>,
    is_error: bool,
    protocol_version: Option<String>,
    traceparent: Option<String>,
    client: Client,
    /// Member names of the client's capabilities, sorted, once each.
    capabilities: Option<Vec<String>>,
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn object_or_empty(v: Option<&Value>) -> serde_json::Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

fn expected(value: &Value) -> Result<Expected, Invalid> {
    let object = value.as_object().ok_or(Invalid::NotJsonRpc)?;
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Invalid::NotJsonRpc);
    }
    let method = match object.get("method") {
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(Invalid::NotJsonRpc),
        None => None,
    };
    let id = match object.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let present = |k: &str| object.get(k).is_some_and(|v| !v.is_null());
    let kind = match (&method, present("error"), present("result")) {
        (Some(_), _, _) if id.is_some() => Kind::Request,
        (Some(_), _, _) => Kind::Notification,
        (None, true, _) => Kind::Error,
        (None, false, true) => Kind::Response,
        (None, false, false) => return Err(Invalid::MissingMethod),
    };
    let params = object_or_empty(object.get("params"));
    let meta = object_or_empty(params.get("_meta"));
    let reference = object_or_empty(params.get("ref"));
    let result = object_or_empty(object.get("result"));
    let target = method
        .as_deref()
        .and_then(methods::lookup)
        .map_or(Target::None, |m| m.target);
    let (name, uri) = match target {
        Target::Tool | Target::Prompt => (text(params.get("name")), None),
        Target::Resource => (None, text(params.get("uri"))),
        Target::Reference => (text(reference.get("name")), text(reference.get("uri"))),
        Target::None => (None, None),
    };
    let error_code = object
        .get("error")
        .and_then(Value::as_object)
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64);
    Ok(Expected {
        kind,
        method,
        id,
        name,
        uri,
        error_code,
        is_error: result.get("isError") == Some(&Value::Bool(true)),
        protocol_version: text(meta.get("io.modelcontextprotocol/protocolVersion"))
            .or_else(|| text(params.get("protocolVersion")))
            .or_else(|| text(result.get("protocolVersion"))),
        traceparent: text(meta.get("traceparent")),
        client: client_info(&meta, &params),
        capabilities: meta
            .get("io.modelcontextprotocol/clientCapabilities")
            .and_then(Value::as_object)
            .or_else(|| params.get("capabilities").and_then(Value::as_object))
            .map(|o| o.keys().cloned().collect()),
    })
}

/// A client's name and version.
type Client = (Option<String>, Option<String>);

/// `_meta`'s clientInfo object when there is one, else `params.clientInfo`.
fn client_info(
    meta: &serde_json::Map<String, Value>,
    params: &serde_json::Map<String, Value>,
) -> Client {
    let info = meta
        .get("io.modelcontextprotocol/clientInfo")
        .and_then(Value::as_object)
        .or_else(|| params.get("clientInfo").and_then(Value::as_object));
    info.map_or((None, None), |o| {
        (text(o.get("name")), text(o.get("version")))
    })
}

fn decoded(s: Option<JsonStr>) -> Option<String> {
    s.map(|s| s.value().into_owned())
}

fn actual(m: &Message) -> Expected {
    Expected {
        kind: m.kind,
        method: decoded(m.method),
        id: m.id.map(|id| match id {
            Id::Str(s) => s.value().into_owned(),
            // The reference re-serialises other ids; compare values, not spellings.
            Id::Raw(text) => serde_json::from_str::<Value>(text)
                .map(|v| v.to_string())
                .unwrap_or_else(|_| text.to_string()),
        }),
        name: decoded(m.name),
        uri: decoded(m.resource_uri),
        error_code: m.error_code,
        is_error: m.is_error,
        protocol_version: decoded(m.protocol_version),
        traceparent: decoded(m.meta_traceparent),
        client: m.client().info.map_or((None, None), |raw| {
            let info = ClientInfo::read(raw);
            (decoded(info.name), decoded(info.version))
        }),
        capabilities: m.client().capabilities.map(|raw| {
            let mut names = Vec::new();
            object_keys(raw, |key| names.push(key.value().into_owned()));
            names.sort();
            names.dedup();
            names
        }),
    }
}

/// Panics if the classifier and the reference disagree about `body`.
pub fn check_against_reference(body: &[u8], max_batch_elements: usize) {
    // JSON text is UTF-8 (RFC 8259); `IgnoredAny` checks any depth without recursing.
    let valid = std::str::from_utf8(body)
        .is_ok_and(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok());
    let parsed = parse_body(body, max_batch_elements);
    if !valid {
        assert_eq!(parsed, Err(Invalid::InvalidJson), "invalid JSON accepted");
        return;
    }
    assert_ne!(parsed, Err(Invalid::InvalidJson), "valid JSON refused");
    // Too deep for `Value`: validity is all there is to compare.
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    match (&value, parsed) {
        (
            Value::Array(items),
            Ok(Parsed::Batch {
                items: got,
                not_itemised,
            }),
        ) => {
            assert_eq!(got.len() + not_itemised, items.len());
            assert!(got.len() <= max_batch_elements);
            for (want, got) in items.iter().zip(&got) {
                let got = got.as_ref().map(actual).map_err(|e| *e);
                assert_eq!(got, expected(want));
            }
        }
        (Value::Array(items), Err(Invalid::EmptyBatch)) => assert!(items.is_empty()),
        (Value::Array(_), other) => panic!("a batch read as {other:?}"),
        (single, parsed) => {
            let got = parsed.map(|p| match p {
                Parsed::Single(m) => actual(&m),
                Parsed::Batch { .. } => panic!("a single message read as a batch"),
            });
            assert_eq!(got, expected(single));
        }
    }
}
