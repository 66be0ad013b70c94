//! The request phase: the head (instance, trace context, credential fingerprint, protocol
//! version), then the body, held until it is classified or copied while it flows, and the
//! moment the request is released upstream (breaker admission, `director.before`).

use super::common::{Common, Transport};
use super::elements::Elements;
use super::{
    begin, is_json_content_type, path_matches, path_only, query_session, Capture, Env, Exchange,
    LocalReply, RequestAction, RequestHead, RequestPhase, RequestState, ResponseKind,
    ResponseState, TraceState,
};
use crate::breaker::{self, Gate};
use crate::config::{HoldPolicy, InstanceSource, MissingInstancePolicy, ValidationPolicy};
use crate::events::{keys, EventName, Message};
use crate::instance::{self, InstanceInputs, Resolved};
use crate::jsonrpc::Id;
use crate::methods;
use crate::reply::{json_reply, jsonrpc_error};
use crate::trace::{TraceContext, TraceOrigin, TraceParent};
use crate::upstream::{StateKind, Transition};

impl Exchange {
    /// Starts an exchange from the request head. It is boxed where it is built: it is a few
    /// hundred bytes, kept for the stream's life, and every move of it is a copy.
    pub fn on_request_headers(head: &RequestHead, env: &mut Env) -> (Box<Exchange>, RequestAction) {
        let h = &head.headers;
        let (method, path) = (h.method, h.path);
        let incoming = h.traceparent.and_then(TraceParent::parse);
        let trace = TraceContext::continue_or_start(incoming, TraceOrigin::Header, env.ids);
        let legacy_post_session = legacy_post_session(method, path, env);
        let is_legacy_stream = method == "GET" && path_matches(path, "/sse");
        let transport = if legacy_post_session.is_some() || is_legacy_stream {
            Transport::Sse
        } else {
            Transport::StreamableHttp
        };
        let buffers = env.buffers.take();
        let mut common = Common::with_buffers(trace, method, path, transport, buffers.common);
        // A legacy session is named by the query of its message endpoint.
        if let Some(session) = h.session_id.or(legacy_post_session) {
            common.set_session_id(session);
        }
        if let Some(version) = h.protocol_version {
            common.set_protocol_version(version, true);
        }
        if let Some((index, value)) = h.credential {
            common.set_token(index, env.fingerprints.fingerprint(value));
        }
        let mut exchange = Box::new(Exchange {
            common,
            started: env.clock.now(),
            request: RequestState {
                phase: RequestPhase::Done,
                body: Capture::default(),
                content_type_ok: h.content_type.is_some_and(is_json_content_type),
                had_traceparent_header: incoming.is_some(),
                tracestate: if h.tracestate.is_some() && incoming.is_none() {
                    TraceState::Remove
                } else {
                    TraceState::Keep
                },
                meta_tracestate: None,
                header_method: h.mcp_method.map(Into::into),
                header_name: h.mcp_name.map(Into::into),
                header_mismatch: false,
                legacy_post_session: legacy_post_session.map(Into::into),
                reject_after_body: None,
            },
            elements: Elements::with_buffers(buffers.elements),
            response: ResponseState {
                status: None,
                kind: ResponseKind::Other,
                body: Capture::default(),
                complete: false,
                first_byte_at: None,
                stream: None,
                jsonrpc_error_seen: false,
                tool_error_seen: false,
            },
            endpoint_prefix: None,
            tracked: false,
            probe: None,
            rejected: false,
            ended: false,
            mirror: env.config.filter_state.then(|| {
                Box::new(super::Mirror {
                    dirty: true,
                    ..Default::default()
                })
            }),
        });
        if let Some(reply) = exchange.resolve_instance(head, is_legacy_stream, env) {
            return (exchange, RequestAction::Reject(reply));
        }
        exchange.report_unknown_protocol_version(env);
        let action = exchange.route_by_method(head.end_of_stream, env);
        (exchange, action)
    }

