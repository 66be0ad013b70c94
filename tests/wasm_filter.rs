//! Wasm-level tests: the built filter in the wasmtime proxy-wasm host, driven through whole
//! request lifecycles (headers, bodies in chunks, responses, stream end) with a controlled
//! clock. Events are read back from the filter's log and asserted field by field.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proxy_wasm_test_host::{headers, values, Action, Vm, World};
use serde_json::Value;
use std::time::Duration;
use test_support::filter_vm::*;

const CONFIG: &str = r#"{
  "instance": {"source": {"path_prefix": "/mcp/"}, "allowed": ["demo", "legacy"], "on_missing": "reject"},
  "validation": "reject",
  "max_body_bytes": 4096,
  "arguments": {"capture": true, "max_bytes": 256},
  "min_level": "debug",
  "filter_state": true
}"#;

fn setup() -> (World, Vm) {
    let world = World::new();
    let vm = load(&world, CONFIG);
    (world, vm)
}

#[test]
fn invalid_config_is_refused_naming_the_field() {
    let world = World::new();
    let bad = r#"{"instance": {"source": {"header": "x-mcp-instance"}, "on_missing": "drop"}}"#;
    let refused = |config: &str| match Vm::load_file(&world, filter_wasm(), options(config)) {
        Ok(_) => panic!("config must be refused: {config}"),
        Err(e) => format!("{e:#}"),
    };
    let text = refused(bad);
    assert!(text.contains("instance.on_missing"), "{text}");
    let unbounded = r#"{"instance": {"source": {"header": "x-mcp-instance"}}}"#;
    assert!(refused(unbounded).contains("instance.allowed"));
    // Empty configuration means defaults.
    Vm::load_file(&world, filter_wasm(), options("")).expect("defaults load");
}

