//! Hand-built JSON-RPC over HTTP, for what rmcp's client will not send:
//! a JSON-RPC batch (`batch` scenario) and the legacy SSE transport.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{json, Value};

use super::{Summary, Target};

pub const STREAMABLE_PROTOCOL: &str = "2025-06-18";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// One HTTP reply, with its JSON-RPC messages extracted from JSON or SSE.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub session_id: Option<String>,
    pub content_type: String,
    pub messages: Vec<Value>,
    pub body: String,
}

impl RawReply {
    pub fn response(&self, id: i64) -> Option<&Value> {
        self.messages.iter().find(|m| m["id"] == json!(id))
    }

    pub fn detail(&self) -> Value {
        json!({
            "status": self.status,
            "content_type": self.content_type,
            "messages": self.messages,
            "body": if self.messages.is_empty() { Value::from(self.body.clone()) } else { Value::Null },
        })
    }
}

/// Client carrying the target's extra headers on every request.
pub fn http_client(target: &Target) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .default_headers(target.headers.clone())
        .build()
}

pub fn request(id: i64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

pub fn notification(method: &str) -> Value {
    json!({ "jsonrpc": "2.0", "method": method })
}

pub fn initialize(id: i64, protocol_version: &str) -> Value {
    let params = json!({
        "protocolVersion": protocol_version,
        "capabilities": {},
        "clientInfo": { "name": "demo-mcp-client", "version": env!("CARGO_PKG_VERSION") },
    });
    request(id, "initialize", params)
}

/// POSTs `body` to a Streamable HTTP endpoint and reads the whole reply.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    session_id: Option<&str>,
    protocol_version: &str,
    body: &Value,
) -> reqwest::Result<RawReply> {
    let mut builder = http
        .post(url)
        .header(ACCEPT, ACCEPT_BOTH)
        .header(CONTENT_TYPE, "application/json")
        .json(body);
    if let Some(session_id) = session_id {
        builder = builder
            .header("mcp-session-id", session_id)
            .header("mcp-protocol-version", protocol_version);
    }
    let response = builder.send().await?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let session_id = header("mcp-session-id");
    let content_type = header("content-type").unwrap_or_default();
    let body = response.text().await?;
    let messages = parse_messages(&content_type, &body);
    Ok(RawReply {
        status,
        session_id,
        content_type,
        messages,
        body,
    })
}

/// JSON-RPC messages in a reply body: SSE `data:` payloads or a JSON value/array.
pub fn parse_messages(content_type: &str, body: &str) -> Vec<Value> {
    let values: Vec<Value> = if content_type.starts_with("text/event-stream") {
        sse_data(body)
            .iter()
            .filter_map(|data| serde_json::from_str(data).ok())
            .collect()
    } else {
        serde_json::from_str(body).into_iter().collect()
    };
    values
        .into_iter()
        .flat_map(|value| match value {
            Value::Array(items) => items,
            other => vec![other],
        })
        .collect()
}

/// Non-empty `data` payloads of a complete SSE body.
fn sse_data(body: &str) -> Vec<String> {
    let body = body.replace("\r\n", "\n");
    body.split("\n\n")
        .map(|event| {
            event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|data| !data.is_empty())
        .collect()
}

/// `batch`: initialize raw offering `protocol_version`, then POST a JSON-RPC batch array
/// (with that version's header) and record the answer.
///
/// MCP 2025-06-18 removed batching (2025-03-26 has it), so any HTTP answer is acceptable
/// here; the step only fails when no HTTP exchange happened at all.
pub async fn batch(target: &Target, protocol_version: &str) -> Summary {
    let mut summary = Summary::new("batch");
    if let Err(e) = run_batch(target, protocol_version, &mut summary).await {
        summary.fail("http", e);
    }
    summary
}

async fn run_batch(target: &Target, version: &str, summary: &mut Summary) -> reqwest::Result<()> {
    let http = http_client(target)?;
    let url = target.url.as_str();

    let init = post(&http, url, None, version, &initialize(100, version)).await?;
    let result = init.response(100).and_then(|r| r.get("result")).cloned();
    summary.session_id = init.session_id.clone();
    summary.protocol_version = result
        .as_ref()
        .and_then(|r| r["protocolVersion"].as_str())
        .map(str::to_owned);
    summary.push(
        "initialize",
        init.status == 200 && result.is_some(),
        Some(json!(100)),
        init.detail(),
    );
    let session = init.session_id.as_deref();

    let initialized = post(
        &http,
        url,
        session,
        version,
        &notification("notifications/initialized"),
    )
    .await?;
    summary.push(
        "notifications/initialized",
        initialized.status == 202,
        None,
        initialized.detail(),
    );

    let batch = json!([
        request(
            101,
            "tools/call",
            json!({ "name": "echo", "arguments": { "text": "batched" } })
        ),
        request(102, "tools/list", json!({})),
        notification("notifications/roots/list_changed"),
    ]);
    let reply = post(&http, url, session, version, &batch).await?;
    let supported = reply.response(101).is_some() && reply.response(102).is_some();
    let mut detail = reply.detail();
    detail["batch_supported"] = json!(supported);
    summary.push("batch", true, Some(json!([101, 102])), detail);

    if let Some(session) = session {
        let status = http
            .delete(url)
            .header("mcp-session-id", session)
            .send()
            .await?
            .status();
        let ok = status.is_success() || status.as_u16() == 405;
        summary.push(
            "session delete",
            ok,
            None,
            json!({ "status": status.as_u16() }),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sse_bodies_skipping_priming_events() {
        let body = "data: \nid: 0\nretry: 3000\n\ndata: {\"id\":1}\nid: 1\n\n";
        assert_eq!(
            parse_messages("text/event-stream", body),
            vec![json!({"id": 1})]
        );
    }

    #[test]
    fn flattens_json_arrays() {
        let body = r#"[{"id":1},{"id":2}]"#;
        assert_eq!(parse_messages("application/json", body).len(), 2);
    }
}