    fn resolve_instance(
        &mut self,
        head: &RequestHead,
        is_legacy_stream: bool,
        env: &mut Env,
    ) -> Option<LocalReply> {
        let config = &env.config.instance;
        let inputs = InstanceInputs {
            header: head.headers.instance,
            path: head.headers.path,
            route_name: head.route_name,
            cluster_name: head.cluster_name,
        };
        let (reason, offered) = match instance::resolve(config, &inputs) {
            Resolved::Known(id) => {
                if let InstanceSource::PathPrefix(prefix) = &config.source {
                    if is_legacy_stream {
                        self.endpoint_prefix =
                            Some(instance::instance_prefix(prefix, id).into_boxed_str());
                    }
                }
                self.common.set_instance(id);
                return None;
            }
            Resolved::Absent => ("absent", None),
            Resolved::NotAllowed(id) => ("not_allowed", Some(id)),
        };
        if let Some(mut event) = self.begin(
            env,
            EventName::InstanceMissing,
            Message::Text("MCP instance not resolved"),
        ) {
            event
                .label(keys::REASON, reason)
                .opt_str(keys::DETAIL, offered);
        }
        if env.config.instance.on_missing == MissingInstancePolicy::Reject {
            self.reject();
            return Some(json_reply(
                404,
                jsonrpc_error(None, -32001, "unknown MCP instance", None),
            ));
        }
        None
    }

    fn route_by_method(&mut self, end_of_stream: bool, env: &mut Env) -> RequestAction {
        let holds = if self.request.header_method.is_some() {
            // Classified from its headers: it waits only to have a mismatch refused.
            env.config.header_mismatch == ValidationPolicy::Reject
        } else {
            env.config.hold_request == HoldPolicy::Always
                || env.config.validation == ValidationPolicy::Reject
        };
        match self.common.http_method() {
            "POST" if !holds => self.forward_and_follow(end_of_stream, env),
            "POST" if end_of_stream => {
                self.request.phase = RequestPhase::Holding;
                match self.finish_request_body(&[], env) {
                    Some(reply) => RequestAction::Reject(reply),
                    None => RequestAction::Forward(self.trace_header()),
                }
            }
            "POST" => {
                self.request.phase = RequestPhase::Holding;
                RequestAction::Hold
            }
            other => {
                if !matches!(other, "GET" | "DELETE") {
                    let shown: String = other.chars().take(16).collect();
                    if let Some(mut event) = self.begin(
                        env,
                        EventName::AccessUnsupported,
                        Message::Text("HTTP method not used by MCP"),
                    ) {
                        event
                            .label(keys::REASON, "http_method")
                            .str(keys::DETAIL, &shown);
                    }
                }
                if let Some(mut event) =
                    self.begin(env, EventName::Request, Message::Text("request"))
                {
                    event.label(keys::CLASSIFIED_FROM, "headers");
                }
                match self.release(env) {
                    Some(reply) => RequestAction::Reject(reply),
                    None => RequestAction::Forward(self.trace_header()),
                }
            }
        }
    }

    /// A POST the policy lets go upstream before its body is seen (SEP-2243 headers, or the
    /// default `hold_request`): forwarded now, classified as its body passes. Should the
    /// breaker refuse it, it is held after all, for its id to go into the answer.
    fn forward_and_follow(&mut self, end_of_stream: bool, env: &mut Env) -> RequestAction {
        match self.gate(env) {
            Ok(()) => {
                self.request.phase = RequestPhase::Mirroring;
                if end_of_stream {
                    self.finish_request_body(&[], env);
                }
                RequestAction::Forward(self.trace_header())
            }
            Err(retry_after_secs) => {
                self.request.reject_after_body = Some(retry_after_secs);
                self.request.phase = RequestPhase::Holding;
                if !end_of_stream {
                    return RequestAction::Hold;
                }
                match self.finish_request_body(&[], env) {
                    Some(reply) => RequestAction::Reject(reply),
                    None => RequestAction::Forward(self.trace_header()),
                }
            }
        }
    }

    /// The `traceparent` to set upstream: this hop's span in the exchange's trace.
    pub(super) fn trace_header(&self) -> super::TraceHeaders {
        super::TraceHeaders {
            traceparent: self.common.trace().header_bytes(),
            tracestate: self.request.tracestate,
        }
    }

    /// The `tracestate` to set when the trace headers say [`TraceState::FromMeta`].
    pub fn meta_tracestate(&self) -> Option<&str> {
        self.request.meta_tracestate.as_deref()
    }