#[test]
fn tools_call_with_json_response_full_lifecycle() {
    let (world, mut vm) = setup();
    let h = headers::with(post_headers("/mcp/demo/mcp"), "traceparent", TRACEPARENT);
    let h = headers::with(h, "mcp-session-id", "sess-1");
    let h = headers::with(h, "mcp-protocol-version", "2025-06-18");
    let s = vm.new_stream().expect("stream");
    assert_eq!(
        vm.request_headers(s, &h, false).expect("headers"),
        Action::Pause,
        "validation: reject holds the headers until the body is checked"
    );
    vm.request_body(s, tool_call(7, "echo").as_bytes(), true)
        .expect("body");

    // Trace context: same trace id, new span id, upstream sees it; the body passes unchanged.
    let upstream = vm.request_header(s, "traceparent").expect("injected");
    assert!(upstream.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
    assert!(!upstream.contains("b7ad6b7169203331"), "a new span id");
    assert_eq!(
        vm.forwarded_request_body(s),
        tool_call(7, "echo").into_bytes()
    );
    let state = vm.filter_state(s);
    assert_eq!(
        state.get("mcp_method").map(Vec::as_slice),
        Some(&b"tools/call"[..])
    );
    assert_eq!(state.get("mcp_tool").map(Vec::as_slice), Some(&b"echo"[..]));
    assert_eq!(
        state.get("mcp_instance").map(Vec::as_slice),
        Some(&b"demo"[..])
    );

    world.advance(Duration::from_millis(25));
    vm.response_headers(s, &json_response(), false)
        .expect("headers");
    assert_eq!(
        vm.response_header(s, "x-mcp-trace-id").as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    vm.response_body(s, ok_result(7).as_bytes(), true)
        .expect("body");
    vm.complete(s).expect("complete");

    let events = events(&vm);
    assert_eq!(
        names(&events),
        ["request", "director.before", "director.after", "response"]
    );
    let request = &events[0];
    assert_eq!(request["mcp.method.name"], "tools/call");
    assert_eq!(request["gen_ai.tool.name"], "echo");
    assert_eq!(request["jsonrpc.request.id"], "7");
    assert_eq!(request["mcp.message.kind"], "request");
    assert_eq!(request["instance_id"], "demo");
    assert_eq!(request["mcp.session.id"], "sess-1");
    assert_eq!(request["mcp.protocol.version"], "2025-06-18");
    assert_eq!(request["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(request["parent_span_id"], "b7ad6b7169203331");
    assert_eq!(request["trace.origin"], "header");
    assert_eq!(request["token_header"], "authorization");
    assert!(request["token"]
        .as_str()
        .expect("token")
        .starts_with("sha256:"));
    assert_eq!(request["mcp.classified_from"], "body");
    let args = request["gen_ai.tool.call.arguments"]
        .as_str()
        .expect("captured");
    assert!(
        args.contains("[REDACTED]") && !args.contains("hunter2"),
        "{args}"
    );
    let response = &events[3];
    assert_eq!(response["mcp.outcome"], "ok");
    assert_eq!(response["http.response.status_code"], 200);
    assert_eq!(response["duration_ms"], 25.0);
    assert_eq!(response["jsonrpc.request.id"], "7");
    assert!(response.get("gen_ai.tool.call.arguments").is_none());
    // source/seq: one source per VM, consecutive seq.
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(events.iter().all(|e| e["source"] == events[0]["source"]));
    // No raw credential or redacted secret anywhere in what the filter logged.
    assert!(vm
        .logs()
        .iter()
        .all(|l| !l.message.contains(TOKEN) && !l.message.contains("hunter2")));
}

#[test]
fn jsonrpc_error_and_tool_error_outcomes() {
    let (_world, mut vm) = setup();
    let h = post_headers("/mcp/demo/mcp");
    exchange_json(
        &mut vm,
        &h,
        &tool_call(1, "fail"),
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad"}}"#,
    );
    exchange_json(
        &mut vm,
        &h,
        &tool_call(2, "tool_error"),
        r#"{"jsonrpc":"2.0","id":2,"result":{"content":[],"isError":true}}"#,
    );
    let events = events(&vm);
    let responses = named(&events, "response");
    assert_eq!(responses[0]["mcp.outcome"], "jsonrpc_error");
    assert_eq!(responses[0]["error.type"], "-32602");
    assert_eq!(responses[0]["rpc.response.status_code"], "-32602");
    assert_eq!(responses[1]["mcp.outcome"], "tool_error");
    assert_eq!(responses[1]["error.type"], "tool_error");
}

/// An SSE response with a progress notification and the result, split at every byte.
#[test]
fn sse_response_matched_by_id_at_every_chunk_boundary() {
    let stream = format!(
        "id: 0\nretry: 3000\ndata: \n\n{}{}",
        sse_event(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#),
        sse_event(&ok_result(3))
    );
    for split in (0..stream.len()).step_by(7) {
        let (world, mut vm) = setup();
        let s = send_request(
            &mut vm,
            &post_headers("/mcp/demo/mcp"),
            &tool_call(3, "progress"),
        );
        vm.response_headers(s, &sse_response(), false)
            .expect("headers");
        let (a, b) = stream.as_bytes().split_at(split);
        world.advance(Duration::from_millis(5));
        assert_eq!(vm.response_body(s, a, false).expect("a"), Action::Continue);
        world.advance(Duration::from_millis(5));
        assert_eq!(vm.response_body(s, b, false).expect("b"), Action::Continue);
        let responses = events(&vm)
            .into_iter()
            .filter(|e| e["event"] == "response")
            .collect::<Vec<_>>();
        assert_eq!(
            responses.len(),
            1,
            "split {split}: the response is seen before the stream ends"
        );
        assert_eq!(responses[0]["mcp.outcome"], "ok");
        assert_eq!(responses[0]["jsonrpc.request.id"], "3");
        let expected_ms = if split < stream.len() - 2 { 10.0 } else { 5.0 };
        assert_eq!(responses[0]["duration_ms"], expected_ms, "split {split}");
        vm.response_body(s, b"", true).expect("end");
        vm.complete(s).expect("complete");
        let events = events(&vm);
        let eof = named(&events, "sse.eof");
        assert_eq!(eof.len(), 1);
        assert_eq!(eof[0]["sse.messages"], 3);
        assert_eq!(
            named(&events, "response").len(),
            1,
            "exactly one response per request"
        );
        assert_eq!(
            vm.forwarded_response_body(s),
            stream.as_bytes(),
            "stream passes unchanged"
        );
    }
}

#[test]
fn batch_gets_one_entry_per_element_with_its_own_outcome() {
    let (_world, mut vm) = setup();
    let body = format!(
        r#"[{},{{"jsonrpc":"2.0","id":"b","method":"tools/list"}},{{"jsonrpc":"2.0","method":"notifications/progress"}}]"#,
        tool_call(1, "echo")
    );
    let response = format!(
        r#"[{{"jsonrpc":"2.0","id":"b","error":{{"code":-32601,"message":"no"}}}},{}]"#,
        ok_result(1)
    );
    exchange_json(&mut vm, &post_headers("/mcp/demo/mcp"), &body, &response);
    let events = events(&vm);
    let requests = named(&events, "request");
    assert_eq!(requests.len(), 3);
    for (i, r) in requests.iter().enumerate() {
        assert_eq!(r["jsonrpc.batch.size"], 3);
        assert_eq!(r["jsonrpc.batch.index"], i);
    }
    let responses = named(&events, "response");
    assert_eq!(responses.len(), 3);
    let by_method = |m: &str| -> &Value {
        responses
            .iter()
            .find(|r| r["mcp.method.name"] == m)
            .expect("response for method")
    };
    assert_eq!(by_method("tools/call")["mcp.outcome"], "ok");
    assert_eq!(by_method("tools/list")["mcp.outcome"], "jsonrpc_error");
    assert_eq!(by_method("tools/list")["error.type"], "-32601");
    assert_eq!(
        by_method("notifications/progress")["mcp.outcome"],
        "accepted"
    );
}

#[test]
fn sep_2243_headers_classify_without_holding_and_mismatch_is_reported() {
    let (_world, mut vm) = setup();
    let h = headers::with(post_headers("/mcp/demo/mcp"), "mcp-method", "tools/call");
    let h = headers::with(h, "mcp-name", "echo");
    let s = vm.new_stream().expect("stream");
    assert_eq!(
        vm.request_headers(s, &h, false).expect("headers"),
        Action::Continue
    );
    assert!(vm.request_header(s, "traceparent").is_some());
    let body = tool_call(4, "delete_everything");
    let (a, b) = body.as_bytes().split_at(10);
    assert_eq!(vm.request_body(s, a, false).expect("a"), Action::Continue);
    assert_eq!(vm.request_body(s, b, true).expect("b"), Action::Continue);
    assert_eq!(vm.forwarded_request_body(s), body.as_bytes());
    let events = events(&vm);
    let mismatch = named(&events, "header.body.mismatch");
    assert_eq!(mismatch.len(), 1);
    assert_eq!(mismatch[0]["reason"], "name");
    assert_eq!(mismatch[0]["mcp.header.name"], "echo");
    assert_eq!(mismatch[0]["gen_ai.tool.name"], "delete_everything");
    assert_eq!(mismatch[0]["level"], "warn");
}

#[test]
fn invalid_requests_are_rejected_with_jsonrpc_errors() {
    let (_world, mut vm) = setup();
    let cases = [
        ("{not json", -32700, "invalid_json"),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            -32600,
            "not_jsonrpc_2_0",
        ),
        (r#"{"jsonrpc":"2.0","id":1}"#, -32600, "missing_method"),
        ("[]", -32600, "empty_batch"),
    ];
    for (body, code, reason) in cases {
        let s = send_request(&mut vm, &post_headers("/mcp/demo/mcp"), body);
        let reply = vm.local_reply(s).expect("rejected locally");
        assert_eq!(reply.status_code, 400);
        let json: Value = serde_json::from_slice(&reply.body).expect("JSON-RPC error body");
        assert_eq!(json["error"]["code"], code, "{body}");
        assert!(
            vm.forwarded_request_body(s).is_empty(),
            "nothing reached the upstream"
        );
        vm.complete(s).expect("complete");
        let events = events(&vm);
        let failed = named(&events, "request.validation.failed");
        assert_eq!(failed.last().expect("event")["reason"], reason);
    }
    // Wrong content type.
    let h = headers::with(
        headers::request("POST", "/mcp/demo/mcp"),
        "content-type",
        "text/plain",
    );
    let s = send_request(&mut vm, &h, &tool_call(1, "echo"));
    assert_eq!(vm.local_reply(s).expect("rejected").status_code, 400);
    let events = events(&vm);
    assert_eq!(
        named(&events, "request.validation.failed")
            .last()
            .expect("e")["reason"],
        "wrong_content_type"
    );
}

#[test]
fn observe_policy_lets_invalid_requests_through() {
    let world = World::new();
    let mut vm = load(
        &world,
        r#"{"validation": "observe", "hold_request": "when_needed"}"#,
    );
    let s = vm.new_stream().expect("stream");
    assert_eq!(
        vm.request_headers(s, &post_headers("/mcp"), false)
            .expect("headers"),
        Action::Continue,
        "nothing to decide before the body: forwarded at once"
    );
    vm.request_body(s, b"{oops", true).expect("body");
    assert!(vm.local_reply(s).is_none());
    assert_eq!(vm.forwarded_request_body(s), b"{oops");
    let events = events(&vm);
    assert_eq!(
        named(&events, "request.validation.failed")[0]["detail"],
        "observed"
    );
}

#[test]
fn unknown_instances_are_rejected_and_create_no_state() {
    let (_world, mut vm) = setup();
    let s = vm.new_stream().expect("stream");
    vm.request_headers(s, &post_headers("/mcp/evil/mcp"), false)
        .expect("headers");
    let reply = vm.local_reply(s).expect("rejected");
    assert_eq!(reply.status_code, 404);
    let events = events(&vm);
    let missing = named(&events, "instance.missing");
    assert_eq!(missing[0]["reason"], "not_allowed");
    assert_eq!(missing[0]["detail"], "evil");
    assert!(vm.world().shared_data_snapshot().is_empty());
}

#[test]
fn bodies_over_the_cap_still_flow_and_say_they_were_not_inspected() {
    let (_world, mut vm) = setup();
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(10_000)
    );
    let h = headers::with(post_headers("/mcp/demo/mcp"), "mcp-method", "tools/call");
    let h = headers::with(h, "mcp-name", "echo");
    let s = vm.new_stream().expect("stream");
    vm.request_headers(s, &h, false).expect("headers");
    for chunk in big.as_bytes().chunks(1000) {
        assert_eq!(
            vm.request_body(s, chunk, false).expect("chunk"),
            Action::Continue
        );
    }
    vm.request_body(s, b"", true).expect("end");
    assert_eq!(vm.forwarded_request_body(s), big.as_bytes());
    let events = events(&vm);
    let request = named(&events, "request")[0];
    assert_eq!(request["mcp.body.inspected"], false);
    assert_eq!(request["mcp.classified_from"], "headers");
    assert_eq!(request["gen_ai.tool.name"], "echo");
    // Held (no SEP-2243 headers): released once the cap is passed, never rejected.
    let s = vm.new_stream().expect("stream");
    vm.request_headers(s, &post_headers("/mcp/demo/mcp"), false)
        .expect("headers");
    let (a, b) = big.as_bytes().split_at(3000);
    assert_eq!(vm.request_body(s, a, false).expect("a"), Action::Pause);
    assert_eq!(vm.request_body(s, b, true).expect("b"), Action::Continue);
    assert!(vm.local_reply(s).is_none());
    assert_eq!(vm.forwarded_request_body(s), big.as_bytes());
}

#[test]
fn meta_traceparent_is_adopted_when_no_header_came() {
    let (_world, mut vm) = setup();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"traceparent":"00-11111111111111111111111111111111-2222222222222222-01"}}}"#;
    let s = send_request(&mut vm, &post_headers("/mcp/demo/mcp"), body);
    let upstream = vm.request_header(s, "traceparent").expect("injected");
    assert!(
        upstream.starts_with("00-11111111111111111111111111111111-"),
        "{upstream}"
    );
    let events = events(&vm);
    assert_eq!(events[0]["trace.origin"], "meta");
    assert_eq!(events[0]["parent_span_id"], "2222222222222222");
}

#[test]
fn generated_trace_when_none_or_invalid() {
    let (_world, mut vm) = setup();
    let h = headers::with(post_headers("/mcp/demo/mcp"), "traceparent", "garbage");
    let s = send_request(&mut vm, &h, &tool_call(1, "echo"));
    let upstream = vm.request_header(s, "traceparent").expect("injected");
    assert_eq!(upstream.len(), 55);
    assert!(!upstream.contains("garbage"));
    let events = events(&vm);
    assert_eq!(events[0]["trace.origin"], "generated");
    assert!(events[0].get("parent_span_id").is_none());
}

/// Legacy HTTP+SSE: the endpoint event is rewritten under the gateway prefix, and a response
/// delivered on the GET stream is matched to the POST that asked for it, although the POST
/// went through another worker's VM (they share only Envoy's shared data).
#[test]
fn legacy_sse_endpoint_rewrite_and_cross_worker_matching() {
    let (world, mut vm) = setup();
    let mut other_worker = load(&world, CONFIG);
    let get = vm.new_stream().expect("stream");
    let h = headers::with(
        headers::request("GET", "/mcp/legacy/sse"),
        "accept",
        "text/event-stream",
    );
    vm.request_headers(get, &h, true).expect("headers");
    vm.response_headers(get, &sse_response(), false)
        .expect("response headers");
    assert_eq!(
        vm.response_body(get, b"event: endpoint\ndata: /message?sess", false)
            .expect("part"),
        Action::Pause
    );
    assert_eq!(
        vm.response_body(get, b"ionId=abc\n\n", false)
            .expect("rest"),
        Action::Continue
    );
    assert_eq!(
        vm.forwarded_response_body(get),
        b"event: endpoint\ndata: /mcp/legacy/message?sessionId=abc\n\n"
    );

    let post = send_request(
        &mut other_worker,
        &post_headers("/mcp/legacy/message?sessionId=abc"),
        &tool_call(5, "echo"),
    );
    other_worker
        .response_headers(post, &headers::response(202), true)
        .expect("202");
    other_worker.complete(post).expect("complete");
    let post_events = events(&other_worker);
    assert!(
        named(&post_events, "response").is_empty(),
        "the answer comes on the stream"
    );

    world.advance(Duration::from_millis(40));
    vm.response_body(get, sse_event(&ok_result(5)).as_bytes(), false)
        .expect("message");
    let events = events(&vm);
    let rewrite = named(&events, "sse.endpoint.rewrite");
    assert_eq!(
        rewrite[0]["detail"],
        "/message?sessionId=abc -> /mcp/legacy/message?sessionId=abc"
    );
    let responses = named(&events, "response");
    assert_eq!(responses.len(), 1);
    let r = responses[0];
    assert_eq!(r["gen_ai.tool.name"], "echo");
    assert_eq!(r["jsonrpc.request.id"], "5");
    assert_eq!(r["mcp.outcome"], "ok");
    assert_eq!(r["mcp.transport"], "sse");
    assert_eq!(r["duration_ms"], 40.0);
    assert_eq!(
        r["url.path"], "/mcp/legacy/message",
        "the POST's context, not the stream's"
    );
    assert_eq!(
        r["trace_id"],
        named(&post_events, "request")[0]["trace_id"],
        "the POST's trace"
    );
    vm.response_body(get, sse_event(&ok_result(5)).as_bytes(), false)
        .expect("the same answer again");
    assert_eq!(
        named(&test_support::filter_vm::events(&vm), "response").len(),
        1,
        "a parked request is answered once"
    );
}

#[test]
fn stream_end_reasons_become_events() {
    let (_world, mut vm) = setup();
    // Client went away before the response.
    let s = send_request(
        &mut vm,
        &post_headers("/mcp/demo/mcp"),
        &tool_call(1, "slow"),
    );
    vm.set_stream_property(
        s,
        &["response", "code_details"],
        b"downstream_remote_disconnect".to_vec(),
    )
    .expect("property");
    vm.complete(s).expect("complete");
    // Upstream failed before responding (Envoy's 503).
    let s = send_request(
        &mut vm,
        &post_headers("/mcp/demo/mcp"),
        &tool_call(2, "echo"),
    );
    vm.response_headers(s, &headers::response(503), false)
        .expect("503");
    vm.response_body(s, b"no healthy upstream", true)
        .expect("body");
    vm.set_stream_property(
        s,
        &["response", "code_details"],
        b"no_healthy_upstream".to_vec(),
    )
    .expect("property");
    vm.complete(s).expect("complete");
    // Upstream stream broke mid-SSE.
    let s = send_request(
        &mut vm,
        &post_headers("/mcp/demo/mcp"),
        &tool_call(3, "echo"),
    );
    vm.response_headers(s, &sse_response(), false).expect("sse");
    vm.response_body(s, b"data: {", false).expect("partial");
    vm.set_stream_property(
        s,
        &["response", "code_details"],
        b"upstream_reset_after_response_started{connection_termination}".to_vec(),
    )
    .expect("property");
    vm.set_stream_property(s, &["response", "code"], values::int(200))
        .expect("property");
    vm.complete(s).expect("complete");

    let events = events(&vm);
    assert_eq!(named(&events, "client.canceled").len(), 1);
    assert_eq!(
        named(&events, "upstream.error")[0]["envoy.response.code_details"],
        "no_healthy_upstream"
    );
    assert_eq!(named(&events, "upstream.connection.interrupted").len(), 1);
    let outcomes: Vec<&Value> = named(&events, "response")
        .iter()
        .map(|r| &r["mcp.outcome"])
        .collect();
    assert_eq!(
        outcomes,
        ["canceled", "upstream_error", "upstream_interrupted"]
    );
}

#[test]
fn non_mcp_methods_and_unknown_versions_are_reported() {
    let (_world, mut vm) = setup();
    let s = vm.new_stream().expect("stream");
    let h = headers::with(
        headers::request("PUT", "/mcp/demo/mcp"),
        "mcp-protocol-version",
        "1999-01-01",
    );
    assert_eq!(
        vm.request_headers(s, &h, true).expect("headers"),
        Action::Continue
    );
    let events = events(&vm);
    assert_eq!(named(&events, "access.unsupported")[0]["detail"], "PUT");
    assert_eq!(
        named(&events, "protocol.unsupported")[0]["detail"],
        "1999-01-01"
    );
}

/// Garbage in any shape never traps the VM and never blocks the stream.
#[test]
fn hostile_bodies_never_trap() {
    let (_world, mut vm) = setup();
    let deep = "[".repeat(50_000);
    let bodies: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x80],
        deep.into_bytes(),
        b"\"just a string\"".to_vec(),
        format!(
            "[{}]",
            vec![r#"{"jsonrpc":"2.0","method":"ping","id":1}"#; 2000].join(",")
        )
        .into_bytes(),
    ];
    let world = World::new();
    let mut observing = load(
        &world,
        r#"{"validation":"observe","max_body_bytes":1048576}"#,
    );
    for body in &bodies {
        let s = observing.new_stream().expect("stream");
        observing
            .request_headers(s, &post_headers("/mcp"), false)
            .expect("headers");
        assert_eq!(
            observing.request_body(s, body, true).expect("body"),
            Action::Continue
        );
        observing
            .response_headers(s, &sse_response(), false)
            .expect("sse");
        observing
            .response_body(s, body, true)
            .expect("garbage stream");
        observing.complete(s).expect("complete");
        let s = vm.new_stream().expect("stream");
        vm.request_headers(s, &post_headers("/mcp/demo/mcp"), false)
            .expect("headers");
        vm.request_body(s, body, true).expect("body");
        vm.complete(s).expect("complete");
    }
    assert!(!vm.trapped() && !observing.trapped());
    let batch_requests = named(&events(&observing), "request").len();
    assert_eq!(
        batch_requests,
        1 + 1 + 1 + 256,
        "batch elements are itemised up to the cap"
    );
}

/// Deterministic cost figures (wasmtime fuel) for the closing note and `make bench`.
#[test]
fn fuel_per_tools_call_lifecycle() {
    let (_world, mut vm) = setup();
    let h = post_headers("/mcp/demo/mcp");
    exchange_json(&mut vm, &h, &tool_call(1, "echo"), &ok_result(1)); // warm up
    vm.reset_fuel();
    exchange_json(&mut vm, &h, &tool_call(2, "echo"), &ok_result(2));
    let json_fuel = vm.fuel_consumed();
    vm.reset_fuel();
    let s = send_request(&mut vm, &h, &tool_call(3, "echo"));
    vm.response_headers(s, &sse_response(), false).expect("sse");
    vm.response_body(s, sse_event(&ok_result(3)).as_bytes(), true)
        .expect("body");
    vm.complete(s).expect("complete");
    let sse_fuel = vm.fuel_consumed();
    println!("fuel per tools/call lifecycle: json={json_fuel} sse={sse_fuel}");
    assert!(json_fuel > 0 && sse_fuel > 0);
}
