//! One HTTP exchange through the gateway, as a pure state machine: it takes the request and
//! response heads, body chunks and the stream's end, and returns what the glue must do
//! (forward, hold, reject, rewrite) while emitting the exchange's events. It owns instance
//! resolution, trace propagation, classification (headers first, body when it arrives),
//! validation policy, response matching by JSON-RPC id (JSON and SSE, incrementally) and the
//! accounting rule: every classified element ends with exactly one `response` event.

use crate::config::{Config, MissingInstancePolicy, ValidationPolicy};
use crate::events::{Common, Emitter, EventName, Fields};
use crate::instance::{self, InstanceInputs, Resolved};
use crate::jsonrpc::{self, Invalid, Kind, Message};
use crate::methods::{self, Target};
use crate::pending::{PendingRequest, SharedPending};
use crate::redact;
use crate::resilience::{self, Gate, UpstreamEnv};
use crate::sse::{self, EndpointRewrite, SseEvent, SseParser};
use crate::trace::{IdGenerator, TraceContext, TraceOrigin, TraceParent};
use crate::upstream::{ProbeTicket, StateKind, Transition};
use std::time::{Duration, SystemTime};

/// Everything an exchange needs from its VM for one callback.
pub struct Env<'a> {
    pub config: &'a Config,
    pub now: SystemTime,
    pub ids: &'a mut IdGenerator,
    pub emitter: &'a mut Emitter,
    /// Legacy HTTP+SSE requests waiting for their answer on another stream (all workers).
    pub pending: SharedPending<'a>,
    /// Upstream health and breaker, when configured.
    pub upstream: Option<UpstreamEnv<'a>>,
}

/// The request head as Envoy gives it: lower-case names, pseudo headers included.
pub struct RequestHead<'a> {
    pub headers: &'a [(String, String)],
    pub route_name: Option<&'a str>,
    pub cluster_name: Option<&'a str>,
    pub end_of_stream: bool,
}

/// A reply the gateway sends itself, without touching the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAction {
    /// Forward the headers now, after setting these.
    Continue(Vec<(String, String)>),
    /// Hold the headers; the body decides.
    Hold,
    Reject(LocalReply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBodyAction {
    Continue,
    /// Keep buffering (only while looking for the legacy `endpoint` event).
    Buffer,
    /// Replace everything buffered so far with these bytes, then continue.
    Replace(Vec<u8>),
}

/// How the stream ended, from Envoy's stream info.
#[derive(Debug, Clone, Default)]
pub struct StreamEnd<'a> {
    pub code_details: Option<&'a str>,
    pub response_code: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestPhase {
    /// Headers held; buffering the body until classification.
    Holding,
    /// Headers forwarded (classified from SEP-2243 headers); copying the body to check it.
    Mirroring,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseKind {
    Json,
    EventStream,
    Other,
}

/// A bounded copy of a body.
#[derive(Debug, Default)]
struct Capture {
    bytes: Vec<u8>,
    total: usize,
    overflow: bool,
}

impl Capture {
    fn push(&mut self, chunk: &[u8], cap: usize) {
        self.total += chunk.len();
        if self.overflow {
            return;
        }
        if self.bytes.len() + chunk.len() > cap {
            self.overflow = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(chunk);
        }
    }
}

/// One element to account for: a JSON-RPC message of the request (or the request itself when
/// its body could not be classified).
#[derive(Debug)]
struct Element {
    fields: Fields,
    id: Option<String>,
    expects_response: bool,
    answered: bool,
}

pub struct Exchange {
    common: Common,
    trace: TraceParent,
    started: SystemTime,
    had_traceparent_header: bool,
    phase: RequestPhase,
    content_type_ok: bool,
    header_method: Option<String>,
    header_name: Option<String>,
    request_body: Capture,
    elements: Vec<Element>,
    rejected: bool,
    legacy_post_session: Option<String>,
    legacy_stream_session: Option<String>,
    endpoint_prefix: Option<String>,
    response_status: Option<u32>,
    response_kind: ResponseKind,
    response_body: Capture,
    response_complete: bool,
    sse: Option<SseParser>,
    sse_messages: u64,
    rewrite_head: Option<Vec<u8>>,
    ended: bool,
    /// Admitted against a shared upstream record: the outcome is recorded at the end.
    tracked: bool,
    probe: Option<ProbeTicket>,
    first_byte_at: Option<SystemTime>,
    jsonrpc_error_seen: bool,
    tool_error_seen: bool,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn millis(from: SystemTime, to: SystemTime) -> f64 {
    let d = to.duration_since(from).unwrap_or(Duration::ZERO);
    (d.as_micros() as f64) / 1000.0
}

fn jsonrpc_error_body(code: i64, message: &str) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}})
        .to_string()
}

