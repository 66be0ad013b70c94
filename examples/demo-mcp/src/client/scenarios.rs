//! Scenarios driven through rmcp's Streamable HTTP client: `all` and `traffic`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
};

use http::{HeaderName, HeaderValue};
use rmcp::{
    model::{
        CallToolRequestParams, ClientRequest, ErrorCode, GetPromptRequestParams, JsonObject,
        NumberOrString, PingRequest, ProgressNotificationParam, ProgressToken,
        ReadResourceRequestParams, RequestMetaObject,
    },
    service::{NotificationContext, RunningService},
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    ClientHandler, RoleClient, ServiceError, ServiceExt,
};
use serde::Serialize;
use serde_json::{json, Value};

use super::{first_text, recording::RecordingClient, Summary, Target};
use crate::handler::{FAIL_MESSAGE, README_TEXT, README_URI, TOOL_ERROR_TEXT};

const ECHO_TEXT: &str = "hello through envoy";
const EXPECTED_TOOLS: [&str; 6] = ["echo", "add", "fail", "tool_error", "slow", "progress"];
const PROGRESS_STEPS: u32 = 3;

/// Counts progress notifications so the `progress` step can check they arrived.
#[derive(Clone, Default)]
struct DemoClientHandler {
    progress_seen: Arc<AtomicU32>,
}

impl ClientHandler for DemoClientHandler {
    async fn on_progress(
        &self,
        _params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress_seen.fetch_add(1, Ordering::SeqCst);
    }
}

type Client = RunningService<RoleClient, DemoClientHandler>;

/// A connected rmcp client plus the wire recorder behind it.
struct Session {
    client: Client,
    http: RecordingClient,
    progress_seen: Arc<AtomicU32>,
}

impl Session {
    /// Connects and runs initialize + notifications/initialized, recording both steps.
    async fn open(target: &Target, summary: &mut Summary) -> Option<Self> {
        let http = match build_http_client() {
            Ok(inner) => RecordingClient::new(inner),
            Err(e) => {
                summary.fail("initialize", e);
                return None;
            }
        };
        let mut config = StreamableHttpClientTransportConfig::with_uri(target.url.clone())
            .custom_headers(custom_headers(target));
        // A `--stateless` server never assigns a session id.
        config.allow_stateless = true;
        let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
        let handler = DemoClientHandler::default();
        let progress_seen = handler.progress_seen.clone();
        let client = match handler.serve(transport).await {
            Ok(client) => client,
            Err(e) => {
                summary.fail("initialize", e);
                return None;
            }
        };
        let info = client.peer_info();
        summary.protocol_version = info.as_ref().map(|i| i.protocol_version.to_string());
        let server = info
            .as_ref()
            .and_then(|i| i.server_info.as_ref().map(|s| s.name.clone()));
        let detail = json!({
            "server": server,
            "protocol_version": summary.protocol_version,
        });
        summary.push(
            "initialize",
            info.is_some(),
            http.wire.last_id("initialize"),
            detail,
        );
        // rmcp sends notifications/initialized itself as part of `serve`.
        summary.push("notifications/initialized", true, None, json!({}));
        Some(Self {
            client,
            http,
            progress_seen,
        })
    }

    /// Records a step from an rmcp call: `check` judges the JSON of a success.
    fn record<T: Serialize>(
        &self,
        summary: &mut Summary,
        name: &str,
        method: &str,
        result: Result<T, ServiceError>,
        check: impl FnOnce(&Value) -> bool,
    ) {
        let request_id = self.http.wire.last_id(method);
        let (ok, detail) = match result {
            Ok(value) => {
                let value = serde_json::to_value(value).unwrap_or(Value::Null);
                (check(&value), value)
            }
            Err(e) => (false, json!({ "error": e.to_string() })),
        };
        summary.push(name, ok, request_id, detail);
    }

