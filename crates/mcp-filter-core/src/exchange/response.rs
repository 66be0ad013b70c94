//! The response phase: the head (status, content type, the session the server assigns), then
//! the body. JSON bodies are parsed once at their end; event streams are parsed as they flow
//! and each answer is matched to its element when it arrives (per-message latency). Answers
//! on a legacy HTTP+SSE stream belong to POSTs that other workers parked in shared data.

use super::outcome::{of_message, Outcome};
use super::{
    begin, is_json_content_type, micros, path_matches, path_only, query_session, Env, EventStream,
    Exchange, ResponseBodyAction, ResponseHeaders, ResponseKind,
};
use crate::events::{keys, Event, EventName, Message as EventMessage};
use crate::jsonrpc::{self, Id, Kind, Message};
use crate::pending::PendingRequest;
use crate::sse::{self, EndpointRewrite, SseEventRef, SseParser};

/// The event of an answer to a request parked in shared data (by another exchange, usually
/// on another worker): the parked fields, the answer's outcome, the time since the request.
pub(super) fn emit_parked_answer(
    env: &mut Env,
    name: EventName,
    parked: &PendingRequest,
    message: &Message,
    http_status: Option<u64>,
) {
    let outcome = of_message(message);
    let now = env.clock.now();
    if let Some(mut event) = env
        .events
        .begin(|| now, name, EventMessage::Text(outcome.as_str()))
    {
        event.fragment(&parked.common).fragment(&parked.fields);
        message_outcome(&mut event, message);
        if let Some(status) = http_status {
            event.u64(keys::HTTP_STATUS, status);
        }
        event.millis(keys::DURATION_MS, micros(parked.started, now));
    }
}

/// Writes a response message's outcome fields.
pub(super) fn message_outcome(event: &mut Event, message: &Message) {
    let outcome = of_message(message);
    event.label(keys::OUTCOME, outcome.as_str());
    match (message.error_code, outcome) {
        (Some(code), _) => {
            let mut text = Vec::with_capacity(8);
            if code < 0 {
                text.push(b'-');
            }
            crate::json::push_u64(&mut text, code.unsigned_abs());
            let code = std::str::from_utf8(&text).unwrap_or_default();
            event
                .str(keys::RPC_STATUS, code)
                .str(keys::ERROR_TYPE, code);
        }
        (None, Outcome::JsonrpcError) => {
            event.label(keys::ERROR_TYPE, "_OTHER");
        }
        (None, Outcome::ToolError) => {
            event.label(keys::ERROR_TYPE, "tool_error");
        }
        _ => {}
    }
}

impl Exchange {
    /// Response headers; returns the trace id to echo to the client, when configured.
    pub fn on_response_headers(
        &mut self,
        headers: &ResponseHeaders,
        end_of_stream: bool,
        env: &mut Env,
    ) -> Option<[u8; 32]> {
        let status = headers.status;
        self.response.status = status;
        // Only a GET stream's breaker result is timed at its first byte.
        if self.tracked && self.common.http_method() == "GET" {
            self.response.first_byte_at = Some(env.clock.now());
        }
        let echo = env
            .config
            .trace_response_header
            .is_some()
            .then(|| self.trace_id_hex());
        if self.rejected {
            return echo;
        }
        if self.common.session_id().is_none() {
            if let Some(session) = headers.session_id {
                self.common.set_session_id(session);
            }
        }
        let content_type = headers.content_type.unwrap_or("");
        self.response.kind = if content_type.starts_with("text/event-stream") {
            ResponseKind::EventStream
        } else if is_json_content_type(content_type) {
            ResponseKind::Json
        } else {
            ResponseKind::Other
        };
        // A debug event: the clock is read only when it is written.
        let started = self.started;
        if let Some(mut event) = self.begin(
            env,
            EventName::DirectorAfter,
            EventMessage::Text("upstream answered"),
        ) {
            if let Some(status) = status {
                event.u64(keys::HTTP_STATUS, u64::from(status));
            }
            let elapsed = micros(started, event.at());
            event.millis(keys::DURATION_MS, elapsed);
        }
        if self.response.kind == ResponseKind::EventStream {
            self.response.stream = Some(Box::new(EventStream {
                parser: SseParser::new(env.config.max_body_bytes),
                messages: 0,
                rewrite_head: self.endpoint_prefix.is_some().then(Vec::new),
                legacy_session: None,
            }));
            if let Some(mut event) = self.begin(
                env,
                EventName::SseStart,
                EventMessage::Text("event stream started"),
            ) {
                if let Some(status) = status {
                    event.u64(keys::HTTP_STATUS, u64::from(status));
                }
            }
        }
        if end_of_stream {
            self.on_response_body(&[], true, env);
        }
        echo
    }