fn json_reply(status: u32, body: String) -> LocalReply {
    LocalReply {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    }
}

/// `sessionId` (or `session_id`) query parameter of a legacy transport path.
fn query_session(path: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        matches!(k, "sessionId" | "session_id").then(|| v.to_string())
    })
}

impl Exchange {
    /// Starts an exchange from the request head.
    pub fn on_request_headers(head: &RequestHead, env: &mut Env) -> (Exchange, RequestAction) {
        let h = |name| header(head.headers, name);
        let method = h(":method").unwrap_or("").to_string();
        let path = h(":path").unwrap_or("").to_string();
        let incoming = h("traceparent").and_then(TraceParent::parse);
        let trace = TraceContext::continue_or_start(incoming, TraceOrigin::Header, env.ids);
        let legacy_post_session = (method == "POST"
            && path_matches(&path, &env.config.sse_messages_path))
        .then(|| query_session(&path))
        .flatten();
        let is_legacy_stream = method == "GET" && path_matches(&path, "/sse");
        let mut exchange = Exchange {
            trace: trace.current,
            common: Common {
                trace_id: trace.current.trace_id_hex(),
                span_id: trace.current.span_id_hex(),
                parent_span_id: trace.parent_span_id.clone(),
                trace_origin: trace.origin.as_str(),
                instance_id: None,
                http_method: method.clone(),
                path: path.split('?').next().unwrap_or("").to_string(),
                transport: if legacy_post_session.is_some() || is_legacy_stream {
                    "sse"
                } else {
                    "streamable_http"
                },
                session_id: h("mcp-session-id").map(str::to_string),
                protocol_version: h("mcp-protocol-version").map(str::to_string),
                token_header: None,
                token: None,
            },
            started: env.now,
            had_traceparent_header: incoming.is_some(),
            phase: RequestPhase::Done,
            content_type_ok: h("content-type").is_some_and(is_json_content_type),
            header_method: h("mcp-method").map(str::to_string),
            header_name: h("mcp-name").map(str::to_string),
            request_body: Capture::default(),
            elements: Vec::new(),
            rejected: false,
            legacy_post_session,
            legacy_stream_session: None,
            endpoint_prefix: None,
            response_status: None,
            response_kind: ResponseKind::Other,
            response_body: Capture::default(),
            response_complete: false,
            sse: None,
            sse_messages: 0,
            rewrite_head: None,
            ended: false,
            tracked: false,
            probe: None,
            first_byte_at: None,
            jsonrpc_error_seen: false,
            tool_error_seen: false,
        };
        exchange.fingerprint_credentials(head.headers, env.config);
        if let Some(reply) = exchange.resolve_instance(head, &path, is_legacy_stream, env) {
            return (exchange, RequestAction::Reject(reply));
        }
        exchange.check_protocol_version(env);
        let action = exchange.route_by_method(head.end_of_stream, env);
        (exchange, action)
    }

    fn fingerprint_credentials(&mut self, headers: &[(String, String)], config: &Config) {
        let found = config
            .credential_headers
            .iter()
            .find_map(|name| header(headers, name).map(|value| (name, value)));
        if let Some((name, value)) = found {
            self.common.token_header = Some(name.clone());
            self.common.token = Some(redact::fingerprint(value, &config.fingerprint_salt));
        }
    }

    fn resolve_instance(
        &mut self,
        head: &RequestHead,
        path: &str,
        is_legacy_stream: bool,
        env: &mut Env,
    ) -> Option<LocalReply> {
        let config = &env.config.instance;
        let header_value = match &config.source {
            crate::config::InstanceSource::Header(name) => header(head.headers, name),
            _ => None,
        };
        let inputs = InstanceInputs {
            header: header_value,
            path,
            route_name: head.route_name,
            cluster_name: head.cluster_name,
        };
        let (reason, offered) = match instance::resolve(config, &inputs) {
            Resolved::Known(id) => {
                if let crate::config::InstanceSource::PathPrefix(prefix) = &config.source {
                    if is_legacy_stream {
                        self.endpoint_prefix = Some(instance::instance_prefix(prefix, &id));
                    }
                }
                self.common.instance_id = Some(id);
                return None;
            }
            Resolved::Absent => ("absent", None),
            Resolved::NotAllowed(id) => ("not_allowed", Some(id)),
        };
        let fields = Fields {
            reason: Some(reason),
            detail: offered,
            ..Fields::default()
        };
        self.emit(
            env,
            EventName::InstanceMissing,
            "MCP instance not resolved",
            &fields,
        );
        if config.on_missing == MissingInstancePolicy::Reject {
            self.reject();
            return Some(json_reply(
                404,
                jsonrpc_error_body(-32001, "unknown MCP instance"),
            ));
        }
        None
    }

