//! Replies the gateway sends itself, without touching the upstream: a status, headers and a
//! JSON-RPC error body.

use crate::json::{push_string, push_u64};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// A JSON-RPC error object. `id` is the request's id as JSON text (`7`, `"7"`), or `null`;
/// `data` is extra JSON text for the error's `data` member.
pub fn jsonrpc_error(id: Option<&str>, code: i64, message: &str, data: Option<&str>) -> String {
    let mut body = b"{\"jsonrpc\":\"2.0\",\"id\":".to_vec();
    body.extend_from_slice(id.unwrap_or("null").as_bytes());
    body.extend_from_slice(b",\"error\":{\"code\":");
    if code < 0 {
        body.push(b'-');
    }
    push_u64(&mut body, code.unsigned_abs());
    body.extend_from_slice(b",\"message\":");
    push_string(&mut body, message);
    if let Some(data) = data {
        body.extend_from_slice(b",\"data\":");
        body.extend_from_slice(data.as_bytes());
    }
    body.extend_from_slice(b"}}");
    String::from_utf8(body).unwrap_or_default()
}

/// A reply with a JSON body.
pub fn json_reply(status: u32, body: String) -> LocalReply {
    LocalReply {
        status,
        headers: vec![("content-type", "application/json".to_string())],
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn error_bodies_are_json_rpc_and_keep_the_id_as_sent() {
        let parse = |s: &str| serde_json::from_str::<Value>(s).expect("JSON");
        let e = parse(&jsonrpc_error(
            Some("\"7\""),
            -32003,
            "a \"quoted\" text",
            Some("{\"x\":1}"),
        ));
        assert_eq!(e["id"], "7", "a string id stays a string");
        assert_eq!(e["error"]["code"], -32003);
        assert_eq!(e["error"]["message"], "a \"quoted\" text");
        assert_eq!(e["error"]["data"]["x"], 1);
        let e = parse(&jsonrpc_error(Some("7"), -32700, "Parse error", None));
        assert_eq!(e["id"], 7);
        assert_eq!(parse(&jsonrpc_error(None, 1, "m", None))["id"], Value::Null);
    }
}
