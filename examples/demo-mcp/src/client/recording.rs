//! A reqwest-backed rmcp HTTP client that remembers what it put on the wire.
//!
//! rmcp keeps the session id and request ids inside its transport worker; the
//! summary needs both, so this wrapper observes every outgoing message and the
//! session id rmcp attaches, then delegates to rmcp's reqwest implementation.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::{
    model::ClientJsonRpcMessage,
    transport::streamable_http_client::{
        SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    },
};
use serde_json::Value;

#[derive(Default)]
struct WireState {
    session_id: Option<String>,
    /// (method, JSON-RPC id) of every request sent, in order.
    requests: Vec<(String, Value)>,
}

/// Shared view of what the client sent.
#[derive(Clone, Default)]
pub struct Wire(Arc<Mutex<WireState>>);

impl Wire {
    fn observe(&self, message: &ClientJsonRpcMessage, session_id: Option<&str>) {
        let mut state = self.0.lock().expect("wire state poisoned");
        if let Some(session_id) = session_id {
            state.session_id = Some(session_id.to_owned());
        }
        if let ClientJsonRpcMessage::Request(request) = message {
            let id = serde_json::to_value(&request.id).unwrap_or(Value::Null);
            state
                .requests
                .push((request.request.method().to_owned(), id));
        }
    }

    /// Id of the most recent request with this JSON-RPC method.
    pub fn last_id(&self, method: &str) -> Option<Value> {
        let state = self.0.lock().expect("wire state poisoned");
        state
            .requests
            .iter()
            .rev()
            .find(|(m, _)| m == method)
            .map(|(_, id)| id.clone())
    }

    pub fn session_id(&self) -> Option<String> {
        self.0
            .lock()
            .expect("wire state poisoned")
            .session_id
            .clone()
    }
}

#[derive(Clone)]
pub struct RecordingClient {
    inner: reqwest::Client,
    pub wire: Wire,
}

impl RecordingClient {
    pub fn new(inner: reqwest::Client) -> Self {
        Self {
            inner,
            wire: Wire::default(),
        }
    }
}

type Headers = HashMap<HeaderName, HeaderValue>;
type SseStream = BoxStream<'static, Result<sse_stream::Sse, SseError>>;
type HttpResult<T> = Result<T, StreamableHttpError<reqwest::Error>>;

impl StreamableHttpClient for RecordingClient {
    type Error = reqwest::Error;

    fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> impl Future<Output = HttpResult<StreamableHttpPostResponse>> + Send + '_ {
        self.wire.observe(&message, session_id.as_deref());
        self.inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
    }

    fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> impl Future<Output = HttpResult<StreamableHttpPostResponse>> + Send + '_ {
        self.wire.observe(&message, session_id.as_deref());
        self.inner.post_message_with_max_sse_event_size(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
        )
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> impl Future<Output = HttpResult<()>> + Send + '_ {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> impl Future<Output = HttpResult<SseStream>> + Send + '_ {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> impl Future<Output = HttpResult<SseStream>> + Send + '_ {
        self.inner.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
        )
    }
}
