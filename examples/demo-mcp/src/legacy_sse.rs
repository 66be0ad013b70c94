//! Legacy MCP HTTP+SSE transport (protocol 2024-11-05), written by hand.
//!
//! rmcp 3.x no longer ships an SSE server transport, so this module bridges
//! the two HTTP endpoints to rmcp's generic `(Sink, Stream)` transport: the
//! same [`DemoHandler`] that serves Streamable HTTP runs once per SSE stream.
//!
//! * `GET /sse` opens the stream; its first event is `event: endpoint` with
//!   `data: /message?sessionId=<id>`, every later event is `event: message`.
//! * `POST /message?sessionId=<id>` takes one JSON-RPC message and answers
//!   `202 Accepted`; the response travels on the stream.

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::sse::{Event, KeepAlive, Sse},
    routing::{get, post},
    Json, Router,
};
use futures::{channel::mpsc, SinkExt, Stream, StreamExt};
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    ServiceExt,
};
use serde::Deserialize;

use crate::handler::DemoHandler;

pub const SSE_PATH: &str = "/sse";
pub const MESSAGE_PATH: &str = "/message";
const CHANNEL_CAPACITY: usize = 64;

type Sessions = Arc<Mutex<HashMap<String, mpsc::Sender<ClientJsonRpcMessage>>>>;

/// Router with `GET /sse` and `POST /message`.
pub fn router() -> Router {
    Router::new()
        .route(SSE_PATH, get(open_stream))
        .route(MESSAGE_PATH, post(post_message))
        .with_state(Sessions::default())
}

/// Forgets the session when the SSE response stream is dropped (client gone),
/// which closes the handler's inbound channel and ends its service loop.
struct SessionGuard {
    sessions: Sessions,
    id: String,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions
            .lock()
            .expect("sessions poisoned")
            .remove(&self.id);
    }
}

async fn open_stream(
    State(sessions): State<Sessions>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let id = uuid::Uuid::new_v4().to_string();
    let (inbound_tx, inbound_rx) = mpsc::channel::<ClientJsonRpcMessage>(CHANNEL_CAPACITY);
    let (outbound_tx, outbound_rx) = mpsc::channel::<ServerJsonRpcMessage>(CHANNEL_CAPACITY);
    sessions
        .lock()
        .expect("sessions poisoned")
        .insert(id.clone(), inbound_tx);
    tokio::spawn(serve_session(id.clone(), outbound_tx, inbound_rx));

    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("{MESSAGE_PATH}?sessionId={id}"));
    let guard = SessionGuard { sessions, id };
    let messages = outbound_rx.map(move |message| {
        let _keep_session_while_streaming = &guard;
        Event::default()
            .event("message")
            .json_data(&message)
            .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
    });
    let events = futures::stream::once(async { endpoint }).chain(messages);
    Sse::new(events.map(Ok)).keep_alive(KeepAlive::default())
}

async fn serve_session(
    id: String,
    outbound: mpsc::Sender<ServerJsonRpcMessage>,
    inbound: mpsc::Receiver<ClientJsonRpcMessage>,
) {
    match DemoHandler::new().serve((outbound, inbound)).await {
        Ok(running) => {
            let reason = running.waiting().await;
            tracing::info!(session = %id, ?reason, "legacy SSE session ended");
        }
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "legacy SSE session failed to initialize")
        }
    }
}

#[derive(Deserialize)]
struct MessageQuery {
    #[serde(rename = "sessionId")]
    session_id: String,
}

async fn post_message(
    State(sessions): State<Sessions>,
    Query(query): Query<MessageQuery>,
    Json(message): Json<ClientJsonRpcMessage>,
) -> (StatusCode, &'static str) {
    let sender = sessions
        .lock()
        .expect("sessions poisoned")
        .get(&query.session_id)
        .cloned();
    let Some(mut sender) = sender else {
        return (StatusCode::NOT_FOUND, "unknown sessionId");
    };
    match sender.send(message).await {
        Ok(()) => (StatusCode::ACCEPTED, "Accepted"),
        Err(_) => (StatusCode::GONE, "session closed"),
    }
}
