//! Wasm-level tests of event shipping: batching thresholds, tick flush, retry with backoff on a
//! failing callout, drop-oldest under a tiny buffer with exact counts, the status record, seq
//! continuity and the filter's Envoy stats. The collector is played by the test host's
//! callout API.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proxy_wasm_test_host::{headers, HttpCall, Vm, World};
use serde_json::Value;
use std::time::Duration;
use test_support::filter_vm::*;

fn config(collector: &str) -> String {
    format!(r#"{{"min_level": "info", "collector": {collector}}}"#)
}

/// One GET exchange: `request` and `response` events at the `info` level.
fn exchange(vm: &mut Vm) {
    let s = vm.new_stream().expect("stream");
    vm.set_stream_property(s, &["xds", "cluster_name"], b"demo".to_vec())
        .expect("property");
    vm.request_headers(s, &headers::request("GET", "/mcp"), true)
        .expect("headers");
    vm.response_headers(s, &headers::response(200), true)
        .expect("response");
    vm.complete(s).expect("complete");
}

fn batch_lines(call: &HttpCall) -> Vec<Value> {
    std::str::from_utf8(&call.body)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON"))
        .collect()
}

fn events_of(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l.get("kind").is_none()).collect()
}

fn status_of(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["kind"] == "status")
        .expect("status record")
}

fn only_call(vm: &Vm) -> HttpCall {
    let calls = vm.pending_http_calls();
    assert_eq!(calls.len(), 1, "one batch in flight: {calls:?}");
    calls[0].clone()
}

