//! Native tests of the exchange, phase by phase: the state machine driven directly, with a
//! fixed clock, an in-memory shared store and the events read back as JSON.

use super::drive::{response_head as response, Harness};
use super::*;
use crate::pending::PendingStats;
use serde_json::Value;

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn post(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![
        (":method", "POST"),
        (":path", "/mcp?x=1"),
        ("content-type", "application/json"),
        ("authorization", "Bearer secret-token-7f3a9"),
    ];
    h.extend_from_slice(extra);
    h
}

const JSON: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const SSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream")];

fn call(id: u32, tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"password":"hunter2","q":1}}}}}}"#
    )
}

fn ok(id: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[],"isError":false}}}}"#)
}

// ---- request phase ----

#[test]
fn a_post_is_held_until_its_body_is_classified_then_forwarded_with_the_trace() {
    let mut h = Harness::new(r#"{"min_level":"debug"}"#);
    let (mut ex, action) = h.start(&post(&[("traceparent", TRACEPARENT)]), false);
    assert_eq!(action, RequestAction::Hold);
    assert!(ex.wants_request_body());
    let action = ex.on_request_body(call(7, "echo").as_bytes(), true, &mut h.env());
    let RequestAction::Forward(headers) = action else {
        panic!("forwarded: {action:?}")
    };
    assert_eq!(headers.tracestate, TraceState::Keep);
    let traceparent = String::from_utf8_lossy(&headers.traceparent).into_owned();
    assert!(traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
    assert!(!traceparent.contains("b7ad6b7169203331"), "a new span");
    assert!(!ex.wants_request_body());
    let names: Vec<Value> = h.events().iter().map(|e| e["event"].clone()).collect();
    assert_eq!(names, ["request", "director.before"]);
    let request = &h.events()[0];
    assert_eq!(request["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(request["parent_span_id"], "b7ad6b7169203331");
    assert_eq!(request["url.path"], "/mcp");
    assert_eq!(request["instance_id"], "demo");
    assert_eq!(request["token_header"], "authorization");
    assert!(!request.to_string().contains("secret-token"));
}

#[test]
fn sep_2243_headers_forward_at_once_and_the_body_is_only_checked() {
    let mut h = Harness::new("{}");
    let (mut ex, action) = h.start(
        &post(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]),
        false,
    );
    assert!(matches!(action, RequestAction::Forward(_)));
    let body = call(4, "delete_everything");
    let (a, b) = body.as_bytes().split_at(10);
    assert_eq!(
        ex.on_request_body(a, false, &mut h.env()),
        RequestAction::Continue
    );
    assert_eq!(
        ex.on_request_body(b, true, &mut h.env()),
        RequestAction::Continue
    );
    let mismatch = h.named("header.body.mismatch");
    assert_eq!(mismatch.len(), 1);
    assert_eq!(mismatch[0]["reason"], "name");
    assert_eq!(mismatch[0]["gen_ai.tool.name"], "delete_everything");
}

#[test]
fn unknown_instances_are_answered_locally_and_count_as_rejected() {
    let mut h = Harness::new(
        r#"{"instance":{"source":{"path_prefix":"/mcp/"},"allowed":["demo"],"on_missing":"reject"}}"#,
    );
    let (mut ex, action) = h.start(&[(":method", "POST"), (":path", "/mcp/evil/x")], false);
    let RequestAction::Reject(reply) = action else {
        panic!("rejected: {action:?}")
    };
    assert_eq!(reply.status, 404);
    h.end(&mut ex, None);
    assert_eq!(h.named("instance.missing")[0]["detail"], "evil");
    assert_eq!(h.named("response")[0]["mcp.outcome"], "rejected");
}

#[test]
fn invalid_bodies_follow_the_validation_policy() {
    for (policy, rejected) in [("reject", true), ("observe", false)] {
        let mut h = Harness::new(&format!(r#"{{"validation":"{policy}"}}"#));
        let (mut ex, _) = h.start(&post(&[]), false);
        let action = ex.on_request_body(b"{oops", true, &mut h.env());
        assert_eq!(
            matches!(action, RequestAction::Reject(_)),
            rejected,
            "{policy}"
        );
        let failed = h.named("request.validation.failed");
        assert_eq!(failed[0]["reason"], "invalid_json");
        assert_eq!(
            failed[0]["detail"],
            if rejected { "rejected" } else { "observed" }
        );
    }
}

// ---- classification ----

#[test]
fn a_batch_is_itemised_and_a_bad_element_reported_on_its_own() {
    let mut h = Harness::new("{}");
    let (mut ex, _) = h.start(&post(&[]), false);
    let body = format!(
        r#"[{},{{"jsonrpc":"2.0","id":2}},{{"jsonrpc":"2.0","method":"notifications/progress"}}]"#,
        call(1, "a")
    );
    ex.on_request_body(body.as_bytes(), true, &mut h.env());
    let requests = h.named("request");
    assert_eq!(requests.len(), 2, "the valid elements");
    assert_eq!(requests[0]["jsonrpc.batch.size"], 3);
    assert_eq!(requests[1]["jsonrpc.batch.index"], 2);
    let failed = h.named("request.validation.failed");
    assert_eq!(failed[0]["reason"], "missing_method");
    assert_eq!(failed[0]["jsonrpc.batch.index"], 1);
    h.respond(&mut ex, JSON, &format!("[{}]", ok(1)));
    h.end(&mut ex, None);
    let outcomes: Vec<Value> = h
        .named("response")
        .iter()
        .map(|r| r["mcp.outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["ok", "accepted"]);
}

#[test]
fn arguments_are_captured_redacted_when_asked_and_never_on_the_response() {
    let mut h = Harness::new(r#"{"arguments":{"capture":true}}"#);
    let (mut ex, _) = h.start(&post(&[]), false);
    ex.on_request_body(call(1, "echo").as_bytes(), true, &mut h.env());
    h.respond(&mut ex, JSON, &ok(1));
    let request = &h.named("request")[0];
    let args = request["gen_ai.tool.call.arguments"]
        .as_str()
        .expect("captured");
    assert!(
        args.contains("[REDACTED]") && !args.contains("hunter2"),
        "{args}"
    );
    assert!(h.named("response")[0]
        .get("gen_ai.tool.call.arguments")
        .is_none());
}

#[test]
fn meta_traceparent_becomes_the_parent_while_held() {
    let mut h = Harness::new("{}");
    let (mut ex, _) = h.start(&post(&[]), false);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"traceparent":"00-11111111111111111111111111111111-2222222222222222-01"}}}"#;
    let RequestAction::Forward(header) = ex.on_request_body(body.as_bytes(), true, &mut h.env())
    else {
        panic!("forwarded")
    };
    assert!(header
        .traceparent
        .starts_with(b"00-11111111111111111111111111111111-"));
    let request = &h.named("request")[0];
    assert_eq!(request["trace.origin"], "meta");
    assert_eq!(request["parent_span_id"], "2222222222222222");
}

#[test]
fn tracestate_goes_with_its_traceparent() {
    let forwarded = |headers: &[(&'static str, &'static str)], body: &str| {
        let mut h = Harness::new("{}");
        let (mut ex, _) = h.start(&post(headers), false);
        match ex.on_request_body(body.as_bytes(), true, &mut h.env()) {
            RequestAction::Forward(trace) => {
                (trace.tracestate, ex.meta_tracestate().map(str::to_owned))
            }
            other => panic!("forwarded: {other:?}"),
        }
    };
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let state = ("tracestate", "vendor=abc");
    assert_eq!(
        forwarded(&[("traceparent", TRACEPARENT), state], ping),
        (TraceState::Keep, None),
        "a continued trace keeps the client's"
    );
    assert_eq!(
        forwarded(&[("traceparent", "00-bad"), state], ping),
        (TraceState::Remove, None),
        "an invalid traceparent takes its tracestate with it"
    );
    assert_eq!(forwarded(&[state], ping), (TraceState::Remove, None));
    let meta = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"traceparent":"00-11111111111111111111111111111111-2222222222222222-01","tracestate":"m=1"}}}"#;
    assert_eq!(
        forwarded(&[state], meta),
        (TraceState::FromMeta, Some("m=1".to_string())),
        "the parent adopted from _meta brings its own"
    );
    let bad_meta = meta.replace("m=1", "m=\\u0001");
    assert_eq!(forwarded(&[], &bad_meta), (TraceState::Remove, None));
    assert_eq!(
        forwarded(&[("traceparent", TRACEPARENT), state], meta),
        (TraceState::Keep, None),
        "a header parent wins over _meta"
    );
}

#[test]
fn when_needed_a_post_goes_upstream_at_once_unless_the_policy_must_see_its_body() {
    let mut h = Harness::new(r#"{"hold_request":"when_needed"}"#);
    let (mut ex, action) = h.start(&post(&[]), false);
    let RequestAction::Forward(header) = action else {
        panic!("forwarded at once: {action:?}")
    };
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"traceparent":"00-11111111111111111111111111111111-2222222222222222-01"}}}"#;
    assert_eq!(
        ex.on_request_body(body.as_bytes(), true, &mut h.env()),
        RequestAction::Continue
    );
    let request = &h.named("request")[0];
    assert_eq!(
        request["trace.origin"], "generated",
        "too late to adopt _meta"
    );
    assert_eq!(
        request["trace_id"].as_str().map(str::as_bytes),
        header.traceparent.get(3..35),
        "the event's trace is the one sent upstream"
    );
    let mut reject = Harness::new(r#"{"validation":"reject","hold_request":"when_needed"}"#);
    assert_eq!(reject.start(&post(&[]), false).1, RequestAction::Hold);
}

#[test]
fn an_open_breaker_holds_a_forwardable_request_to_answer_with_its_id() {
    let mut h = Harness::new(
        r#"{"hold_request":"when_needed","upstream":{"breaker":{"failure_threshold":1}}}"#,
    );
    let (mut first, _) = h.start(&post(&[]), false);
    first.on_request_body(call(1, "x").as_bytes(), true, &mut h.env());
    h.end(
        &mut first,
        Some("upstream_reset_before_response_started{connection_failure}"),
    );
    assert_eq!(h.named("circuit.opened").len(), 1);
    let (mut refused, action) = h.start(&post(&[]), false);
    assert_eq!(action, RequestAction::Hold, "refused: waits for the id");
    let body = r#"{"jsonrpc":"2.0","id":"seven","method":"tools/call","params":{"name":"x"}}"#;
    let RequestAction::Reject(reply) = refused.on_request_body(body.as_bytes(), true, &mut h.env())
    else {
        panic!("answered locally")
    };
    assert_eq!(reply.status, 503);
    let json: Value = serde_json::from_str(&reply.body).expect("JSON-RPC error");
    assert_eq!(json["id"], "seven");
    h.end(&mut refused, None);
    let rejected = &h.named("circuit.rejected")[0];
    assert_eq!(rejected["jsonrpc.request.id"], "seven");
    assert_eq!(rejected["mcp.method.name"], "tools/call");
    assert_eq!(
        h.named("response").last().expect("response")["mcp.outcome"],
        "rejected"
    );

    // Classified from its SEP-2243 headers, a request would go upstream before its body:
    // refused, it still waits for the body, and a string id that looks like a number stays
    // a string.
    let sep2243 = post(&[("mcp-method", "tools/call"), ("mcp-name", "x")]);
    let (mut refused, action) = h.start(&sep2243, false);
    assert_eq!(action, RequestAction::Hold, "refused: waits for the id");
    let body = r#"{"jsonrpc":"2.0","id":"7","method":"tools/call","params":{"name":"x"}}"#;
    let RequestAction::Reject(reply) = refused.on_request_body(body.as_bytes(), true, &mut h.env())
    else {
        panic!("answered locally")
    };
    let json: Value = serde_json::from_str(&reply.body).expect("JSON-RPC error");
    assert_eq!(json["id"], Value::String("7".into()), "{}", reply.body);
}

// ---- response phase ----

#[test]
fn a_json_answer_is_matched_by_id_with_its_latency_and_outcome() {
    let mut h = Harness::new("{}");
    let (mut ex, _) = h.start(&post(&[]), false);
    ex.on_request_body(call(7, "echo").as_bytes(), true, &mut h.env());
    h.advance(25);
    h.respond(
        &mut ex,
        JSON,
        r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad"}}"#,
    );
    assert!(
        !ex.needs_stream_details(),
        "a complete 200 needs nothing more"
    );
    h.end(&mut ex, None);
    let responses = h.named("response");
    assert_eq!(responses.len(), 1, "exactly one response per request");
    let r = &responses[0];
    assert_eq!(r["mcp.outcome"], "jsonrpc_error");
    assert_eq!(r["error.type"], "-32602");
    assert_eq!(r["duration_ms"], 25.0);
    assert_eq!(r["gen_ai.tool.name"], "echo");
}

#[test]
fn an_event_stream_answer_is_matched_as_it_arrives() {
    let mut h = Harness::new("{}");
    let (mut ex, _) = h.start(&post(&[]), false);
    ex.on_request_body(call(3, "slow").as_bytes(), true, &mut h.env());
    let pairs = response(SSE);
    ex.on_response_headers(&pairs, false, &mut h.env());
    let stream = format!(
        "data: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\n\ndata: {}\n\n",
        ok(3)
    );
    let (a, b) = stream.as_bytes().split_at(30);
    ex.on_response_body(a, false, &mut h.env());
    h.advance(10);
    ex.on_response_body(b, false, &mut h.env());
    assert_eq!(
        h.named("response")[0]["duration_ms"],
        10.0,
        "seen before the stream ends"
    );
    ex.on_response_body(b"", true, &mut h.env());
    h.end(&mut ex, None);
    assert_eq!(h.named("sse.eof")[0]["sse.messages"], 2);
    assert_eq!(h.named("response").len(), 1);
}

#[test]
fn legacy_answers_on_the_get_stream_find_the_parked_post() {
    let mut h =
        Harness::new(r#"{"instance":{"source":{"path_prefix":"/mcp/"},"allowed":["legacy"]}}"#);
    let (mut get, _) = h.start(&[(":method", "GET"), (":path", "/mcp/legacy/sse")], true);
    let pairs = response(SSE);
    get.on_response_headers(&pairs, false, &mut h.env());
    let rewritten = get.on_response_body(
        b"event: endpoint\ndata: /message?sessionId=abc\n\n",
        false,
        &mut h.env(),
    );
    assert_eq!(
        rewritten,
        ResponseBodyAction::Replace(
            b"event: endpoint\ndata: /mcp/legacy/message?sessionId=abc\n\n".to_vec()
        )
    );
    let (mut post, _) = h.start(
        &[
            (":method", "POST"),
            (":path", "/mcp/legacy/message?sessionId=abc"),
            ("content-type", "application/json"),
        ],
        false,
    );
    post.on_request_body(call(5, "echo").as_bytes(), true, &mut h.env());
    let accepted = response(&[(":status", "202")]);
    post.on_response_headers(&accepted, true, &mut h.env());
    h.end(&mut post, None);
    assert!(
        h.named("response").is_empty(),
        "the answer comes on the stream"
    );
    h.advance(40);
    get.on_response_body(
        format!("data: {}\n\n", ok(5)).as_bytes(),
        false,
        &mut h.env(),
    );
    let responses = h.named("response");
    assert_eq!(responses.len(), 1);
    assert_eq!(
        responses[0]["url.path"], "/mcp/legacy/message",
        "the POST's context"
    );
    assert_eq!(responses[0]["duration_ms"], 40.0);
    assert_eq!(responses[0]["mcp.transport"], "sse");
}

#[test]
fn a_legacy_answer_may_arrive_before_the_posts_202_and_an_error_is_answered_once() {
    let mut h =
        Harness::new(r#"{"instance":{"source":{"path_prefix":"/mcp/"},"allowed":["legacy"]}}"#);
    let (mut get, _) = h.start(&[(":method", "GET"), (":path", "/mcp/legacy/sse")], true);
    let pairs = response(SSE);
    get.on_response_headers(&pairs, false, &mut h.env());
    get.on_response_body(
        b"event: endpoint\ndata: /message?sessionId=s1\n\n",
        false,
        &mut h.env(),
    );
    let post_headers = [
        (":method", "POST"),
        (":path", "/mcp/legacy/message?sessionId=s1"),
        ("content-type", "application/json"),
    ];
    // The answer reaches the GET stream while the POST still waits for its 202.
    let (mut fast, _) = h.start(&post_headers, false);
    fast.on_request_body(call(1, "echo").as_bytes(), true, &mut h.env());
    get.on_response_body(
        format!("data: {}\n\n", ok(1)).as_bytes(),
        false,
        &mut h.env(),
    );
    assert_eq!(
        h.named("response").len(),
        1,
        "matched on the stream at once"
    );
    let accepted = response(&[(":status", "202")]);
    fast.on_response_headers(&accepted, true, &mut h.env());
    h.end(&mut fast, None);
    assert_eq!(h.named("response").len(), 1, "and not again by the POST");
    // A POST the server refuses answers its own element, once, and the stream cannot.
    let (mut refused, _) = h.start(&post_headers, false);
    refused.on_request_body(call(2, "echo").as_bytes(), true, &mut h.env());
    let failed = response(&[(":status", "500")]);
    refused.on_response_headers(&failed, true, &mut h.env());
    h.end(&mut refused, None);
    get.on_response_body(
        format!("data: {}\n\n", ok(2)).as_bytes(),
        false,
        &mut h.env(),
    );
    let responses = h.named("response");
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[1]["mcp.outcome"], "upstream_error");
    assert_eq!(
        h.pending,
        PendingStats::default(),
        "nothing lost or evicted"
    );
}

#[test]
fn a_legacy_endpoint_is_recognised_by_the_path_its_server_announced() {
    // The Python SDK announces `/messages/?session_id=…`, which no configured suffix matches.
    let mut h = Harness::new(r#"{"instance":{"source":{"path_prefix":"/mcp/"},"allowed":["py"]}}"#);
    let (mut get, _) = h.start(&[(":method", "GET"), (":path", "/mcp/py/sse")], true);
    get.on_response_headers(&response(SSE), false, &mut h.env());
    get.on_response_body(
        b"event: endpoint\ndata: /messages/?session_id=ab12\n\n",
        false,
        &mut h.env(),
    );
    let (mut post, _) = h.start(
        &[
            (":method", "POST"),
            (":path", "/mcp/py/messages/?session_id=ab12"),
            ("content-type", "application/json"),
        ],
        false,
    );
    post.on_request_body(call(4, "echo").as_bytes(), true, &mut h.env());
    h.advance(7);
    get.on_response_body(
        format!("event: message\ndata: {}\n\n", ok(4)).as_bytes(),
        false,
        &mut h.env(),
    );
    post.on_response_headers(&response(&[(":status", "202")]), true, &mut h.env());
    h.end(&mut post, None);
    let responses = h.named("response");
    assert_eq!(responses.len(), 1, "answered once, on the stream");
    assert_eq!(responses[0]["mcp.outcome"], "ok");
    assert_eq!(responses[0]["mcp.transport"], "sse");
    assert_eq!(responses[0]["duration_ms"], 7.0);
    assert_eq!(responses[0]["url.path"], "/mcp/py/messages/");
    assert_eq!(responses[0]["mcp.session.id"], "ab12");

    // Another session's POST to the same path was never announced: not a legacy POST.
    let (mut stranger, _) = h.start(
        &[
            (":method", "POST"),
            (":path", "/mcp/py/messages/?session_id=ffff"),
            ("content-type", "application/json"),
        ],
        false,
    );
    stranger.on_request_body(call(9, "echo").as_bytes(), true, &mut h.env());
    assert_eq!(
        h.named("request")
            .last()
            .map(|e| e["mcp.transport"].clone()),
        Some(serde_json::json!("streamable_http"))
    );
}

#[test]
fn a_recycled_exchange_leaves_nothing_behind_in_the_next() {
    let mut h = Harness::new(r#"{"arguments":{"capture":true}}"#);
    let (mut first, _) = h.start(&post(&[("mcp-session-id", "first-session")]), false);
    first.on_request_body(call(1, "first_tool").as_bytes(), true, &mut h.env());
    h.respond(&mut first, JSON, &ok(1));
    h.end(&mut first, None);
    first.recycle(&mut h.buffers);
    assert_eq!(h.buffers.spare.len(), 1, "kept for the next exchange");
    let (mut second, _) = h.start(
        &[
            (":method", "POST"),
            (":path", "/mcp"),
            ("content-type", "application/json"),
        ],
        false,
    );
    assert!(h.buffers.spare.is_empty(), "taken");
    second.on_request_body(call(2, "second").as_bytes(), true, &mut h.env());
    h.respond(&mut second, JSON, &ok(2));
    h.end(&mut second, None);
    let last = h.named("response").pop().expect("response");
    assert_eq!(last["gen_ai.tool.name"], "second");
    assert_eq!(last["jsonrpc.request.id"], "2");
    assert!(last.get("mcp.session.id").is_none(), "{last}");
    assert!(last.get("token").is_none(), "{last}");
}

// ---- stream end ----

#[test]
fn abnormal_ends_become_failure_events_and_outcomes() {
    let cases: [(&str, Option<&str>, bool, &str, &str); 3] = [
        (
            "client.canceled",
            Some("downstream_remote_disconnect"),
            false,
            "canceled",
            "canceled",
        ),
        (
            "upstream.error",
            Some("no_healthy_upstream"),
            false,
            "upstream_error",
            "upstream_error",
        ),
        (
            "upstream.connection.interrupted",
            Some("upstream_reset_after_response_started{connection_termination}"),
            true,
            "upstream_interrupted",
            "upstream_interrupted",
        ),
    ];
    for (event, details, started, outcome, error_type) in cases {
        let mut h = Harness::new("{}");
        let (mut ex, _) = h.start(&post(&[]), false);
        ex.on_request_body(call(1, "x").as_bytes(), true, &mut h.env());
        if started {
            let pairs = response(SSE);
            ex.on_response_headers(&pairs, false, &mut h.env());
            ex.on_response_body(b"data: {", false, &mut h.env());
        }
        assert!(ex.needs_stream_details());
        h.end(&mut ex, details);
        assert_eq!(h.named(event).len(), 1, "{event}");
        let response = &h.named("response")[0];
        assert_eq!(response["mcp.outcome"], outcome);
        assert_eq!(response["error.type"], error_type);
    }
}

#[test]
fn an_exchange_without_elements_still_gets_one_response() {
    let mut h = Harness::new("{}");
    let (mut ex, action) = h.start(&[(":method", "GET"), (":path", "/mcp")], true);
    assert!(matches!(action, RequestAction::Forward(_)));
    let pairs = response(&[(":status", "405")]);
    ex.on_response_headers(&pairs, true, &mut h.env());
    h.end(&mut ex, None);
    h.end(&mut ex, None);
    let responses = h.named("response");
    assert_eq!(
        responses.len(),
        1,
        "once, however often the end is reported"
    );
    assert_eq!(responses[0]["mcp.outcome"], "http_error");
    assert_eq!(responses[0]["error.type"], "405");
}

// ---- server-to-client traffic ----

#[test]
fn server_requests_on_a_stream_are_audited_and_matched_to_the_clients_answer() {
    let mut h = Harness::new("{}");
    let session = ("mcp-session-id", "s1");
    let (mut call_ex, _) = h.start(&post(&[session]), false);
    call_ex.on_request_body(call(3, "summarise").as_bytes(), true, &mut h.env());
    call_ex.on_response_headers(&response(SSE), false, &mut h.env());
    let stream = concat!(
        r#"data: {"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{"messages":[],"maxTokens":9}}"#,
        "\n\n",
        r#"data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#,
        "\n\n",
    );
    call_ex.on_response_body(stream.as_bytes(), false, &mut h.env());
    let asked = &h.named("server.request")[0];
    assert_eq!(asked["mcp.method.name"], "sampling/createMessage");
    assert_eq!(asked["jsonrpc.request.id"], "0");
    assert_eq!(asked["mcp.direction"], "server_to_client");
    assert_eq!(asked["mcp.session.id"], "s1");
    let progress = &h.named("server.notification")[0];
    assert_eq!(progress["mcp.method.name"], "notifications/progress");
    assert_eq!(progress["mcp.direction"], "server_to_client");

    // The client answers in a POST of its own, 15 ms later (any worker: shared data).
    h.advance(15);
    let (mut answer, _) = h.start(&post(&[session]), false);
    let body = r#"{"jsonrpc":"2.0","id":0,"result":{"role":"assistant","content":{"type":"text","text":"ok"}}}"#;
    answer.on_request_body(body.as_bytes(), true, &mut h.env());
    let answered = h.named("server.request.answered");
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0]["mcp.method.name"], "sampling/createMessage");
    assert_eq!(answered[0]["mcp.outcome"], "ok");
    assert_eq!(answered[0]["duration_ms"], 15.0);
    assert_eq!(answered[0]["mcp.direction"], "server_to_client");
    assert_eq!(
        answered[0]["trace_id"], asked["trace_id"],
        "the stream's trace"
    );

    // Answered once; another session's answer with the same id matches nothing, and a
    // client request with id 0 is not a server request.
    let (mut again, _) = h.start(&post(&[("mcp-session-id", "s2")]), false);
    again.on_request_body(body.as_bytes(), true, &mut h.env());
    let (mut repeat, _) = h.start(&post(&[session]), false);
    repeat.on_request_body(body.as_bytes(), true, &mut h.env());
    assert_eq!(h.named("server.request.answered").len(), 1);
}

// ---- protocol revisions ----

#[test]
fn a_method_outside_the_requests_revision_is_reported() {
    let mut h = Harness::new("{}");
    let send = |h: &mut Harness, version: &'static str, body: &str| {
        let (mut ex, _) = h.start(&post(&[("mcp-protocol-version", version)]), false);
        ex.on_request_body(body.as_bytes(), true, &mut h.env());
    };
    send(
        &mut h,
        "2025-11-25",
        r#"{"jsonrpc":"2.0","id":1,"method":"server/discover"}"#,
    );
    send(
        &mut h,
        "2025-11-25",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    );
    let reported = h.named("protocol.unsupported");
    assert_eq!(reported.len(), 1, "tools/list is in 2025-11-25");
    assert_eq!(reported[0]["reason"], "method_not_in_revision");
    assert_eq!(reported[0]["detail"], "server/discover (2025-11-25)");
    // The version may come from _meta alone (2026-07-28 carries it in every request).
    let (mut ex, _) = h.start(&post(&[]), false);
    let body = r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    ex.on_request_body(body.as_bytes(), true, &mut h.env());
    let reported = h.named("protocol.unsupported");
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert_eq!(reported[1]["detail"], "ping (2026-07-28)");
    // Batches: valid in 2025-03-26, removed in 2025-06-18.
    let batch = r#"[{"jsonrpc":"2.0","id":4,"method":"tools/list"},{"jsonrpc":"2.0","id":5,"method":"prompts/list"}]"#;
    send(&mut h, "2025-03-26", batch);
    assert_eq!(
        h.named("protocol.unsupported").len(),
        2,
        "fine in 2025-03-26"
    );
    send(&mut h, "2025-06-18", batch);
    let reported = h.named("protocol.unsupported");
    assert_eq!(reported[2]["reason"], "batch_not_in_revision");
    assert_eq!(reported[2]["detail"], "batch (2025-06-18)");
    assert_eq!(
        h.named("request").len(),
        7,
        "still itemised: {}",
        h.named("request").len()
    );
}

#[test]
fn a_2026_07_28_request_must_mirror_its_method_and_name_in_headers() {
    let v2026 = ("mcp-protocol-version", "2026-07-28");
    let call = r#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"echo"}}"#;

    let mut observe = Harness::new("{}");
    let (mut ex, _) = observe.start(&post(&[v2026]), false);
    let action = ex.on_request_body(call.as_bytes(), true, &mut observe.env());
    assert!(matches!(action, RequestAction::Forward(_)), "observed only");
    let failed = observe.named("request.validation.failed");
    assert_eq!(failed[0]["reason"], "missing_mcp_headers");
    assert_eq!(failed[0]["detail"], "observed");

    // With Mcp-Method the request goes upstream before its body: a missing Mcp-Name can only
    // be observed. Without either header it is held, so the policy can reject it.
    let mut reject = Harness::new(r#"{"validation":"reject"}"#);
    let only_method = [v2026, ("mcp-method", "tools/call")];
    let (mut ex, _) = reject.start(&post(&only_method), false);
    ex.on_request_body(call.as_bytes(), true, &mut reject.env());
    let failed = reject.named("request.validation.failed");
    assert_eq!(failed[0]["reason"], "missing_mcp_headers");
    assert_eq!(failed[0]["detail"], "observed", "already upstream");
    let (mut ex, _) = reject.start(&post(&[v2026]), false);
    let RequestAction::Reject(reply) = ex.on_request_body(call.as_bytes(), true, &mut reject.env())
    else {
        panic!("rejected: held, and Mcp-Method is required")
    };
    assert_eq!(reply.status, 400);
    let json: Value = serde_json::from_str(&reply.body).expect("JSON-RPC error");
    assert_eq!(json["error"]["code"], -32020);
    assert_eq!(json["id"], "c1");

    // Both headers, or an earlier revision: nothing to say.
    let mut fine = Harness::new(r#"{"validation":"reject"}"#);
    let both = [v2026, ("mcp-method", "tools/call"), ("mcp-name", "echo")];
    let (mut ex, _) = fine.start(&post(&both), false);
    ex.on_request_body(call.as_bytes(), true, &mut fine.env());
    let (mut ex, _) = fine.start(&post(&[("mcp-protocol-version", "2025-11-25")]), false);
    let action = ex.on_request_body(call.as_bytes(), true, &mut fine.env());
    assert!(matches!(action, RequestAction::Forward(_)));
    assert!(fine.named("request.validation.failed").is_empty());

    // A client that speaks 2026-07-28 may offer it in `initialize` to a server of any
    // revision: an offer, not the request's revision (rmcp 3.9 does this).
    let (mut ex, _) = fine.start(&post(&[]), false);
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2026-07-28","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;
    let action = ex.on_request_body(init.as_bytes(), true, &mut fine.env());
    assert!(matches!(action, RequestAction::Forward(_)), "{action:?}");
    assert!(fine.named("request.validation.failed").is_empty());
    assert!(fine.named("protocol.unsupported").is_empty());
    assert_eq!(
        fine.named("request").last().expect("request")["mcp.protocol.version"],
        "2026-07-28",
        "still recorded"
    );
}

#[test]
fn header_mismatch_reject_holds_sep_2243_requests_and_refuses_a_disagreeing_body() {
    let mut h = Harness::new(r#"{"header_mismatch":"reject"}"#);
    let headers = post(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]);
    let (mut liar, action) = h.start(&headers, false);
    assert_eq!(action, RequestAction::Hold, "waits for the body to compare");
    let RequestAction::Reject(reply) =
        liar.on_request_body(call(4, "delete_everything").as_bytes(), true, &mut h.env())
    else {
        panic!("refused")
    };
    assert_eq!(reply.status, 400);
    let json: Value = serde_json::from_str(&reply.body).expect("JSON-RPC error");
    assert_eq!(json["error"]["code"], -32020);
    assert_eq!(json["id"], 4);
    assert_eq!(h.named("header.body.mismatch").len(), 1);
    h.end(&mut liar, None);
    assert_eq!(
        h.named("response").last().expect("response")["mcp.outcome"],
        "rejected"
    );

    let (mut honest, _) = h.start(&headers, false);
    let action = honest.on_request_body(call(5, "echo").as_bytes(), true, &mut h.env());
    assert!(matches!(action, RequestAction::Forward(_)), "{action:?}");

    // The default observes: forwarded before the body, the mismatch only reported.
    let mut observe = Harness::new("{}");
    let (mut ex, action) = observe.start(&headers, false);
    assert!(matches!(action, RequestAction::Forward(_)));
    ex.on_request_body(
        call(6, "delete_everything").as_bytes(),
        true,
        &mut observe.env(),
    );
    assert_eq!(observe.named("header.body.mismatch").len(), 1);
}