    /// Feeds a request body chunk (only the bytes not seen before).
    pub fn on_request_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        env: &mut Env,
    ) -> RequestAction {
        match self.request.phase {
            RequestPhase::Done => RequestAction::Continue,
            RequestPhase::Mirroring => {
                let whole = end_of_stream && self.request.body.total == 0;
                if whole && chunk.len() <= env.config.max_body_bytes {
                    // The whole body in one chunk: classify it where it is.
                    self.request.body.total = chunk.len();
                    self.finish_request_body(chunk, env);
                    return RequestAction::Continue;
                }
                self.request.body.push(chunk, env.config.max_body_bytes);
                if end_of_stream || self.request.body.overflow {
                    self.finish_request_body(&[], env);
                }
                RequestAction::Continue
            }
            RequestPhase::Holding => {
                let whole = end_of_stream && self.request.body.total == 0;
                if whole && chunk.len() <= env.config.max_body_bytes {
                    self.request.body.total = chunk.len();
                    return match self.finish_request_body(chunk, env) {
                        Some(reply) => RequestAction::Reject(reply),
                        None => RequestAction::Forward(self.trace_header()),
                    };
                }
                self.request.body.push(chunk, env.config.max_body_bytes);
                if !end_of_stream && !self.request.body.overflow {
                    return RequestAction::Hold;
                }
                match self.finish_request_body(&[], env) {
                    Some(reply) => RequestAction::Reject(reply),
                    None => RequestAction::Forward(self.trace_header()),
                }
            }
        }
    }

    /// Classifies the request from its body (`whole`, or what was captured when empty) or
    /// from its headers when the body is over the cap, applies the validation policy and
    /// emits `request`; when holding, releases it.
    fn finish_request_body(&mut self, whole: &[u8], env: &mut Env) -> Option<LocalReply> {
        let holding = self.request.phase == RequestPhase::Holding;
        self.request.phase = RequestPhase::Done;
        if self.request.body.overflow {
            self.classify_from_headers(env, false);
        } else {
            let body = std::mem::take(&mut self.request.body.bytes);
            let body = if whole.is_empty() { &body[..] } else { whole };
            if let Some(reply) = self.classify_body(body, holding, env) {
                return Some(reply);
            }
        }
        if let Some(retry_after_secs) = self.request.reject_after_body.take() {
            return Some(self.circuit_rejected(retry_after_secs, env));
        }
        if holding {
            if let Some(reply) = self.release(env) {
                return Some(reply);
            }
        }
        self.park_legacy(env);
        None
    }

    /// Answers an invalid request when the policy says so; emits what was wrong either way.
    pub(super) fn invalid_request(
        &mut self,
        invalid: crate::jsonrpc::Invalid,
        holding: bool,
        env: &mut Env,
    ) -> Option<LocalReply> {
        let body_bytes = self.request.body.total;
        let header_method = self.request.header_method.clone();
        if let Some(mut event) = self.begin(env, EventName::Request, Message::Text("request")) {
            event
                .label(keys::CLASSIFIED_FROM, "body")
                .bool(keys::BODY_INSPECTED, true)
                .u64(keys::BODY_BYTES, body_bytes as u64)
                .opt_str(keys::METHOD, header_method.as_deref());
        }
        let reject = holding && env.config.validation == crate::config::ValidationPolicy::Reject;
        self.validation_failed(invalid, reject, None, env);
        if !reject {
            return None;
        }
        self.reject();
        let text = match invalid {
            crate::jsonrpc::Invalid::InvalidJson => "Parse error",
            _ => "Invalid Request",
        };
        Some(json_reply(
            400,
            jsonrpc_error(
                None,
                invalid.jsonrpc_code(),
                &format!("{text}: {}", invalid.as_str()),
                None,
            ),
        ))
    }

    pub(super) fn validation_failed(
        &mut self,
        invalid: crate::jsonrpc::Invalid,
        rejected: bool,
        batch: Option<(usize, usize)>,
        env: &mut Env,
    ) {
        if let Some(mut event) = self.begin(
            env,
            EventName::RequestValidationFailed,
            Message::Text("request is not valid MCP JSON-RPC"),
        ) {
            event
                .label(keys::REASON, invalid.as_str())
                .label(keys::DETAIL, if rejected { "rejected" } else { "observed" });
            if let Some((size, index)) = batch {
                event
                    .u64(keys::BATCH_SIZE, size as u64)
                    .u64(keys::BATCH_INDEX, index as u64);
            }
        }
    }

    /// The request is about to go upstream: the breaker decides (a fast 503 while open).
    pub(super) fn release(&mut self, env: &mut Env) -> Option<LocalReply> {
        match self.gate(env) {
            Ok(()) => None,
            Err(retry_after_secs) => Some(self.circuit_rejected(retry_after_secs, env)),
        }
    }

    /// Breaker admission, then `director.before`; `Err(Retry-After)` when refused.
    fn gate(&mut self, env: &mut Env) -> Result<(), u64> {
        let gate = match (self.common.instance(), env.upstream.as_mut()) {
            (Some(instance), Some(upstream)) => upstream.admit(instance, env.clock.now()),
            _ => Gate::Untracked,
        };
        match gate {
            Gate::Untracked => {}
            Gate::Pass { probe, transition } => {
                self.tracked = true;
                self.probe = probe;
                self.emit_transition(env, transition);
            }
            Gate::Reject {
                retry_after_secs,
                transition,
            } => {
                self.emit_transition(env, transition);
                return Err(retry_after_secs);
            }
        }
        drop(self.begin(
            env,
            EventName::DirectorBefore,
            Message::Text("forwarding upstream"),
        ));
        Ok(())
    }

    fn circuit_rejected(&mut self, retry_after_secs: u64, env: &mut Env) -> LocalReply {
        let id = self.elements.id(0).and_then(Id::from_text);
        let id_json = id.map(|id| id.to_json().into_owned());
        let method = self.elements.method(0);
        if let Some(mut event) = begin(
            &mut self.common,
            env,
            EventName::CircuitRejected,
            Message::Text("upstream circuit open: answered locally"),
        ) {
            if let Some(id) = id {
                event.id(keys::REQUEST_ID, id);
            }
            if let Some(method) = method {
                event
                    .fragment(keys::METHOD.as_bytes())
                    .fragment(method.as_bytes());
            }
            event.u64(keys::RETRY_AFTER_SECS, retry_after_secs);
        }
        self.reject();
        breaker::open_circuit_reply(
            self.common.instance().unwrap_or_default(),
            id_json.as_deref(),
            retry_after_secs,
        )
    }

    pub(super) fn emit_transition(&mut self, env: &mut Env, transition: Option<Transition>) {
        let Some(transition) = transition else { return };
        if let (Some(upstream), Some(instance)) = (env.upstream.as_mut(), self.common.instance()) {
            upstream.note_state(instance, transition.to);
        }
        let name = match transition.to {
            StateKind::Open => EventName::CircuitOpened,
            StateKind::HalfOpen => EventName::CircuitHalfOpened,
            StateKind::Closed => EventName::CircuitClosed,
        };
        if let Some(mut event) =
            self.begin(env, name, Message::Text("upstream circuit changed state"))
        {
            event
                .label(keys::REASON, transition.reason.as_str())
                .serialized(keys::CIRCUIT, &transition);
        }
    }
}

impl Exchange {
    /// Reports the exchange's protocol version if this filter does not know it.
    pub(super) fn report_unknown_protocol_version(&mut self, env: &mut Env) {
        let unknown = match self.common.protocol_version() {
            Some(v) if !methods::is_known_protocol_version(v) => v.to_string(),
            _ => return,
        };
        if let Some(mut event) = self.begin(
            env,
            EventName::ProtocolUnsupported,
            Message::Text("unknown MCP protocol version"),
        ) {
            event
                .label(keys::REASON, "unknown_protocol_version")
                .str(keys::DETAIL, &unknown);
        }
    }
}

/// The session of a POST to a legacy message endpoint: a path the session's stream announced,
/// or (for a session not learned, e.g. evicted) one ending in `sse_messages_path`. Streamable
/// HTTP POSTs carry no session in their query, so they cost no shared-data read.
fn legacy_post_session<'p>(method: &str, path: &'p str, env: &Env) -> Option<&'p str> {
    if method != "POST" {
        return None;
    }
    let session = query_session(path)?;
    (path_matches(path, &env.config.sse_messages_path)
        || env.pending.is_endpoint(session, path_only(path)))
    .then_some(session)
}