fn accept(vm: &mut Vm, call: &HttpCall) {
    let n = events_of(&batch_lines(call)).len();
    let body = format!(r#"{{"accepted":{n},"rejected":[],"duplicates":0}}"#);
    vm.http_call_response(
        call.token,
        200,
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .expect("response delivered");
}

/// A shipping VM (batches of `max_batch_events`, no age flush) after `n` exchanges.
fn after_exchanges(world: &World, max_batch_events: usize, n: usize) -> Vm {
    let mut vm = load(
        world,
        &config(&format!(
            r#"{{"token":"x","max_batch_events":{max_batch_events},"flush_interval_ms":60000}}"#
        )),
    );
    vm.tick().expect("the flush clock starts");
    for _ in 0..n {
        exchange(&mut vm);
    }
    vm
}

#[test]
fn batches_by_count_with_callout_shape_and_stats() {
    let world = World::new();
    let mut vm = load(
        &world,
        &config(
            r#"{"cluster":"collector","authority":"collector.local","token":"t0k3n-for-the-collector","max_batch_events":3,"flush_interval_ms":60000}"#,
        ),
    );
    assert_eq!(vm.tick_period(), Some(Duration::from_millis(100)));
    exchange(&mut vm); // 2 events
    vm.tick().expect("tick");
    assert!(
        vm.pending_http_calls().is_empty(),
        "below the count threshold: age is what would send it"
    );
    exchange(&mut vm); // 4 events
    vm.tick().expect("tick");
    let call = only_call(&vm);
    assert_eq!(call.upstream, "collector");
    assert_eq!(call.header(":method"), Some("POST"));
    assert_eq!(call.header(":path"), Some("/v1/logs"));
    assert_eq!(call.header(":authority"), Some("collector.local"));
    assert_eq!(call.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(
        call.header("authorization"),
        Some("Bearer t0k3n-for-the-collector")
    );
    let lines = batch_lines(&call);
    let events = events_of(&lines);
    assert_eq!(events.len(), 3, "max_batch_events");
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(status_of(&lines)["emitted"], 4);
    assert!(
        vm.logs()
            .iter()
            .all(|l| !l.message.starts_with("mcp_event ")),
        "not logged when shipping"
    );
    accept(&mut vm, &call);
    vm.tick().expect("tick");
    assert!(
        vm.pending_http_calls().is_empty(),
        "1 event left: waits for count or age"
    );
    assert_eq!(world.counter("mcp_filter_events_emitted"), Some(4));
    assert_eq!(world.counter("mcp_filter_events_shipped"), Some(3));
}

#[test]
fn a_full_backlog_ships_back_to_back_without_waiting_for_ticks() {
    let world = World::new();
    let mut vm = after_exchanges(&world, 2, 3); // 6 events: three full batches
    vm.tick().expect("tick");
    let mut shipped = Vec::new();
    for _ in 0..3 {
        let call = only_call(&vm);
        shipped.extend(
            events_of(&batch_lines(&call))
                .iter()
                .map(|e| e["seq"].as_u64().unwrap_or(0)),
        );
        accept(&mut vm, &call); // the answer itself sends the next full batch
    }
    assert_eq!(shipped, [1, 2, 3, 4, 5, 6]);
    assert!(vm.pending_http_calls().is_empty());
}

#[test]
fn tick_flushes_by_age() {
    let world = World::new();
    let mut vm = load(&world, &config(r#"{"token":"x","flush_interval_ms":1000}"#));
    exchange(&mut vm);
    vm.tick().expect("first tick starts the flush clock");
    assert!(vm.pending_http_calls().is_empty());
    world.advance(Duration::from_millis(1000));
    vm.tick().expect("tick");
    let call = only_call(&vm);
    accept(&mut vm, &call);
    exchange(&mut vm);
    world.advance(Duration::from_millis(500));
    vm.tick().expect("tick");
    assert!(
        vm.pending_http_calls().is_empty(),
        "younger than flush_interval"
    );
    world.advance(Duration::from_millis(600));
    vm.tick().expect("tick");
    let call = only_call(&vm);
    let seqs: Vec<u64> = events_of(&batch_lines(&call))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, [3, 4]);
}

#[test]
fn failing_callouts_are_retried_with_backoff_then_delivered_once() {
    let world = World::new();
    let mut vm = load(
        &world,
        &config(
            r#"{"token":"x","backoff_initial_ms":1000,"backoff_max_ms":8000,"flush_interval_ms":100}"#,
        ),
    );
    vm.tick().expect("the flush clock starts");
    exchange(&mut vm);
    world.advance(Duration::from_millis(100));
    vm.tick().expect("tick");
    let first = only_call(&vm);
    vm.http_call_failure(first.token)
        .expect("failure delivered");
    exchange(&mut vm);
    vm.tick().expect("tick");
    assert!(
        vm.pending_http_calls().is_empty(),
        "backing off after a failure"
    );
    world.advance(Duration::from_millis(1001));
    vm.tick().expect("tick");
    let retry = only_call(&vm);
    assert_eq!(
        events_of(&batch_lines(&retry)),
        events_of(&batch_lines(&first)),
        "the same batch again"
    );
    vm.http_call_response(
        retry.token,
        503,
        &[("content-type", "text/plain")],
        b"overloaded",
    )
    .expect("503");
    world.advance(Duration::from_millis(999));
    vm.tick().expect("tick");
    assert!(
        vm.pending_http_calls().is_empty(),
        "second backoff is at least 1 s"
    );
    world.advance(Duration::from_millis(1001));
    vm.tick().expect("tick");
    let third = only_call(&vm);
    assert_eq!(
        events_of(&batch_lines(&third)),
        events_of(&batch_lines(&first))
    );
    accept(&mut vm, &third);
    world.advance(Duration::from_millis(100));
    vm.tick().expect("tick");
    let rest = only_call(&vm);
    let seqs: Vec<u64> = events_of(&batch_lines(&rest))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, [3, 4], "order kept, nothing lost or repeated");
    assert_eq!(
        status_of(&batch_lines(&rest))["dropped"]["callout_failed"],
        0
    );
}

#[test]
fn tiny_buffer_drops_oldest_with_exact_counts() {
    let world = World::new();
    let mut vm = load(
        &world,
        &config(
            r#"{"token":"x","buffer_bytes":4096,"max_batch_bytes":4096,"max_batch_events":1000}"#,
        ),
    );
    // The collector is down: the first batch fails and every later event competes for 4 KiB.
    vm.tick().expect("the flush clock starts");
    exchange(&mut vm);
    world.advance(Duration::from_secs(1));
    vm.tick().expect("tick");
    let call = only_call(&vm);
    vm.http_call_failure(call.token).expect("failure");
    for _ in 0..40 {
        exchange(&mut vm);
    }
    let emitted = 2 + 80;
    world.advance(Duration::from_secs(60));
    vm.tick().expect("tick");
    let call = only_call(&vm);
    let lines = batch_lines(&call);
    let status = status_of(&lines);
    let kept = events_of(&lines).len() as u64;
    let dropped = status["dropped"]["buffer_full"].as_u64().expect("count");
    assert!(dropped > 0, "a 4 KiB buffer cannot hold 82 events");
    assert_eq!(status["emitted"], emitted);
    accept(&mut vm, &call);
    let mut shipped = kept;
    // Whatever is left goes out next; the identity must hold exactly.
    vm.tick().expect("tick");
    if let Some(call) = vm.pending_http_calls().first().cloned() {
        shipped += events_of(&batch_lines(&call)).len() as u64;
        accept(&mut vm, &call);
    }
    assert_eq!(shipped + dropped, emitted, "sent = shipped + dropped");
    // The newest survived: the last event shipped has the highest seq.
    let last = events_of(&lines)
        .last()
        .map(|e| e["seq"].as_u64().unwrap_or(0));
    assert!(last.is_some_and(|s| s > emitted - 10), "{last:?}");
    vm.tick().expect("tick");
    assert_eq!(
        world.counter("mcp_filter_events_dropped_buffer_full"),
        Some(dropped)
    );
}

#[test]
fn collector_rejections_are_counted_and_reported() {
    let world = World::new();
    let mut vm = load(&world, &config(r#"{"token":"wrong"}"#));
    vm.tick().expect("the flush clock starts");
    exchange(&mut vm);
    world.advance(Duration::from_secs(1));
    vm.tick().expect("tick");
    let call = only_call(&vm);
    vm.http_call_response(
        call.token,
        401,
        &[("content-type", "text/plain")],
        b"unauthorized",
    )
    .expect("401");
    exchange(&mut vm);
    world.advance(Duration::from_secs(2));
    vm.tick().expect("tick");
    let next = only_call(&vm);
    let status = status_of(&batch_lines(&next)).clone();
    assert_eq!(status["dropped"]["rejected_by_collector"], 2);
    assert_eq!(
        status["source"],
        events_of(&batch_lines(&next))[0]["source"]
    );
    assert!(status["ts"].as_str().is_some());
}

#[test]
fn collector_config_errors_name_the_field() {
    let world = World::new();
    let bad = config(r#"{"max_batch_bytes":10}"#);
    match Vm::load_file(&world, filter_wasm(), options(&bad)) {
        Ok(_) => panic!("must be refused"),
        Err(e) => assert!(
            format!("{e:#}").contains("collector.max_batch_bytes"),
            "{e:#}"
        ),
    }
}

#[test]
fn a_retired_vm_ships_its_buffer_before_reporting_done() {
    let world = World::new();
    let mut vm = after_exchanges(&world, 3, 4); // 8 events
    vm.tick()
        .expect("tick: one full batch goes out, five events stay buffered");
    let full = only_call(&vm);
    assert_eq!(events_of(&batch_lines(&full)).len(), 3);

    assert!(
        !vm.retire().expect("on_done"),
        "a batch is in flight: the VM asks Envoy to wait"
    );
    accept(&mut vm, &full);
    let second = only_call(&vm);
    accept(&mut vm, &second);
    let last = only_call(&vm);
    let seqs: Vec<u64> = events_of(&batch_lines(&last))
        .iter()
        .map(|e| e["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        seqs,
        [7, 8],
        "the partial batch goes out without waiting for its interval"
    );
    assert_eq!(vm.done_calls(), 0, "not done while a batch is in flight");
    accept(&mut vm, &last);
    assert_eq!(vm.done_calls(), 1, "proxy_done once everything is answered");
    assert!(vm.pending_http_calls().is_empty());
    assert!(!vm.trapped());
}

#[test]
fn a_retired_vm_drops_and_counts_what_the_collector_will_not_take() {
    let world = World::new();
    let mut vm = load(
        &world,
        &config(r#"{"token":"x","flush_interval_ms":60000}"#),
    );
    vm.tick().expect("the flush clock starts");
    exchange(&mut vm);
    assert!(vm.pending_http_calls().is_empty(), "below every threshold");
    assert!(
        !vm.retire().expect("on_done"),
        "the buffer goes out at once"
    );
    let call = only_call(&vm);
    assert_eq!(events_of(&batch_lines(&call)).len(), 2);
    vm.http_call_failure(call.token).expect("failure delivered");
    assert!(
        vm.pending_http_calls().is_empty(),
        "no retry for a retired VM"
    );
    assert_eq!(vm.done_calls(), 1);
    assert_eq!(
        world.counter("mcp_filter_events_dropped_callout_failed"),
        Some(2),
        "reported before proxy_done, without another tick"
    );

    let mut idle = load(&world, &config(r#"{"token":"x"}"#));
    assert!(
        idle.retire().expect("on_done"),
        "nothing buffered: done at once"
    );
    assert_eq!(idle.done_calls(), 0);
}
