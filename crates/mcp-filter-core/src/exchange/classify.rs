//! Classification: the request body (one borrowed parse) or, when the body is not inspected,
//! the SEP-2243 headers become the exchange's elements, each announced by a `request` event.
//! Also what the body says about the exchange itself: the protocol version, a SEP-414
//! `_meta.traceparent` (adopted while the headers are still held), and whether it agrees with
//! the SEP-2243 headers.

use super::elements::Origin;
use super::{begin, begin_at, Env, Exchange, LocalReply, Mirror, TraceState};
use crate::events::{keys, EventName, Message as EventMessage};
use crate::jsonrpc::{self, Invalid, Kind, Message, Parsed};
use crate::redact;
use crate::trace::{TraceContext, TraceOrigin, TraceParent};

impl Exchange {
    /// Classifies a complete request body; an answer when the validation policy rejects it.
    pub(super) fn classify_body(
        &mut self,
        body: &[u8],
        holding: bool,
        env: &mut Env,
    ) -> Option<LocalReply> {
        let parsed = if self.request.content_type_ok || self.request.header_method.is_some() {
            jsonrpc::parse_body(body, env.config.max_batch_elements)
        } else {
            Err(Invalid::WrongContentType)
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(invalid) => return self.invalid_request(invalid, holding, env),
        };
        if let Parsed::Batch { items, .. } = &parsed {
            let first_invalid = items.iter().find_map(|r| r.as_ref().err().copied());
            let any_valid = items.iter().any(Result::is_ok);
            match (first_invalid, any_valid) {
                (Some(invalid), false) => return self.invalid_request(invalid, holding, env),
                (Some(invalid), true) if self.rejects(holding, env) => {
                    return self.invalid_request(invalid, holding, env)
                }
                _ => {}
            }
        }
        self.classify_messages(&parsed, holding, env);
        if let Some(reply) = self.refuse_header_mismatch(&parsed, holding, env) {
            return Some(reply);
        }
        self.check_revision(&parsed, holding, env)
    }

    /// Under `header_mismatch: reject`, a held request whose body disagrees with its
    /// SEP-2243 headers is answered 400 with the HeaderMismatch error (`-32020`).
    fn refuse_header_mismatch(
        &mut self,
        parsed: &Parsed,
        holding: bool,
        env: &Env,
    ) -> Option<LocalReply> {
        let refuse = self.request.header_mismatch
            && holding
            && env.config.header_mismatch == crate::config::ValidationPolicy::Reject;
        if !refuse {
            return None;
        }
        self.reject();
        let id = parsed
            .messages()
            .next()
            .and_then(|m| m.id)
            .map(|id| id.to_json());
        Some(crate::reply::json_reply(
            400,
            crate::reply::jsonrpc_error(
                id.as_deref(),
                -32020,
                "Header mismatch: Mcp-Method/Mcp-Name disagree with the body",
                None,
            ),
        ))
    }

    fn rejects(&self, holding: bool, env: &Env) -> bool {
        holding && env.config.validation == crate::config::ValidationPolicy::Reject
    }

    fn classify_messages(&mut self, parsed: &Parsed, holding: bool, env: &mut Env) {
        if let Some(first) = parsed.messages().next() {
            self.adopt_meta(first, holding, env);
        }
        let batch_size = parsed.batch_size();
        let first_element = self.elements.len();
        for (index, slot) in slots(parsed) {
            if let Ok(message) = slot {
                let batch = batch_size.map(|size| (size, index));
                self.elements.push_message(message, Origin { batch });
            }
        }
        if let Parsed::Single(message) = parsed {
            self.check_header_mismatch(message, first_element, env);
        }
        let mut element = first_element;
        for (index, slot) in slots(parsed) {
            match slot {
                Ok(message) => {
                    self.announce(message, element, env);
                    if matches!(message.kind, Kind::Response | Kind::Error) {
                        self.answer_server_request(message, env);
                    }
                    element += 1;
                }
                Err(invalid) => {
                    let batch = batch_size.map(|size| (size, index));
                    self.validation_failed(invalid, false, batch, env);
                }
            }
        }
        if let (Some(mirror), Some(first)) = (self.mirror.as_mut(), parsed.messages().next()) {
            **mirror = Mirror {
                method: first.method.map(|m| m.value().into_owned()),
                tool: first.target().map(|t| t.value().into_owned()),
                request_id: first.id.map(|id| id.text().into_owned()),
                dirty: true,
            };
        }
    }