    async fn call_tool(&self, name: &'static str, args: Value) -> Result<Value, ServiceError> {
        let params = CallToolRequestParams::new(name).with_arguments(object(args));
        let result = self.client.call_tool(params).await?;
        Ok(serde_json::to_value(result).unwrap_or(Value::Null))
    }

    async fn echo(&self, summary: &mut Summary, name: &str, text: &str) {
        let result = self.call_tool("echo", json!({ "text": text })).await;
        self.record(summary, name, "tools/call", result, |v| {
            first_text(v) == Some(text)
        });
    }

    /// `fail` must come back as a JSON-RPC error, not as a tool result.
    async fn expect_fail(&self, summary: &mut Summary) {
        let result = self.call_tool("fail", json!({})).await;
        let request_id = self.http.wire.last_id("tools/call");
        let (ok, detail) = match result {
            Err(ServiceError::McpError(e)) => (
                e.code == ErrorCode::INVALID_PARAMS && e.message == FAIL_MESSAGE,
                json!({ "expected_error": true, "code": e.code.0, "message": e.message }),
            ),
            Err(e) => (false, json!({ "error": e.to_string() })),
            Ok(v) => (false, json!({ "unexpected_result": v })),
        };
        summary.push("tools/call fail", ok, request_id, detail);
    }

    async fn progress(&self, summary: &mut Summary) {
        let token = ProgressToken(NumberOrString::String("demo-progress".into()));
        let mut params = CallToolRequestParams::new("progress")
            .with_arguments(object(json!({ "steps": PROGRESS_STEPS })));
        params.meta = Some(RequestMetaObject::with_progress_token(token));
        let result = self.client.call_tool(params).await;
        let seen = self.progress_seen.load(Ordering::SeqCst);
        let request_id = self.http.wire.last_id("tools/call");
        let (ok, detail) = match result {
            Ok(r) => {
                let r = serde_json::to_value(r).unwrap_or(Value::Null);
                (
                    seen == PROGRESS_STEPS,
                    json!({ "result": r, "progress_notifications": seen }),
                )
            }
            Err(e) => (false, json!({ "error": e.to_string() })),
        };
        summary.push("tools/call progress", ok, request_id, detail);
    }

    async fn close(self, summary: &mut Summary) {
        summary.session_id = self.http.wire.session_id();
        if let Err(e) = self.client.cancel().await {
            tracing::warn!(error = %e, "closing the MCP client failed");
        }
    }
}