    fn check_protocol_version(&mut self, env: &mut Env) {
        let Some(version) = self.common.protocol_version.clone() else {
            return;
        };
        if !methods::is_known_protocol_version(&version) {
            let fields = Fields {
                reason: Some("unknown_protocol_version"),
                detail: Some(version),
                ..Fields::default()
            };
            self.emit(
                env,
                EventName::ProtocolUnsupported,
                "unknown MCP protocol version",
                &fields,
            );
        }
    }

    fn route_by_method(&mut self, end_of_stream: bool, env: &mut Env) -> RequestAction {
        match self.common.http_method.as_str() {
            "POST" if self.header_method.is_some() => {
                if let Some(reply) = self.release(env) {
                    return RequestAction::Reject(reply);
                }
                self.phase = RequestPhase::Mirroring;
                if end_of_stream {
                    self.finish_request_body(env);
                }
                RequestAction::Continue(self.upstream_headers())
            }
            "POST" if end_of_stream => {
                self.phase = RequestPhase::Holding;
                match self.finish_request_body(env) {
                    Some(reply) => RequestAction::Reject(reply),
                    None => RequestAction::Continue(self.upstream_headers()),
                }
            }
            "POST" => {
                self.phase = RequestPhase::Holding;
                RequestAction::Hold
            }
            other => {
                if !matches!(other, "GET" | "DELETE") {
                    let fields = Fields {
                        reason: Some("http_method"),
                        detail: Some(other.chars().take(16).collect()),
                        ..Fields::default()
                    };
                    self.emit(
                        env,
                        EventName::AccessUnsupported,
                        "HTTP method not used by MCP",
                        &fields,
                    );
                }
                let fields = Fields {
                    classified_from: Some("headers"),
                    ..Fields::default()
                };
                self.emit(env, EventName::Request, "request", &fields);
                match self.release(env) {
                    Some(reply) => RequestAction::Reject(reply),
                    None => RequestAction::Continue(self.upstream_headers()),
                }
            }
        }
    }

    /// Request headers to set upstream: the propagated trace context.
    fn upstream_headers(&self) -> Vec<(String, String)> {
        vec![("traceparent".to_string(), self.trace.header_value())]
    }

