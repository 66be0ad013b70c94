//! The stream's end (Envoy's `on_log`): why it ended, what the call counts as for the
//! upstream's breaker, and a `response` for every element not answered yet (or for the
//! exchange itself when it had none), so each request element has exactly one.

use super::outcome::{ErrorType, Outcome};
use super::{begin, Env, Exchange, ResponseKind, StreamEnd};
use crate::breaker;
use crate::events::{keys, Event, EventName, Message};

fn outcome_fields(event: &mut Event, outcome: Outcome, status: Option<u32>, elapsed: u64) {
    if let Some(status) = status {
        event.u64(keys::HTTP_STATUS, u64::from(status));
    }
    event.label(keys::OUTCOME, outcome.as_str());
    match ErrorType::of(outcome, status) {
        ErrorType::None => {}
        ErrorType::Status(status) => {
            event.str(keys::ERROR_TYPE, &status.to_string());
        }
        ErrorType::Outcome(outcome) => {
            event.label(keys::ERROR_TYPE, outcome.as_str());
        }
    }
    event.millis(keys::DURATION_MS, elapsed);
}

impl Exchange {
    /// The stream is over: failure events, the call's result, and a `response` for every
    /// element not answered yet.
    pub fn on_stream_end(&mut self, end: &StreamEnd, env: &mut Env) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.response.status.is_none() {
            self.response.status = end.response_code;
        }
        let failure = self.classify_end(end, env);
        self.record_call(end, env);
        let outcome = self.fallback_outcome(failure);
        let status = self.response.status;
        if self.elements.is_empty() {
            let elapsed = self.elapsed(env);
            if let Some(mut event) =
                self.begin(env, EventName::Response, Message::Text(outcome.as_str()))
            {
                outcome_fields(&mut event, outcome, status, elapsed);
            }
            return;
        }
        let unanswered: Vec<usize> = self.elements.unanswered_indices().collect();
        for index in unanswered {
            let answer = self.settle_parked(index, env);
            let Some(element) = self.elements.get_mut(index) else {
                continue;
            };
            element.answered = true;
            if !answer {
                continue;
            }
            let outcome = if !element.expects_response && outcome == Outcome::NoResponse {
                Outcome::Accepted
            } else {
                outcome
            };
            let elapsed = self.elapsed(env);
            if let Some(mut event) = begin(
                &mut self.common,
                env,
                EventName::Response,
                Message::Text(outcome.as_str()),
            ) {
                event.fragment(self.elements.fields(index));
                outcome_fields(&mut event, outcome, status, elapsed);
            }
        }
    }

    /// Emits the failure event of an abnormal end; returns what it makes of the elements.
    fn classify_end(&mut self, end: &StreamEnd, env: &mut Env) -> Option<Outcome> {
        if self.rejected {
            return Some(Outcome::Rejected);
        }
        let details = end.code_details.unwrap_or("");
        let downstream_gone = !details.is_empty()
            && (details.contains("downstream_remote_disconnect")
                || details.contains("downstream_local_disconnect"));
        let streaming = self.response.kind == ResponseKind::EventStream;
        let (name, message, failure) = if downstream_gone && !self.response.complete {
            // Closing an event stream is how clients end it; only other responses are cut short.
            if streaming {
                (
                    EventName::SseCancel,
                    "client closed the event stream",
                    Outcome::ClientClosed,
                )
            } else {
                (
                    EventName::ClientCanceled,
                    "client went away before the response",
                    Outcome::Canceled,
                )
            }
        } else if self.response.status.is_some() && !self.response.complete {
            // Once a response has started, any end but its own is a broken upstream stream.
            (
                EventName::UpstreamConnectionInterrupted,
                "upstream stream broke mid-response",
                Outcome::UpstreamInterrupted,
            )
        } else if self.response.status.is_some_and(|s| s >= 500)
            || !details.is_empty()
                && (details.starts_with("upstream_reset_before_response_started")
                    || details.contains("no_healthy_upstream")
                    || details.contains("upstream_response_timeout")
                    || details.contains("cluster_not_found"))
        {
            (
                EventName::UpstreamError,
                "upstream failed",
                Outcome::UpstreamError,
            )
        } else {
            return None;
        };
        let status = self.response.status;
        let elapsed = self.elapsed(env);
        let messages = self.response.stream.as_ref().map(|s| s.messages);
        if let Some(mut event) = self.begin(env, name, Message::Text(message)) {
            if let Some(status) = status {
                event.u64(keys::HTTP_STATUS, u64::from(status));
            }
            event
                .opt_str(keys::CODE_DETAILS, end.code_details)
                .millis(keys::DURATION_MS, elapsed);
            if let (true, Some(messages)) = (streaming, messages) {
                event.u64(keys::SSE_MESSAGES, messages);
            }
        }
        Some(failure)
    }

    fn fallback_outcome(&self, failure: Option<Outcome>) -> Outcome {
        if let Some(failure) = failure {
            return failure;
        }
        match self.response.status {
            Some(s) if s >= 400 => Outcome::HttpError,
            _ if self.response.body.overflow => Outcome::NotInspected,
            Some(_) if self.elements.is_empty() => Outcome::Ok,
            _ => Outcome::NoResponse,
        }
    }

    /// Reports the finished call to the upstream's shared record.
    fn record_call(&mut self, end: &StreamEnd, env: &mut Env) {
        if !self.tracked {
            return;
        }
        let Some(outcome) = breaker::classify_call(
            end.code_details.unwrap_or(""),
            self.response.status,
            self.response.jsonrpc_error_seen,
            self.response.tool_error_seen,
        ) else {
            return;
        };
        // A stream's call is its opening: time to the response headers.
        let finished = match self.common.http_method() {
            "GET" => self
                .response
                .first_byte_at
                .unwrap_or_else(|| env.clock.now()),
            _ => env.clock.now(),
        };
        let result = breaker::call_result(outcome, self.started, finished, self.probe.take());
        let transition = match (self.common.instance(), env.upstream.as_mut()) {
            (Some(instance), Some(upstream)) => upstream.record(instance, env.clock.now(), &result),
            _ => None,
        };
        self.emit_transition(env, transition);
    }
}
