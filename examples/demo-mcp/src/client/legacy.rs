//! `sse-legacy`: drives a 2024-11-05 HTTP+SSE server by hand.
//!
//! GET opens the event stream, whose first `endpoint` event names the POST
//! URL; each POST is answered 202 and its JSON-RPC response arrives later as
//! an `event: message` on the stream.

use std::time::Duration;

use futures::{stream::BoxStream, StreamExt};
use reqwest::header::ACCEPT;
use serde_json::{json, Value};
use sse_stream::{Sse, SseStream};

use super::{
    raw::{http_client, initialize, notification, request},
    Summary, Target,
};
use crate::handler::FAIL_MESSAGE;

const LEGACY_PROTOCOL: &str = "2024-11-05";
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

type Events = BoxStream<'static, Result<Sse, sse_stream::Error>>;

struct LegacySession {
    http: reqwest::Client,
    events: Events,
    endpoint: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl LegacySession {
    async fn open(target: &Target) -> Result<Self, BoxError> {
        let http = http_client(target)?;
        let response = http
            .get(&target.url)
            .header(ACCEPT, "text/event-stream")
            .send()
            .await?
            .error_for_status()?;
        let mut events: Events = SseStream::from_bytes_stream(response.bytes_stream()).boxed();
        let endpoint = next_event(&mut events, |e| e.event.as_deref() == Some("endpoint"))
            .await?
            .data
            .unwrap_or_default();
        let endpoint = reqwest::Url::parse(&target.url)?
            .join(&endpoint)?
            .to_string();
        Ok(Self {
            http,
            events,
            endpoint,
        })
    }

    fn session_id(&self) -> Option<String> {
        let url = reqwest::Url::parse(&self.endpoint).ok()?;
        let id = url.query_pairs().find(|(k, _)| k == "sessionId")?.1;
        Some(id.into_owned())
    }

    /// POSTs a message; expects 202 Accepted.
    async fn send(&self, message: &Value) -> Result<u16, BoxError> {
        let status = self
            .http
            .post(&self.endpoint)
            .json(message)
            .send()
            .await?
            .status();
        Ok(status.as_u16())
    }

    /// POSTs request `id` and waits for its response on the event stream.
    async fn call(&mut self, message: &Value) -> Result<(u16, Value), BoxError> {
        let status = self.send(message).await?;
        let id = message["id"].clone();
        let event = next_event(&mut self.events, |e| {
            e.event.as_deref().unwrap_or("message") == "message"
                && e.data
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                    .is_some_and(|v| v["id"] == id)
        })
        .await?;
        let response = serde_json::from_str(event.data.as_deref().unwrap_or("null"))?;
        Ok((status, response))
    }
}

async fn next_event(events: &mut Events, wanted: impl Fn(&Sse) -> bool) -> Result<Sse, BoxError> {
    let search = async {
        while let Some(event) = events.next().await {
            let event = event?;
            if wanted(&event) {
                return Ok(event);
            }
        }
        Err("event stream ended".into())
    };
    tokio::time::timeout(EVENT_TIMEOUT, search)
        .await
        .map_err(|_| "timed out waiting for an SSE event")?
}

pub async fn sse_legacy(target: &Target) -> Summary {
    let mut summary = Summary::new("sse-legacy");
    let mut session = match LegacySession::open(target).await {
        Ok(session) => session,
        Err(e) => {
            summary.fail("sse/endpoint", e);
            return summary;
        }
    };
    summary.session_id = session.session_id();
    let endpoint = json!({ "endpoint": session.endpoint });
    summary.push("sse/endpoint", summary.session_id.is_some(), None, endpoint);
    if let Err(e) = run_steps(&mut session, &mut summary).await {
        summary.fail("sse/transport", e);
    }
    summary
}

async fn run_steps(session: &mut LegacySession, summary: &mut Summary) -> Result<(), BoxError> {
    let (status, reply) = session.call(&initialize(1, LEGACY_PROTOCOL)).await?;
    summary.protocol_version = reply["result"]["protocolVersion"]
        .as_str()
        .map(str::to_owned);
    let ok = status == 202 && reply["result"].is_object();
    summary.push("initialize", ok, Some(json!(1)), with_status(status, reply));

    let status = session
        .send(&notification("notifications/initialized"))
        .await?;
    summary.push(
        "notifications/initialized",
        status == 202,
        None,
        json!({ "status": status }),
    );

    let echo = request(
        2,
        "tools/call",
        json!({ "name": "echo", "arguments": { "text": "legacy" } }),
    );
    let (status, reply) = session.call(&echo).await?;
    let ok = status == 202 && reply["result"]["content"][0]["text"] == "legacy";
    summary.push(
        "tools/call echo",
        ok,
        Some(json!(2)),
        with_status(status, reply),
    );

    let fail = request(3, "tools/call", json!({ "name": "fail", "arguments": {} }));
    let (status, reply) = session.call(&fail).await?;
    let ok = reply["error"]["code"] == -32602 && reply["error"]["message"] == FAIL_MESSAGE;
    summary.push(
        "tools/call fail",
        status == 202 && ok,
        Some(json!(3)),
        with_status(status, reply),
    );

    let (status, reply) = session.call(&request(4, "tools/list", json!({}))).await?;
    let ok = status == 202 && reply["result"]["tools"].is_array();
    summary.push("tools/list", ok, Some(json!(4)), with_status(status, reply));
    Ok(())
}

fn with_status(status: u16, reply: Value) -> Value {
    json!({ "post_status": status, "response": reply })
}