    /// Feeds a request body chunk (only the bytes not seen before).
    pub fn on_request_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        env: &mut Env,
    ) -> RequestAction {
        match self.phase {
            RequestPhase::Done => RequestAction::Continue(Vec::new()),
            RequestPhase::Mirroring => {
                self.request_body.push(chunk, env.config.max_body_bytes);
                if end_of_stream || self.request_body.overflow {
                    self.finish_request_body(env);
                }
                RequestAction::Continue(Vec::new())
            }
            RequestPhase::Holding => {
                self.request_body.push(chunk, env.config.max_body_bytes);
                if !end_of_stream && !self.request_body.overflow {
                    return RequestAction::Hold;
                }
                match self.finish_request_body(env) {
                    Some(reply) => RequestAction::Reject(reply),
                    None => RequestAction::Continue(self.upstream_headers()),
                }
            }
        }
    }

    /// Classifies the request from its body (or from its headers when the body is too large),
    /// applies the validation policy and emits `request` (+ `director.before` when holding).
    fn finish_request_body(&mut self, env: &mut Env) -> Option<LocalReply> {
        let holding = self.phase == RequestPhase::Holding;
        self.phase = RequestPhase::Done;
        if self.request_body.overflow {
            self.classify_from_headers(env, false);
        } else {
            let parsed = if self.content_type_ok || self.header_method.is_some() {
                jsonrpc::parse_body(&self.request_body.bytes, env.config.max_batch_elements)
            } else {
                Err(Invalid::WrongContentType)
            };
            match parsed {
                Ok(parsed) => self.classify_from_body(parsed, holding, env),
                Err(invalid) => {
                    if let Some(reply) = self.invalid_request(invalid, holding, env) {
                        return Some(reply);
                    }
                }
            }
        }
        if holding {
            return self.release(env);
        }
        None
    }

    fn classify_from_headers(&mut self, env: &mut Env, inspected: bool) {
        let method = self.header_method.clone();
        let mut fields = Fields {
            method: method.clone(),
            classified_from: Some("headers"),
            body_inspected: Some(inspected),
            body_bytes: Some(self.request_body.total),
            reason: (!inspected).then_some("body_over_cap"),
            ..Fields::default()
        };
        let target = method
            .as_deref()
            .and_then(methods::lookup)
            .map(|m| m.target);
        set_target(
            &mut fields,
            target.unwrap_or(Target::None),
            self.header_name.clone(),
            None,
        );
        self.elements.push(Element {
            fields: fields.clone(),
            id: None,
            expects_response: true,
            answered: false,
        });
        self.emit(env, EventName::Request, "request", &fields);
    }

    fn classify_from_body(&mut self, parsed: jsonrpc::Parsed, holding: bool, env: &mut Env) {
        let batch_size = parsed
            .batch
            .then(|| parsed.messages.len() + parsed.not_itemised);
        if let Some(first) = parsed.messages.first() {
            self.adopt_meta(first, holding, env);
        }
        if !parsed.batch {
            if let Some(first) = parsed.messages.first() {
                self.check_header_mismatch(first, env);
            }
        }
        for (index, message) in parsed.messages.iter().enumerate() {
            let mut fields = message_fields(message, env.config);
            fields.batch_size = batch_size;
            fields.batch_index = batch_size.map(|_| index);
            fields.classified_from = Some("body");
            fields.body_inspected = Some(true);
            self.emit(env, EventName::Request, &summary(message), &fields);
            self.elements.push(Element {
                id: message.id.clone(),
                expects_response: message.expects_response(),
                answered: false,
                fields,
            });
        }
    }

    /// Takes the protocol version and SEP-414 trace context a message carries.
    fn adopt_meta(&mut self, message: &Message, holding: bool, env: &mut Env) {
        if self.common.protocol_version.is_none() {
            if let Some(v) = &message.protocol_version {
                self.common.protocol_version = Some(v.clone());
                self.check_protocol_version(env);
            }
        }
        // `_meta.traceparent` can only become the parent while the headers are still held.
        if self.had_traceparent_header || !holding {
            return;
        }
        let Some(parent) = message
            .meta_traceparent
            .as_deref()
            .and_then(TraceParent::parse)
        else {
            return;
        };
        let trace = TraceContext::continue_or_start(Some(parent), TraceOrigin::Meta, env.ids);
        self.trace = trace.current;
        self.common.trace_id = trace.current.trace_id_hex();
        self.common.span_id = trace.current.span_id_hex();
        self.common.parent_span_id = trace.parent_span_id;
        self.common.trace_origin = trace.origin.as_str();
    }

    fn check_header_mismatch(&mut self, message: &Message, env: &mut Env) {
        let Some(header_method) = self.header_method.clone() else {
            return;
        };
        let method_differs = message.method.as_deref() != Some(header_method.as_str());
        let name_differs = self
            .header_name
            .as_deref()
            .is_some_and(|name| message.target_name() != Some(name));
        if !method_differs && !name_differs {
            return;
        }
        let mut fields = message_fields(message, env.config);
        fields.arguments = None;
        fields.header_method = Some(header_method);
        fields.header_name = self.header_name.clone();
        fields.reason = Some(if method_differs { "method" } else { "name" });
        self.emit(
            env,
            EventName::HeaderBodyMismatch,
            "Mcp-Method/Mcp-Name disagree with the body",
            &fields,
        );
    }

    fn invalid_request(
        &mut self,
        invalid: Invalid,
        holding: bool,
        env: &mut Env,
    ) -> Option<LocalReply> {
        let fields = Fields {
            classified_from: Some("body"),
            body_inspected: Some(true),
            body_bytes: Some(self.request_body.total),
            method: self.header_method.clone(),
            ..Fields::default()
        };
        self.emit(env, EventName::Request, "request", &fields);
        let reject = holding && env.config.validation == ValidationPolicy::Reject;
        let detail = Fields {
            reason: Some(invalid.as_str()),
            detail: Some(if reject { "rejected" } else { "observed" }.to_string()),
            ..Fields::default()
        };
        self.emit(
            env,
            EventName::RequestValidationFailed,
            "request is not valid MCP JSON-RPC",
            &detail,
        );
        if !reject {
            return None;
        }
        self.reject();
        let message = match invalid {
            Invalid::InvalidJson => "Parse error",
            _ => "Invalid Request",
        };
        Some(json_reply(
            400,
            jsonrpc_error_body(
                invalid.jsonrpc_code(),
                &format!("{message}: {}", invalid.as_str()),
            ),
        ))
    }

    fn reject(&mut self) {
        self.rejected = true;
        self.phase = RequestPhase::Done;
    }

    /// The request is about to go upstream: the breaker decides (a fast 503 while open),
    /// then `director.before`.
    fn release(&mut self, env: &mut Env) -> Option<LocalReply> {
        let instance = self.common.instance_id.clone()?;
        let gate = match env.upstream.as_mut() {
            Some(upstream) => upstream.admit(&instance, env.now),
            None => Gate::Untracked,
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
                let request_id = self.elements.first().and_then(|e| e.id.clone());
                let fields = Fields {
                    request_id: request_id.clone(),
                    method: self.elements.first().and_then(|e| e.fields.method.clone()),
                    retry_after_secs: Some(retry_after_secs),
                    ..Fields::default()
                };
                self.emit(
                    env,
                    EventName::CircuitRejected,
                    "upstream circuit open: answered locally",
                    &fields,
                );
                self.reject();
                return Some(resilience::open_circuit_reply(
                    &instance,
                    request_id.as_deref(),
                    retry_after_secs,
                ));
            }
        }
        self.emit_director_before(env);
        None
    }

    fn emit_transition(&self, env: &mut Env, transition: Option<Transition>) {
        let Some(transition) = transition else { return };
        if let Some(upstream) = env.upstream.as_mut() {
            upstream.note_state(
                self.common.instance_id.as_deref().unwrap_or(""),
                transition.to,
            );
        }
        let name = match transition.to {
            StateKind::Open => EventName::CircuitOpened,
            StateKind::HalfOpen => EventName::CircuitHalfOpened,
            StateKind::Closed => EventName::CircuitClosed,
        };
        let fields = Fields {
            reason: Some(transition.reason.as_str()),
            circuit: Some(transition),
            ..Fields::default()
        };
        self.emit(env, name, "upstream circuit changed state", &fields);
    }

    /// Reports the finished call to the upstream's shared record.
    fn record_call(&mut self, end: &StreamEnd, env: &mut Env) {
        if !self.tracked {
            return;
        }
        let Some(outcome) = resilience::classify_call(
            end.code_details.unwrap_or(""),
            self.response_status,
            self.jsonrpc_error_seen,
            self.tool_error_seen,
        ) else {
            return;
        };
        // A stream's call is its opening: time to the response headers.
        let finished = match self.common.http_method.as_str() {
            "GET" => self.first_byte_at.unwrap_or(env.now),
            _ => env.now,
        };
        let result = resilience::call_result(outcome, self.started, finished, self.probe.take());
        let instance = self.common.instance_id.clone().unwrap_or_default();
        let transition = env
            .upstream
            .as_mut()
            .and_then(|upstream| upstream.record(&instance, env.now, &result));
        self.emit_transition(env, transition);
    }

    fn emit_director_before(&self, env: &mut Env) {
        self.emit(
            env,
            EventName::DirectorBefore,
            "forwarding upstream",
            &Fields::default(),
        );
    }

    /// Response headers; returns the headers to add for the client.
    pub fn on_response_headers(
        &mut self,
        headers: &[(String, String)],
        end_of_stream: bool,
        env: &mut Env,
    ) -> Vec<(String, String)> {
        let status = header(headers, ":status").and_then(|s| s.parse().ok());
        self.response_status = status;
        self.first_byte_at = Some(env.now);
        let trace_header = env
            .config
            .trace_response_header
            .as_ref()
            .map(|name| vec![(name.clone(), self.common.trace_id.clone())])
            .unwrap_or_default();
        if self.rejected {
            return trace_header;
        }
        if self.common.session_id.is_none() {
            self.common.session_id = header(headers, "mcp-session-id").map(str::to_string);
        }
        let content_type = header(headers, "content-type").unwrap_or("");
        self.response_kind = if content_type.starts_with("text/event-stream") {
            ResponseKind::EventStream
        } else if is_json_content_type(content_type) {
            ResponseKind::Json
        } else {
            ResponseKind::Other
        };
        let fields = Fields {
            http_status: status,
            duration_ms: Some(millis(self.started, env.now)),
            ..Fields::default()
        };
        self.emit(env, EventName::DirectorAfter, "upstream answered", &fields);
        if self.response_kind == ResponseKind::EventStream {
            self.sse = Some(SseParser::new(env.config.max_body_bytes));
            if self.endpoint_prefix.is_some() {
                self.rewrite_head = Some(Vec::new());
            }
            self.emit(
                env,
                EventName::SseStart,
                "event stream started",
                &Fields {
                    http_status: status,
                    ..Fields::default()
                },
            );
        }
        if end_of_stream {
            self.on_response_body(&[], true, env);
        }
        trace_header
    }

    /// Feeds a response body chunk (only bytes not seen before).
    pub fn on_response_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        env: &mut Env,
    ) -> ResponseBodyAction {
        if self.rejected || self.response_complete {
            return ResponseBodyAction::Continue;
        }
        let mut action = ResponseBodyAction::Continue;
        match self.response_kind {
            ResponseKind::EventStream => {
                if let Some(head) = self.rewrite_head.as_mut() {
                    head.extend_from_slice(chunk);
                    action = self.try_endpoint_rewrite(end_of_stream, env);
                    if action == ResponseBodyAction::Buffer {
                        return action;
                    }
                } else {
                    self.feed_sse(chunk, env);
                }
            }
            _ => self.response_body.push(chunk, env.config.max_body_bytes),
        }
        if end_of_stream {
            self.response_complete = true;
            self.finish_response(env);
        }
        action
    }

    fn try_endpoint_rewrite(&mut self, end_of_stream: bool, env: &mut Env) -> ResponseBodyAction {
        let head = self.rewrite_head.take().unwrap_or_default();
        let prefix = self.endpoint_prefix.clone().unwrap_or_default();
        let over_cap = head.len() > env.config.max_body_bytes;
        let (action, stream) = match sse::rewrite_endpoint(&head, &prefix) {
            EndpointRewrite::NeedMore if !end_of_stream && !over_cap => {
                self.rewrite_head = Some(head);
                return ResponseBodyAction::Buffer;
            }
            EndpointRewrite::Rewritten { stream, old, new } => {
                let fields = Fields {
                    detail: Some(format!("{old} -> {new}")),
                    ..Fields::default()
                };
                self.emit(
                    env,
                    EventName::SseEndpointRewrite,
                    "legacy SSE endpoint rewritten",
                    &fields,
                );
                (ResponseBodyAction::Replace(stream.clone()), stream)
            }
            EndpointRewrite::Unparsable(endpoint) => {
                let fields = Fields {
                    detail: Some(endpoint.chars().take(256).collect()),
                    ..Fields::default()
                };
                self.emit(
                    env,
                    EventName::UpstreamUrlParseFailed,
                    "legacy SSE endpoint is not a URL",
                    &fields,
                );
                (ResponseBodyAction::Continue, head)
            }
            EndpointRewrite::NeedMore | EndpointRewrite::NotEndpoint => {
                (ResponseBodyAction::Continue, head)
            }
        };
        self.feed_sse(&stream, env);
        action
    }

    fn feed_sse(&mut self, chunk: &[u8], env: &mut Env) {
        let mut events = Vec::new();
        if let Some(parser) = self.sse.as_mut() {
            parser.feed(chunk, &mut events);
        }
        for event in events {
            self.on_sse_event(event, env);
        }
    }

    fn on_sse_event(&mut self, event: SseEvent, env: &mut Env) {
        self.sse_messages += 1;
        if event.event == "endpoint" {
            self.legacy_stream_session = query_session(event.data.trim());
            return;
        }
        if event.truncated || event.event != "message" {
            return;
        }
        if let Ok(message) = jsonrpc::parse_message(event.data.as_bytes()) {
            self.on_response_message(&message, env);
        }
    }

    /// Matches a JSON-RPC response to the element (or the legacy pending request) it answers.
    fn on_response_message(&mut self, message: &Message, env: &mut Env) {
        if !matches!(message.kind, Some(Kind::Response | Kind::Error)) {
            return;
        }
        if let Some(index) = self.unanswered_element(message.id.as_deref()) {
            let element = &mut self.elements[index];
            element.answered = true;
            let mut fields = element.fields.clone();
            fields.arguments = None;
            fields.arguments_truncated = None;
            apply_outcome(&mut fields, message);
            self.jsonrpc_error_seen |= message.kind == Some(Kind::Error);
            self.tool_error_seen |= message.is_error;
            fields.http_status = self.response_status;
            fields.duration_ms = Some(millis(self.started, env.now));
            if self.common.protocol_version.is_none() {
                self.common.protocol_version = message.protocol_version.clone();
            }
            self.emit(env, EventName::Response, outcome_message(&fields), &fields);
            return;
        }
        self.answer_legacy_pending(message, env);
    }

    fn unanswered_element(&self, id: Option<&str>) -> Option<usize> {
        let by_id = self.elements.iter().position(|e| {
            !e.answered && e.expects_response && e.id.is_some() && e.id.as_deref() == id
        });
        // A request classified from headers alone has no id; a single response answers it.
        by_id.or_else(|| {
            let unknown: Vec<usize> = (0..self.elements.len())
                .filter(|&i| {
                    !self.elements[i].answered
                        && self.elements[i].id.is_none()
                        && self.elements[i].expects_response
                })
                .collect();
            (unknown.len() == 1 && self.elements.len() == 1).then(|| unknown[0])
        })
    }

    fn answer_legacy_pending(&mut self, message: &Message, env: &mut Env) {
        let (Some(session), Some(id)) = (&self.legacy_stream_session, &message.id) else {
            return;
        };
        let Some(pending) = env.pending.take(session, id) else {
            return;
        };
        let mut fields = pending.fields;
        apply_outcome(&mut fields, message);
        fields.http_status = Some(200);
        fields.duration_ms = Some(millis(pending.started, env.now));
        env.emitter.emit(
            env.now,
            EventName::Response,
            outcome_message(&fields),
            &pending.common,
            &fields,
        );
    }

    fn finish_response(&mut self, env: &mut Env) {
        match self.response_kind {
            ResponseKind::EventStream => {
                let fields = Fields {
                    sse_messages: Some(self.sse_messages),
                    duration_ms: Some(millis(self.started, env.now)),
                    ..Fields::default()
                };
                self.emit(env, EventName::SseEof, "event stream ended", &fields);
            }
            ResponseKind::Json if !self.response_body.overflow => {
                let body = std::mem::take(&mut self.response_body.bytes);
                if let Ok(parsed) = jsonrpc::parse_body(&body, env.config.max_batch_elements) {
                    for message in &parsed.messages {
                        self.on_response_message(message, env);
                    }
                }
            }
            _ => {}
        }
        self.park_legacy_requests(env);
    }

    /// Legacy HTTP+SSE: a POST answered 202 gets its responses on the GET stream.
    fn park_legacy_requests(&mut self, env: &mut Env) {
        let Some(session) = self.legacy_post_session.clone() else {
            return;
        };
        if self.response_status != Some(202) {
            return;
        }
        for element in self
            .elements
            .iter_mut()
            .filter(|e| e.expects_response && !e.answered)
        {
            let Some(id) = element.id.clone() else {
                continue;
            };
            element.answered = true;
            let mut fields = element.fields.clone();
            fields.arguments = None;
            fields.arguments_truncated = None;
            env.pending.park(
                &session,
                &id,
                PendingRequest {
                    common: self.common.clone(),
                    fields,
                    started: self.started,
                },
            );
        }
    }

    /// The stream is over (Envoy's on_log): failure events, and a `response` for every element
    /// not answered yet (or for the exchange itself when it had none).
    pub fn on_stream_end(&mut self, end: &StreamEnd, env: &mut Env) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.response_status.is_none() {
            self.response_status = end.response_code;
        }
        let failure = self.classify_end(end, env);
        self.record_call(end, env);
        let outcome = self.fallback_outcome(failure);
        let status = self.response_status;
        if self.elements.is_empty() {
            let fields = Fields {
                http_status: status,
                outcome: Some(outcome),
                error_type: error_type_for(outcome, status),
                duration_ms: Some(millis(self.started, env.now)),
                ..Fields::default()
            };
            self.emit(env, EventName::Response, outcome, &fields);
            return;
        }
        let mut finished = Vec::new();
        for element in self.elements.iter_mut().filter(|e| !e.answered) {
            element.answered = true;
            let mut fields = element.fields.clone();
            fields.arguments = None;
            fields.arguments_truncated = None;
            let element_outcome = if !element.expects_response && outcome == "no_response" {
                "accepted"
            } else {
                outcome
            };
            fields.outcome = Some(element_outcome);
            fields.error_type = error_type_for(element_outcome, status);
            fields.http_status = status;
            fields.duration_ms = Some(millis(self.started, env.now));
            finished.push(fields);
        }
        for fields in finished {
            self.emit(
                env,
                EventName::Response,
                fields.outcome.unwrap_or(""),
                &fields,
            );
        }
    }

    /// Emits failure events for an abnormal end; returns the failure kind.
    fn classify_end(&mut self, end: &StreamEnd, env: &mut Env) -> Option<&'static str> {
        if self.rejected {
            return Some("rejected");
        }
        let details = end.code_details.unwrap_or("");
        let fields = Fields {
            http_status: self.response_status,
            code_details: end.code_details.map(str::to_string),
            duration_ms: Some(millis(self.started, env.now)),
            sse_messages: (self.response_kind == ResponseKind::EventStream)
                .then_some(self.sse_messages),
            ..Fields::default()
        };
        let downstream_gone = details.contains("downstream_remote_disconnect")
            || details.contains("downstream_local_disconnect");
        if downstream_gone && !self.response_complete {
            // Closing an event stream is how clients end it; only other responses are cut short.
            if self.response_kind == ResponseKind::EventStream {
                self.emit(
                    env,
                    EventName::SseCancel,
                    "client closed the event stream",
                    &fields,
                );
                return Some("client_closed");
            }
            self.emit(
                env,
                EventName::ClientCanceled,
                "client went away before the response",
                &fields,
            );
            return Some("canceled");
        }
        // Once a response has started, any end but its own is a broken upstream stream.
        if self.response_status.is_some() && !self.response_complete {
            self.emit(
                env,
                EventName::UpstreamConnectionInterrupted,
                "upstream stream broke mid-response",
                &fields,
            );
            return Some("upstream_interrupted");
        }
        let envoy_upstream_failure = details.starts_with("upstream_reset_before_response_started")
            || details.contains("no_healthy_upstream")
            || details.contains("upstream_response_timeout")
            || details.contains("cluster_not_found");
        if envoy_upstream_failure || self.response_status.is_some_and(|s| s >= 500) {
            self.emit(env, EventName::UpstreamError, "upstream failed", &fields);
            return Some("upstream_error");
        }
        None
    }

    fn fallback_outcome(&self, failure: Option<&'static str>) -> &'static str {
        if let Some(failure) = failure {
            return failure;
        }
        match self.response_status {
            Some(s) if s >= 400 => "http_error",
            _ if self.response_body.overflow => "not_inspected",
            Some(_) if self.elements.is_empty() => "ok",
            _ => "no_response",
        }
    }

    fn emit(&self, env: &mut Env, name: EventName, message: &str, fields: &Fields) {
        env.emitter
            .emit(env.now, name, message, &self.common, fields);
    }

    /// Classification mirrored into Envoy filter state (for access logs and RBAC).
    pub fn filter_state(&self) -> Vec<(&'static str, String)> {
        let mut state = vec![("mcp_trace_id", self.common.trace_id.clone())];
        let push = |state: &mut Vec<(&'static str, String)>, key, value: &Option<String>| {
            if let Some(v) = value {
                state.push((key, v.clone()));
            }
        };
        push(&mut state, "mcp_instance", &self.common.instance_id);
        push(&mut state, "mcp_session_id", &self.common.session_id);
        if let Some(first) = self.elements.first() {
            push(&mut state, "mcp_method", &first.fields.method);
            push(&mut state, "mcp_tool", &first.fields.tool_name);
            push(&mut state, "mcp_request_id", &first.fields.request_id);
        }
        state
    }

    pub fn trace_id(&self) -> &str {
        &self.common.trace_id
    }

    /// Whether request body bytes are still needed (classification not finished).
    pub fn wants_request_body(&self) -> bool {
        self.phase != RequestPhase::Done
    }

    /// Whether response body bytes are needed; when not, only the end of stream matters.
    pub fn wants_response_bytes(&self) -> bool {
        let useful = match self.response_kind {
            ResponseKind::EventStream => true,
            ResponseKind::Json => !self.response_body.overflow,
            ResponseKind::Other => false,
        };
        useful && !self.rejected && !self.response_complete
    }

    /// A host call failed inside the filter; the stream continues untouched.
    pub fn report_internal_error(&self, env: &mut Env, what: &'static str) {
        let fields = Fields {
            reason: Some(what),
            ..Fields::default()
        };
        self.emit(
            env,
            EventName::PanicRecovered,
            "internal error caught; request passed through",
            &fields,
        );
    }
}