    /// Feeds a response body chunk (only bytes not seen before).
    pub fn on_response_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        env: &mut Env,
    ) -> ResponseBodyAction {
        if self.rejected || self.response.complete {
            return ResponseBodyAction::Continue;
        }
        let mut action = ResponseBodyAction::Continue;
        let mut whole: &[u8] = &[];
        match self.response.kind {
            ResponseKind::EventStream => {
                if self
                    .response
                    .stream
                    .as_ref()
                    .is_some_and(|s| s.rewrite_head.is_some())
                {
                    action = self.try_endpoint_rewrite(chunk, end_of_stream, env);
                    if action == ResponseBodyAction::Buffer {
                        return action;
                    }
                } else {
                    self.feed_sse(chunk, env);
                }
            }
            _ => {
                let fits = chunk.len() <= env.config.max_body_bytes;
                if end_of_stream && self.response.body.total == 0 && fits {
                    // The whole body in one chunk: parse it where it is.
                    self.response.body.total = chunk.len();
                    whole = chunk;
                } else {
                    self.response.body.push(chunk, env.config.max_body_bytes);
                }
            }
        }
        if end_of_stream {
            self.response.complete = true;
            self.finish_response(whole, env);
        }
        action
    }

    fn try_endpoint_rewrite(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        env: &mut Env,
    ) -> ResponseBodyAction {
        let Some(stream) = self.response.stream.as_mut() else {
            return ResponseBodyAction::Continue;
        };
        let mut head = stream.rewrite_head.take().unwrap_or_default();
        head.extend_from_slice(chunk);
        let prefix = self.endpoint_prefix.as_deref().unwrap_or_default();
        let over_cap = head.len() > env.config.max_body_bytes;
        let (action, stream_bytes) = match sse::rewrite_endpoint(&head, prefix) {
            EndpointRewrite::NeedMore if !end_of_stream && !over_cap => {
                stream.rewrite_head = Some(head);
                return ResponseBodyAction::Buffer;
            }
            EndpointRewrite::Rewritten { stream, old, new } => {
                if let Some(mut event) = self.begin(
                    env,
                    EventName::SseEndpointRewrite,
                    EventMessage::Text("legacy SSE endpoint rewritten"),
                ) {
                    event.str(keys::DETAIL, &format!("{old} -> {new}"));
                }
                (ResponseBodyAction::Replace(stream.clone()), stream)
            }
            EndpointRewrite::Unparsable(endpoint) => {
                let shown: String = endpoint.chars().take(256).collect();
                if let Some(mut event) = self.begin(
                    env,
                    EventName::UpstreamUrlParseFailed,
                    EventMessage::Text("legacy SSE endpoint is not a URL"),
                ) {
                    event.str(keys::DETAIL, &shown);
                }
                (ResponseBodyAction::Continue, head)
            }
            EndpointRewrite::NeedMore | EndpointRewrite::NotEndpoint => {
                (ResponseBodyAction::Continue, head)
            }
        };
        self.feed_sse(&stream_bytes, env);
        action
    }

    fn feed_sse(&mut self, chunk: &[u8], env: &mut Env) {
        // The stream is taken out while it is fed, so each event can update the exchange.
        let Some(mut stream) = self.response.stream.take() else {
            return;
        };
        let EventStream {
            parser,
            messages,
            legacy_session,
            ..
        } = &mut *stream;
        parser.feed(chunk, &mut |event| {
            *messages += 1;
            self.on_sse_event(event, legacy_session, env);
        });
        self.response.stream = Some(stream);
    }

    fn on_sse_event(
        &mut self,
        event: SseEventRef,
        legacy_session: &mut Option<Box<str>>,
        env: &mut Env,
    ) {
        if event.event == b"endpoint" {
            *legacy_session = learn_endpoint(event.data, env);
            return;
        }
        if event.truncated || !event.is_message() {
            return;
        }
        if let Ok(message) = jsonrpc::parse_message(event.data) {
            match message.kind {
                Kind::Response | Kind::Error => {
                    self.on_response_message(&message, legacy_session.as_deref(), env)
                }
                Kind::Request | Kind::Notification => {
                    self.on_server_message(&message, legacy_session.as_deref(), env)
                }
            }
        }
    }

    /// Matches a JSON-RPC response to the element (or the legacy parked request) it answers.
    fn on_response_message(&mut self, message: &Message, legacy: Option<&str>, env: &mut Env) {
        if !matches!(message.kind, Kind::Response | Kind::Error) {
            return;
        }
        let Some(index) = self.elements.unanswered(message.id.map(Id::json)) else {
            self.answer_legacy_pending(message, legacy, env);
            return;
        };
        let answer = self.claim(index, env);
        if let Some(element) = self.elements.get_mut(index) {
            element.answered = true;
        }
        if !answer {
            return;
        }
        self.response.jsonrpc_error_seen |= message.kind == Kind::Error;
        self.response.tool_error_seen |= message.is_error;
        if self.common.protocol_version().is_none() {
            if let Some(version) = message.protocol_version {
                self.common.set_protocol_version(&version.value(), true);
            }
        }
        let elapsed = self.elapsed(env);
        let status = self.response.status;
        let outcome = of_message(message);
        if let Some(mut event) = begin(
            &mut self.common,
            env,
            EventName::Response,
            EventMessage::Text(outcome.as_str()),
        ) {
            event.fragment(self.elements.fields(index));
            message_outcome(&mut event, message);
            if let Some(status) = status {
                event.u64(keys::HTTP_STATUS, u64::from(status));
            }
            event.millis(keys::DURATION_MS, elapsed);
        }
    }

    fn answer_legacy_pending(&mut self, message: &Message, session: Option<&str>, env: &mut Env) {
        let (Some(session), Some(id)) = (session, message.id) else {
            return;
        };
        if let Some(pending) = env.pending.take(session, id.json()) {
            emit_parked_answer(env, EventName::Response, &pending, message, Some(200));
        }
    }

    /// The response is complete: the stream's summary, or the JSON body's answers.
    fn finish_response(&mut self, whole: &[u8], env: &mut Env) {
        match self.response.kind {
            ResponseKind::EventStream => {
                let messages = self.response.stream.as_ref().map_or(0, |s| s.messages);
                let elapsed = self.elapsed(env);
                if let Some(mut event) = self.begin(
                    env,
                    EventName::SseEof,
                    EventMessage::Text("event stream ended"),
                ) {
                    event
                        .u64(keys::SSE_MESSAGES, messages)
                        .millis(keys::DURATION_MS, elapsed);
                }
            }
            ResponseKind::Json if !self.response.body.overflow => {
                let captured = std::mem::take(&mut self.response.body.bytes);
                let body = if whole.is_empty() {
                    &captured[..]
                } else {
                    whole
                };
                if let Ok(parsed) = jsonrpc::parse_body(body, env.config.max_batch_elements) {
                    for message in parsed.messages() {
                        self.on_response_message(message, None, env);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The session a legacy stream's `endpoint` event announces; its path is remembered for the
/// session's POSTs unless the configured suffix already recognises them.
fn learn_endpoint(data: &[u8], env: &mut Env) -> Option<Box<str>> {
    let endpoint = sse::endpoint_path(std::str::from_utf8(data).ok()?.trim())?;
    let session = query_session(endpoint)?;
    if !path_matches(endpoint, &env.config.sse_messages_path) {
        env.pending.learn_endpoint(session, path_only(endpoint));
    }
    Some(session.into())
}
