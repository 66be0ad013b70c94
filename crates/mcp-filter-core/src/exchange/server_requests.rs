//! Traffic the server starts: requests (`sampling/createMessage`, `elicitation/create`,
//! `roots/list`, `ping`) and notifications (progress, log messages, list changes) that arrive
//! on an event stream, and the client's answers to those requests, POSTed back later, usually
//! through another worker. Each gets an event with `mcp.direction = server_to_client`; a
//! server request is parked in the shared ring (as legacy POSTs are, its id kept apart from
//! the client's ids) so the POST that answers it is matched with its latency on any worker.

use super::elements::push_message_fields;
use super::response::emit_parked_answer;
use super::{Env, Exchange};
use crate::events::{keys, EventName, Message as EventMessage};
use crate::exchange::common::push_label_field;
use crate::jsonrpc::{Id, Kind, Message};
use crate::pending::PendingRequest;

const DIRECTION: &str = "server_to_client";

/// The ring key of a server request's id: apart from client ids, which may be equal.
fn server_id(id: Id) -> String {
    format!("s:{}", id.json())
}

impl Exchange {
    /// A request or notification the server sent on this exchange's event stream.
    pub(super) fn on_server_message(
        &mut self,
        message: &Message,
        legacy_session: Option<&str>,
        env: &mut Env,
    ) {
        let mut fields = Vec::with_capacity(128);
        push_message_fields(&mut fields, message);
        push_label_field(&mut fields, keys::DIRECTION, DIRECTION);
        let (name, text) = match message.kind {
            Kind::Request => (EventName::ServerRequest, "server request"),
            _ => (EventName::ServerNotification, "server notification"),
        };
        let summary = match message.method {
            Some(method) => EventMessage::Summary(method, message.target()),
            None => EventMessage::Text(text),
        };
        if let Some(mut event) = self.begin(env, name, summary) {
            event.fragment(&fields);
        }
        let (Kind::Request, Some(id)) = (message.kind, message.id) else {
            return;
        };
        let Some(session) = self.common.session_id().or(legacy_session) else {
            return;
        };
        let session = session.to_owned();
        let request = PendingRequest {
            common: self.common.fragment(env.config, env.memo).to_vec(),
            fields,
            started: env.clock.now(),
        };
        env.pending.park(&session, &server_id(id), &request);
    }

    /// A client's answer (a JSON-RPC response in a POST body) to a request its server sent.
    pub(super) fn answer_server_request(&mut self, message: &Message, env: &mut Env) {
        let Some(id) = message.id else { return };
        let session = self
            .common
            .session_id()
            .or(self.request.legacy_post_session.as_deref());
        let Some(session) = session else { return };
        if let Some(request) = env.pending.take(session, &server_id(id)) {
            emit_parked_answer(
                env,
                EventName::ServerRequestAnswered,
                &request,
                message,
                None,
            );
        }
    }
}