fn path_matches(path: &str, suffix: &str) -> bool {
    path.split('?').next().is_some_and(|p| p.ends_with(suffix))
}

fn is_json_content_type(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
}

fn set_target(fields: &mut Fields, target: Target, name: Option<String>, uri: Option<String>) {
    match target {
        Target::Tool => fields.tool_name = name,
        Target::Prompt => fields.prompt_name = name,
        Target::Resource => fields.resource_uri = name.or(uri),
        Target::Reference => {
            fields.prompt_name = name;
            fields.resource_uri = uri;
        }
        Target::None => {}
    }
}

fn message_fields(message: &Message, config: &Config) -> Fields {
    let mut fields = Fields {
        method: message.method.clone(),
        message_kind: Some(message.kind_str()),
        request_id: message.id.clone(),
        known_method: message.method.as_ref().map(|_| message.known_method),
        ..Fields::default()
    };
    let target = message
        .method
        .as_deref()
        .and_then(methods::lookup)
        .map(|m| m.target)
        .unwrap_or(Target::None);
    set_target(
        &mut fields,
        target,
        message.name.clone(),
        message.resource_uri.clone(),
    );
    if let Some((captured, truncated)) = message
        .arguments
        .as_deref()
        .and_then(|raw| redact::capture_arguments(raw, &config.arguments))
    {
        fields.arguments = Some(captured);
        fields.arguments_truncated = Some(truncated);
    }
    fields
}

fn summary(message: &Message) -> String {
    match (&message.method, message.target_name()) {
        (Some(m), Some(t)) => format!("{m} {t}"),
        (Some(m), None) => m.clone(),
        (None, _) => message.kind_str().to_string(),
    }
}

fn apply_outcome(fields: &mut Fields, message: &Message) {
    if let Some(code) = message.error_code {
        fields.outcome = Some("jsonrpc_error");
        fields.rpc_status = Some(code.to_string());
        fields.error_type = Some(code.to_string());
    } else if message.kind == Some(Kind::Error) {
        fields.outcome = Some("jsonrpc_error");
        fields.error_type = Some("_OTHER".to_string());
    } else if message.is_error {
        fields.outcome = Some("tool_error");
        fields.error_type = Some("tool_error".to_string());
    } else {
        fields.outcome = Some("ok");
    }
}

fn outcome_message(fields: &Fields) -> &'static str {
    fields.outcome.unwrap_or("response")
}

fn error_type_for(outcome: &str, status: Option<u32>) -> Option<String> {
    match outcome {
        "ok" | "accepted" | "client_closed" => None,
        "http_error" => status.map(|s| s.to_string()),
        other => Some(other.to_string()),
    }
}
