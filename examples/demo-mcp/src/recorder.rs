//! In-memory record of the HTTP requests a demo server received.
//!
//! Tests read it back through `GET /debug/requests` to assert what actually
//! reached the upstream (e.g. that Envoy injected a W3C `traceparent`), which
//! cannot be observed from the client side of the proxy.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{Request, State},
    http::HeaderMap,
    middleware::Next,
    response::Response,
    routing::get,
    Json, Router,
};
use serde::Serialize;

/// How many requests are kept; older ones are dropped first.
pub const CAPACITY: usize = 1000;

/// Paths under this prefix are not recorded, so polling the log does not grow it.
const DEBUG_PREFIX: &str = "/debug/";

/// One received HTTP request, reduced to what the tests assert on.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    /// Monotonic sequence number, starting at 1.
    pub seq: u64,
    pub unix_ms: u128,
    pub method: String,
    /// Path including the query string.
    pub path: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub mcp_session_id: Option<String>,
    pub mcp_protocol_version: Option<String>,
    /// Only presence: the value is a credential and must not be echoed back.
    pub authorization_present: bool,
}

#[derive(Default)]
struct Ring {
    next_seq: u64,
    entries: VecDeque<RecordedRequest>,
}

/// Shared, bounded request log.
#[derive(Clone, Default)]
pub struct RequestLog(Arc<Mutex<Ring>>);

impl RequestLog {
    pub fn record(&self, method: &str, path: &str, headers: &HeaderMap) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let mut ring = self.0.lock().expect("request log poisoned");
        ring.next_seq += 1;
        let entry = RecordedRequest {
            seq: ring.next_seq,
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default(),
            method: method.to_owned(),
            path: path.to_owned(),
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
            mcp_session_id: header("mcp-session-id"),
            mcp_protocol_version: header("mcp-protocol-version"),
            authorization_present: headers.contains_key("authorization"),
        };
        if ring.entries.len() == CAPACITY {
            ring.entries.pop_front();
        }
        ring.entries.push_back(entry);
    }

    pub fn snapshot(&self) -> Vec<RecordedRequest> {
        let ring = self.0.lock().expect("request log poisoned");
        ring.entries.iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.0.lock().expect("request log poisoned").entries.clear();
    }
}

/// Axum middleware recording every request (except `/debug/*`) before routing.
pub async fn record(State(log): State<RequestLog>, request: Request, next: Next) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    if !path.starts_with(DEBUG_PREFIX) {
        log.record(request.method().as_str(), &path, request.headers());
    }
    next.run(request).await
}

/// `GET /healthz`, `GET /debug/requests` (JSON `{"requests":[...]}`) and
/// `DELETE /debug/requests` (clears the log).
pub fn debug_routes(log: RequestLog) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/debug/requests", get(list_requests).delete(clear_requests))
        .with_state(log)
}

/// Wraps `app` with the debug routes and the recording middleware.
pub fn instrument(app: Router, log: RequestLog) -> Router {
    app.merge(debug_routes(log.clone()))
        .layer(axum::middleware::from_fn_with_state(log, record))
}

async fn list_requests(State(log): State<RequestLog>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "requests": log.snapshot() }))
}

async fn clear_requests(State(log): State<RequestLog>) -> &'static str {
    log.clear();
    "cleared"
}