    /// The `request` event of one element.
    fn announce(&mut self, message: &Message, element: usize, env: &mut Env) {
        let summary = match message.method {
            Some(method) => EventMessage::Summary(method, message.target()),
            None => EventMessage::Text(message.kind.as_str()),
        };
        let captured = message
            .arguments
            .and_then(|raw| redact::capture_arguments(raw, &env.config.arguments));
        // A request event is stamped with the request's arrival.
        let at = self.started;
        if let Some(mut event) = begin_at(&mut self.common, env, at, EventName::Request, summary) {
            event.fragment(self.elements.fields(element));
            if let Some((arguments, truncated)) = &captured {
                event
                    .str(keys::ARGUMENTS, arguments)
                    .bool(keys::ARGUMENTS_TRUNCATED, *truncated);
            }
        }
    }

    /// The request is classified from its headers: the body is over the cap.
    pub(super) fn classify_from_headers(&mut self, env: &mut Env, inspected: bool) {
        let element = self.elements.push_headers(
            self.request.header_method.as_deref(),
            self.request.header_name.as_deref(),
            self.request.body.total,
            inspected,
        );
        if let Some(mirror) = self.mirror.as_mut() {
            **mirror = Mirror {
                method: self.request.header_method.as_deref().map(str::to_string),
                tool: self.request.header_name.as_deref().map(str::to_string),
                request_id: None,
                dirty: true,
            };
        }
        let at = self.started;
        if let Some(mut event) = begin_at(
            &mut self.common,
            env,
            at,
            EventName::Request,
            EventMessage::Text("request"),
        ) {
            event.fragment(self.elements.fields(element));
        }
    }

    /// Takes the protocol version and SEP-414 trace context a message carries.
    fn adopt_meta(&mut self, message: &Message, holding: bool, env: &mut Env) {
        if self.common.protocol_version().is_none() {
            if let Some(version) = message.protocol_version {
                // `initialize` offers a version (a client that speaks 2026-07-28 offers it to
                // servers of any revision): recorded, but it is not the request's revision.
                let offered = message.info.is_some_and(|info| info.name == "initialize");
                self.common.set_protocol_version(&version.value(), !offered);
                self.report_unknown_protocol_version(env);
            }
        }
        // `_meta.traceparent` can only become the parent while the headers are still held.
        if self.request.had_traceparent_header || !holding {
            return;
        }
        let Some(parent) = message
            .meta_traceparent
            .and_then(|t| TraceParent::parse(&t.value()))
        else {
            return;
        };
        let trace = TraceContext::continue_or_start(Some(parent), TraceOrigin::Meta, env.ids);
        self.common.set_trace(trace);
        // The vendor state that came with this parent replaces a header one (whose header
        // parent was absent); an invalid one is dropped like its parent would be.
        if let Some(state) = message.meta_tracestate.map(|t| t.value()) {
            self.request.tracestate = if is_valid_tracestate(&state) {
                self.request.meta_tracestate = Some(state.into());
                TraceState::FromMeta
            } else {
                TraceState::Remove
            };
        }
    }

    fn check_header_mismatch(&mut self, message: &Message, element: usize, env: &mut Env) {
        let Some(header_method) = self.request.header_method.as_deref() else {
            return;
        };
        let method_differs = message.method.map(|m| m.value()).as_deref() != Some(header_method);
        let header_name = self.request.header_name.as_deref();
        let name_differs = header_name
            .is_some_and(|name| message.target().map(|t| t.value()).as_deref() != Some(name));
        if !method_differs && !name_differs {
            return;
        }
        self.request.header_mismatch = true;
        if let Some(mut event) = begin(
            &mut self.common,
            env,
            EventName::HeaderBodyMismatch,
            EventMessage::Text("Mcp-Method/Mcp-Name disagree with the body"),
        ) {
            event
                .fragment(self.elements.fields(element))
                .str(keys::HEADER_METHOD, header_method)
                .opt_str(keys::HEADER_NAME, header_name)
                .label(keys::REASON, if method_differs { "method" } else { "name" });
        }
    }
}

/// Every slot of a parsed body with its index: a single message, or each batch element.
fn slots<'p, 'a>(
    parsed: &'p Parsed<'a>,
) -> impl Iterator<Item = (usize, Result<&'p Message<'a>, Invalid>)> {
    let (single, items) = match parsed {
        Parsed::Single(message) => (Some(message), &[][..]),
        Parsed::Batch { items, .. } => (None, items.as_slice()),
    };
    single.into_iter().map(|m| (0, Ok(m))).chain(
        items
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.as_ref().map_err(|e| *e))),
    )
}

/// A `tracestate` value a header can carry: at most 512 printable ASCII characters (W3C Trace
/// Context's limit; list members are not checked one by one, the next hop does that).
fn is_valid_tracestate(value: &str) -> bool {
    !value.is_empty() && value.len() <= 512 && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}
