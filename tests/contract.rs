//! The wire contract held together: the built filter (in the wasm test host) ships batches
//! for exchanges of many shapes, and host-collector's own line parser reads every line of
//! them. Each event must parse; its name, level, outcome and every top-level field must be
//! the contract's (`mcp_contract`); the columns the collector extracts must equal what the
//! filter wrote; the status record must account for every event. A change on one side that
//! the other does not follow fails here.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Utc;
use host_collector::ingest::wire::{parse_line, Line};
use mcp_contract::{fields, status::DropReason, EventName, Outcome};
use proxy_wasm_test_host::{headers, Vm, World};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;
use test_support::filter_vm::*;

const CONFIG: &str = r#"{
  "min_level": "debug",
  "validation": "reject",
  "arguments": {"capture": true},
  "upstream": {},
  "collector": {"cluster": "collector", "token": "contract-token-0123456789",
                "max_batch_events": 1000, "flush_interval_ms": 100}
}"#;

/// Exchanges that between them produce most events and fields of the contract.
fn traffic(vm: &mut Vm) {
    let traced = headers::with(post_headers("/mcp"), "traceparent", TRACEPARENT);
    let traced = headers::with(traced, "mcp-session-id", "session-1");
    let traced = headers::with(traced, "mcp-protocol-version", "2025-06-18");
    exchange_json(vm, &traced, &tool_call(1, "echo"), &ok_result(1));
    let tool_error = r#"{"jsonrpc":"2.0","id":2,"result":{"content":[],"isError":true}}"#;
    exchange_json(vm, &post_headers("/mcp"), &tool_call(2, "fail"), tool_error);
    let rpc_error = r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"bad"}}"#;
    exchange_json(vm, &post_headers("/mcp"), &tool_call(3, "nope"), rpc_error);
    // A tool name over the collector's column: the filter cuts it and says so.
    let long_name = "ü".repeat(300);
    let long_answer = r#"{"jsonrpc":"2.0","id":9,"result":{"content":[]}}"#;
    exchange_json(
        vm,
        &post_headers("/mcp"),
        &tool_call(9, &long_name),
        long_answer,
    );
    let batch = format!(
        r#"[{},{{"jsonrpc":"2.0","id":5}},{{"jsonrpc":"2.0","method":"notifications/progress","params":{{}}}}]"#,
        tool_call(4, "echo")
    );
    exchange_json(
        vm,
        &post_headers("/mcp"),
        &batch,
        &format!("[{}]", ok_result(4)),
    );
    let read = r#"{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"file:///a"}}"#;
    let s = send_request(vm, &post_headers("/mcp"), read);
    vm.response_headers(s, &sse_response(), false)
        .expect("headers");
    let answer = r#"{"jsonrpc":"2.0","id":6,"result":{"contents":[]}}"#;
    vm.response_body(s, sse_event(answer).as_bytes(), true)
        .expect("body");
    vm.complete(s).expect("complete");
    let s = send_request(vm, &post_headers("/mcp"), "{not json");
    vm.complete(s).expect("complete");
    let s = send_request(vm, &post_headers("/mcp"), &tool_call(7, "slow"));
    vm.set_stream_property(
        s,
        &["response", "code_details"],
        b"downstream_remote_disconnect".to_vec(),
    )
    .expect("property");
    vm.complete(s).expect("complete");
    let s = send_request(vm, &post_headers("/mcp"), &tool_call(8, "down"));
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
}

/// Every batch the filter sends, answered as accepted, as NDJSON lines.
fn shipped_lines(vm: &mut Vm, world: &World) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..50 {
        world.advance(Duration::from_millis(200));
        vm.tick().expect("tick");
        let calls = vm.pending_http_calls();
        if calls.is_empty() && !lines.is_empty() {
            break;
        }
        for call in calls {
            let body = String::from_utf8(call.body.clone()).expect("batches are UTF-8");
            lines.extend(body.lines().map(str::to_string));
            vm.http_call_response(
                call.token,
                200,
                &[("content-type", "application/json")],
                br#"{"accepted":0,"rejected":[],"duplicates":0}"#,
            )
            .expect("answer");
        }
    }
    lines
}