/// `all`: one of every request kind, with expected errors checked as such.
pub async fn all(target: &Target) -> Summary {
    let mut summary = Summary::new("all");
    let Some(s) = Session::open(target, &mut summary).await else {
        return summary;
    };
    let sum = &mut summary;

    let tools = s.client.list_tools(None).await;
    s.record(sum, "tools/list", "tools/list", tools, |v| {
        EXPECTED_TOOLS
            .iter()
            .all(|t| names(v, "tools").contains(&t.to_string()))
    });
    s.echo(sum, "tools/call echo", ECHO_TEXT).await;
    let add = s.call_tool("add", json!({ "a": 2, "b": 3 })).await;
    s.record(sum, "tools/call add", "tools/call", add, |v| {
        first_text(v) == Some("5")
    });
    s.expect_fail(sum).await;
    let tool_error = s.call_tool("tool_error", json!({})).await;
    s.record(
        sum,
        "tools/call tool_error",
        "tools/call",
        tool_error,
        |v| v["isError"] == json!(true) && first_text(v) == Some(TOOL_ERROR_TEXT),
    );
    s.progress(sum).await;

    let resources = s.client.list_resources(None).await;
    s.record(sum, "resources/list", "resources/list", resources, |v| {
        v["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["uri"] == README_URI))
    });
    let read = s
        .client
        .read_resource(ReadResourceRequestParams::new(README_URI))
        .await;
    s.record(sum, "resources/read", "resources/read", read, |v| {
        v["contents"][0]["text"] == README_TEXT
    });

    let prompts = s.client.list_prompts(None).await;
    s.record(sum, "prompts/list", "prompts/list", prompts, |v| {
        names(v, "prompts").contains(&"greet".to_string())
    });
    let greet =
        GetPromptRequestParams::new("greet").with_arguments(object(json!({ "name": "Ada" })));
    let prompt = s.client.get_prompt(greet).await;
    s.record(sum, "prompts/get greet", "prompts/get", prompt, |v| {
        v["messages"][0]["content"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Ada"))
    });

    let ping = s
        .client
        .send_request(ClientRequest::PingRequest(PingRequest::default()))
        .await;
    s.record(sum, "ping", "ping", ping, |_| true);

    s.close(&mut summary).await;
    summary
}

/// `interop`: the steps every SDK pair runs in the interop matrix (the Python peer's
/// `client.py` runs the same ones): tools/list, a tool that answers, one that reports
/// `isError`, an unknown tool, resources/read, prompts/get and a notification. A step passes
/// when it got an answer; the matrix test checks what the gateway recorded of each.
pub async fn interop(target: &Target) -> Summary {
    let mut summary = Summary::new("interop");
    let Some(s) = Session::open(target, &mut summary).await else {
        return summary;
    };
    let sum = &mut summary;
    let tools = s.client.list_tools(None).await;
    s.record(sum, "tools/list", "tools/list", tools, |v| {
        names(v, "tools").contains(&"echo".to_string())
    });
    s.echo(sum, "tools/call echo", ECHO_TEXT).await;
    let tool_error = s.call_tool("tool_error", json!({})).await;
    s.record(
        sum,
        "tools/call tool_error",
        "tools/call",
        tool_error,
        |v| v["isError"] == json!(true),
    );
    let unknown = s.call_tool("no_such_tool", json!({})).await;
    let request_id = s.http.wire.last_id("tools/call");
    let detail = match unknown {
        Ok(v) => json!({ "result": v }),
        Err(ServiceError::McpError(e)) => json!({ "code": e.code.0, "message": e.message }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    sum.push("tools/call no_such_tool", true, request_id, detail);
    let read = s
        .client
        .read_resource(ReadResourceRequestParams::new(README_URI))
        .await;
    s.record(sum, "resources/read", "resources/read", read, |v| {
        v["contents"][0]["text"] == README_TEXT
    });
    let greet =
        GetPromptRequestParams::new("greet").with_arguments(object(json!({ "name": "Ada" })));
    let prompt = s.client.get_prompt(greet).await;
    s.record(sum, "prompts/get greet", "prompts/get", prompt, |v| {
        v["messages"][0]["content"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Ada"))
    });
    let notified = s.client.notify_roots_list_changed().await;
    sum.push(
        "notifications/roots/list_changed",
        notified.is_ok(),
        None,
        json!({ "sent": notified.is_ok() }),
    );
    s.close(&mut summary).await;
    summary
}

/// `traffic`: `count` echo calls on one session.
pub async fn traffic(target: &Target, count: u32) -> Summary {
    let mut summary = Summary::new("traffic");
    let Some(s) = Session::open(target, &mut summary).await else {
        return summary;
    };
    for i in 1..=count {
        let text = format!("traffic #{i}");
        s.echo(&mut summary, &format!("tools/call echo #{i}"), &text)
            .await;
    }
    s.close(&mut summary).await;
    summary
}

fn build_http_client() -> reqwest::Result<reqwest::Client> {
    // No idle pooling: same choice as rmcp's default client (avoids delayed-ACK stalls).
    reqwest::Client::builder().pool_max_idle_per_host(0).build()
}

fn custom_headers(target: &Target) -> HashMap<HeaderName, HeaderValue> {
    target
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// `name` fields of the array `result[key]`.
fn names(result: &Value, key: &str) -> Vec<String> {
    result[key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