#[test]
fn every_line_the_filter_ships_is_read_by_the_collector_as_written() {
    let world = World::new();
    let mut vm = load(&world, CONFIG);
    traffic(&mut vm);
    let lines = shipped_lines(&mut vm, &world);
    assert!(lines.len() > 20, "{} lines", lines.len());

    let known_fields: BTreeSet<&str> = fields::ALL.iter().copied().collect();
    let (mut events, mut statuses, mut names) = (0u64, Vec::new(), BTreeSet::new());
    let mut cut_by_filter = 0;
    let mut outcomes = BTreeSet::new();
    for line in &lines {
        let json: Value = serde_json::from_str(line).expect("every line is JSON");
        for key in json.as_object().expect("an object").keys() {
            assert!(
                known_fields.contains(key.as_str()),
                "field {key:?} is not in the contract: {line}"
            );
        }
        match parse_line(line.as_bytes(), Utc::now().naive_utc()) {
            Ok(Line::Event {
                row,
                refingerprinted,
                truncated,
                response,
            }) => {
                assert_eq!(truncated, 0, "the filter writes within the columns: {line}");
                if json[fields::name::TRUNCATED].is_array() {
                    cut_by_filter += 1;
                }
                events += 1;
                let name = EventName::parse(&row.event).expect("a contract event name");
                names.insert(name.as_str());
                assert_eq!(row.level, name.level(), "{line}");
                assert!(!refingerprinted, "the filter sends fingerprints: {line}");
                let text = |field: &str| json[field].as_str().map(str::to_string);
                assert_eq!(row.trace_id, text(fields::name::TRACE_ID), "{line}");
                assert_eq!(row.span_id, text(fields::name::SPAN_ID), "{line}");
                assert_eq!(row.instance_id, text(fields::name::INSTANCE_ID), "{line}");
                assert_eq!(row.mcp_method, text(fields::name::METHOD), "{line}");
                assert_eq!(row.tool_name, text(fields::name::TOOL_NAME), "{line}");
                assert_eq!(row.token_header, text(fields::name::TOKEN_HEADER), "{line}");
                assert_eq!(row.token, text(fields::name::TOKEN), "{line}");
                assert!(!line.contains(TOKEN), "no credential on the wire: {line}");
                assert_eq!(row.source, json["source"].as_str().unwrap_or_default());
                assert_eq!(Some(row.seq), json["seq"].as_u64());
                assert_eq!(row.log, *line, "the whole line is stored as written");
                if name == EventName::Response {
                    let response = response.expect("response fields");
                    let outcome = response.outcome.expect("every response has an outcome");
                    let outcome = Outcome::parse(&outcome).expect("a contract outcome");
                    outcomes.insert(outcome.as_str());
                    if outcome.is_success() {
                        assert_eq!(response.error_type, None, "{line}");
                    } else {
                        assert!(response.error_type.is_some(), "{line}");
                    }
                    assert_eq!(response.duration_ms, json["duration_ms"].as_f64());
                }
            }
            Ok(Line::Status(status)) => statuses.push((status, json)),
            Err(reason) => panic!("the collector refused {line}: {reason}"),
        }
    }

    assert_eq!(
        cut_by_filter, 2,
        "the long tool name's request and response name what the filter cut"
    );
    for expected in [
        "request",
        "response",
        "director.before",
        "director.after",
        "request.validation.failed",
        "client.canceled",
        "sse.start",
        "sse.eof",
        "upstream.error",
    ] {
        assert!(names.contains(expected), "{expected} in {names:?}");
    }
    for expected in [
        "ok",
        "tool_error",
        "jsonrpc_error",
        "rejected",
        "canceled",
        "upstream_error",
    ] {
        assert!(outcomes.contains(expected), "{expected} in {outcomes:?}");
    }

    let (last, last_json) = statuses
        .last()
        .expect("status records ride with the batches");
    assert_eq!(
        last.emitted,
        Some(events),
        "the status record accounts for every event"
    );
    let reasons: BTreeSet<&str> = last.dropped.keys().map(String::as_str).collect();
    let contract: BTreeSet<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(reasons, contract);
    assert_eq!(last_json["kind"], mcp_contract::status::KIND);
}

/// Keyed fingerprints are one format on both sides: the filter's `fingerprint_key` and the
/// collector's `--fingerprint-key` give a credential the same `hmac-sha256:` fingerprint, so
/// a raw credential re-fingerprinted by the collector matches what keyed filters send.
#[test]
fn keyed_fingerprints_agree_between_the_filter_and_the_collector() {
    const KEY: &str = "contract-fingerprint-key-0123456789";
    let world = World::new();
    let mut vm = load(
        &world,
        &format!(r#"{{"fingerprint_key": "{KEY}", "min_level": "info"}}"#),
    );
    exchange_json(
        &mut vm,
        &post_headers("/mcp"),
        &tool_call(1, "echo"),
        &ok_result(1),
    );
    let events = events(&vm);
    let token = events[0]["token"].as_str().expect("a fingerprint");
    assert!(token.starts_with("hmac-sha256:"), "{token}");
    let credential = format!("Bearer {TOKEN}");
    assert_eq!(
        token,
        host_collector::ingest::wire::refingerprint(&credential, Some(KEY.as_bytes())),
        "the collector's keyed fingerprint of the raw credential"
    );
    assert_ne!(
        token,
        host_collector::ingest::wire::refingerprint(&credential, None),
        "not the unkeyed one"
    );
    let line = format!(
        r#"{{"ts":"2026-12-04T10:00:00Z","source":"s","seq":1,"event":"request","level":"info","token":"{token}"}}"#
    );
    let Ok(Line::Event {
        row,
        refingerprinted,
        ..
    }) = parse_line(line.as_bytes(), Utc::now().naive_utc())
    else {
        panic!("parses: {line}");
    };
    assert!(!refingerprinted, "a keyed fingerprint is kept as sent");
    assert_eq!(row.token.as_deref(), Some(token));

    // Without a key the filter says so at start, loudly; with one it does not.
    let warned = |vm: &Vm| {
        vm.logs()
            .iter()
            .any(|l| l.message.contains("no fingerprint_key"))
    };
    assert!(!warned(&vm));
    assert!(warned(&load(&world, r#"{"min_level": "info"}"#)));
}
