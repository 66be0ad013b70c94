//! Wasm-level tests of per-upstream health and the circuit breaker with several VMs (simulated
//! Envoy workers) sharing one shared-data store: transitions announced exactly once across
//! workers, the fast JSON-RPC 503 while open, probe limits, CAS conflicts injected between a
//! worker's read and its write, and the health endpoint.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proxy_wasm_test_host::{headers, Action, StreamId, Vm, World};
use serde_json::Value;
use std::time::Duration;
use test_support::filter_vm::*;

const CONFIG: &str = r#"{
  "upstream": {"breaker": {"failure_threshold": 3, "reset_timeout_ms": 1000, "success_threshold": 1}},
  "health_path": "/.well-known/mcp-gateway/health"
}"#;

const KEY: &str = "mcp-gw/v1/upstream/demo";

fn start(vm: &mut Vm, id: u64) -> StreamId {
    let s = vm.new_stream().expect("stream");
    vm.set_stream_property(s, &["xds", "cluster_name"], b"demo".to_vec())
        .expect("property");
    vm.request_headers(s, &post_headers("/mcp"), false)
        .expect("headers");
    vm.request_body(s, tool_call(id, "echo").as_bytes(), true)
        .expect("body");
    s
}

/// A call that fails the way Envoy reports a refused connection.
fn failing_call(vm: &mut Vm, id: u64) {
    let s = start(vm, id);
    vm.response_headers(s, &headers::response(503), false)
        .expect("503");
    vm.response_body(s, b"upstream connect error", true)
        .expect("body");
    vm.set_stream_property(
        s,
        &["response", "code_details"],
        b"upstream_reset_before_response_started{connection_failure}".to_vec(),
    )
    .expect("property");
    vm.complete(s).expect("complete");
}

fn good_call(vm: &mut Vm, id: u64, response: &str) {
    let s = start(vm, id);
    assert!(vm.local_reply(s).is_none(), "admitted");
    vm.response_headers(s, &json_response(), false)
        .expect("headers");
    vm.response_body(s, response.as_bytes(), true)
        .expect("body");
    vm.complete(s).expect("complete");
}

fn all_events(vms: &[&Vm]) -> Vec<Value> {
    vms.iter().flat_map(|vm| events(vm)).collect()
}

fn count(events: &[Value], name: &str) -> usize {
    events.iter().filter(|e| e["event"] == name).count()
}

fn health(vm: &mut Vm) -> (u32, Value) {
    let s = vm.new_stream().expect("stream");
    let action = vm
        .request_headers(
            s,
            &headers::request("GET", "/.well-known/mcp-gateway/health"),
            true,
        )
        .expect("headers");
    assert_eq!(action, Action::Pause);
    let reply = vm.local_reply(s).expect("answered by the filter");
    (
        reply.status_code,
        serde_json::from_slice(&reply.body).expect("JSON"),
    )
}

#[test]
fn breaker_lifecycle_across_two_workers() {
    let world = World::new();
    let mut a = load(&world, CONFIG);
    let mut b = load(&world, CONFIG);

    // Failures from both workers add up to the threshold.
    failing_call(&mut a, 1);
    failing_call(&mut b, 2);
    assert_eq!(count(&all_events(&[&a, &b]), "circuit.opened"), 0);
    failing_call(&mut a, 3);
    let events = all_events(&[&a, &b]);
    assert_eq!(
        count(&events, "circuit.opened"),
        1,
        "exactly one announcement"
    );
    let opened = events
        .iter()
        .find(|e| e["event"] == "circuit.opened")
        .expect("opened");
    assert_eq!(opened["reason"], "consecutive_failures");
    assert_eq!(opened["circuit"]["consecutive_failures"], 3);
    assert_eq!(opened["level"], "error");

    // Open: the other worker answers locally, with the request's id, without going upstream.
    let s = start(&mut b, 42);
    let reply = b.local_reply(s).expect("fast reply");
    assert_eq!(reply.status_code, 503);
    assert!(reply
        .headers
        .iter()
        .any(|(k, v)| k == "retry-after" && v == "1"));
    let body: Value = serde_json::from_slice(&reply.body).expect("JSON-RPC error");
    assert_eq!(body["id"], 42);
    assert_eq!(body["error"]["code"], -32003);
    assert!(b.forwarded_request_body(s).is_empty());
    b.complete(s).expect("complete");
    assert_eq!(count(&events_of(&b), "circuit.rejected"), 1);

    // After the reset timeout one probe goes through; a concurrent request is still refused.
    world.advance(Duration::from_millis(1001));
    let probe = start(&mut a, 5);
    assert!(a.local_reply(probe).is_none(), "the probe is admitted");
    let concurrent = start(&mut b, 6);
    assert_eq!(
        b.local_reply(concurrent).map(|r| r.status_code),
        Some(503),
        "probe limit 1"
    );
    b.complete(concurrent).expect("complete");
    a.response_headers(probe, &json_response(), false)
        .expect("headers");
    a.response_body(probe, ok_result(5).as_bytes(), true)
        .expect("body");
    a.complete(probe).expect("complete");

    let events = all_events(&[&a, &b]);
    assert_eq!(count(&events, "circuit.half_opened"), 1);
    assert_eq!(count(&events, "circuit.closed"), 1);
    let closed = events
        .iter()
        .find(|e| e["event"] == "circuit.closed")
        .expect("closed");
    assert_eq!(closed["reason"], "probes_succeeded");
    good_call(&mut b, 7, &ok_result(7));

    // A success cannot change the breaker's state, so b adds it up and merges it on its
    // next tick (one CAS per tick instead of one per call): until then a's report lacks it.
    let (_, before_tick) = health(&mut a);
    assert_eq!(before_tick["upstreams"][0]["successes"], 1);
    b.tick().expect("tick merges b's waiting results");
    let (status, report) = health(&mut a);
    assert_eq!(status, 200);
    let demo = &report["upstreams"][0];
    assert_eq!(demo["instance"], "demo");
    assert_eq!(demo["state"], "closed");
    assert_eq!(demo["healthy"], true);
    assert_eq!(demo["failures"], 3);
    assert_eq!(demo["successes"], 2);
    assert!(demo["p99_ms"].as_f64().is_some());
    a.tick().expect("tick reports stats");
    b.tick().expect("tick reports stats");
    assert_eq!(
        world.counter("mcp_filter_upstream.demo.rejections"),
        Some(2)
    );
    assert_eq!(world.counter("mcp_filter_upstream.demo.failures"), Some(3));
}

fn events_of(vm: &Vm) -> Vec<Value> {
    events(vm)
}

#[test]
fn jsonrpc_errors_and_tool_errors_do_not_trip_the_breaker() {
    let world = World::new();
    let mut vm = load(&world, CONFIG);
    for id in 0..10 {
        good_call(
            &mut vm,
            id,
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32602,"message":"bad"}}}}"#),
        );
    }
    let events = events(&vm);
    assert_eq!(count(&events, "circuit.opened"), 0);
    let (status, report) = health(&mut vm);
    assert_eq!(status, 200);
    assert_eq!(report["upstreams"][0]["state"], "closed");
}

/// Another worker writes between this worker's read and its CAS write, every third time it
/// reads: updates must be retried, never lost, and the counts stay exact. Failures write at
/// once (with what the worker had waiting), successes are merged on ticks; both hit conflicts.
#[test]
fn interleaved_cas_conflicts_lose_no_update() {
    let config = r#"{"upstream": {"breaker": {"failure_threshold": 1000}},
                     "health_path": "/.well-known/mcp-gateway/health"}"#;
    let world = World::new();
    let mut a = load(&world, config);
    let mut b = load(&world, config);
    good_call(&mut a, 0, &ok_result(0)); // creates the record
    let conflicts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let injected = conflicts.clone();
    world.on_shared_data_get(move |world, key| {
        if key == KEY && injected.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 3 == 0 {
            if let Some((value, _)) = world.shared_data(key) {
                world.set_shared_data(key, value);
            }
        }
    });
    let (mut successes, mut failures) = (1, 0);
    for id in 1..=40 {
        let vm = if id % 2 == 0 { &mut a } else { &mut b };
        if id % 4 == 1 {
            failing_call(vm, id);
            failures += 1;
        } else {
            good_call(vm, id, &ok_result(id));
            successes += 1;
        }
        if id % 10 == 0 {
            a.tick().expect("tick");
            b.tick().expect("tick");
        }
    }
    a.tick().expect("tick");
    b.tick().expect("tick");
    world.clear_shared_data_hooks();
    let (_, report) = health(&mut a);
    let demo = &report["upstreams"][0];
    assert_eq!(demo["successes"], successes, "every success counted once");
    assert_eq!(demo["failures"], failures, "every failure counted once");
    assert_eq!(demo["latency_samples"], successes + failures);
    a.tick().expect("tick");
    b.tick().expect("tick");
    let retries = world.counter("mcp_filter_cas_retries").unwrap_or(0);
    assert!(
        retries >= 5,
        "conflicts were injected and retried: {retries}"
    );
    assert_eq!(world.counter("mcp_filter_cas_lost_updates").unwrap_or(0), 0);
}

#[test]
fn only_bounded_instances_get_shared_state() {
    let world = World::new();
    let config = r#"{"instance": {"source": {"header": "x-mcp-instance"}, "pattern": "[a-z0-9]{1,12}"},
                     "upstream": {"max_instances": 2}}"#;
    let mut vm = load(&world, config);
    for name in ["one", "two", "three", "four"] {
        let s = vm.new_stream().expect("stream");
        let h = headers::with(post_headers("/mcp"), "x-mcp-instance", name);
        vm.request_headers(s, &h, false).expect("headers");
        vm.request_body(s, tool_call(1, "echo").as_bytes(), true)
            .expect("body");
        assert!(
            vm.local_reply(s).is_none(),
            "untracked instances are still served"
        );
        vm.complete(s).expect("complete");
    }
    let keys: Vec<String> = world.shared_data_snapshot().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "mcp-gw/v1/instances",
            "mcp-gw/v1/upstream/one",
            "mcp-gw/v1/upstream/two"
        ]
    );
    vm.tick().expect("tick");
    assert_eq!(world.counter("mcp_filter_upstreams_untracked"), Some(2));
}

/// Deterministic cost figure: extra wasm instructions (fuel) per request for health and
/// breaker accounting, same lifecycle with and without `upstream`.
#[test]
fn fuel_cost_of_upstream_accounting() {
    let measure = |config: &str| {
        let world = World::new();
        let mut vm = load(&world, config);
        good_call(&mut vm, 0, &ok_result(0)); // warm up, creates the record
        vm.reset_fuel();
        good_call(&mut vm, 1, &ok_result(1));
        vm.fuel_consumed()
    };
    let without = measure("{}");
    let with = measure(CONFIG);
    println!(
        "fuel per tools/call lifecycle: without upstream tracking {without}, with {with}, extra {}",
        with.saturating_sub(without)
    );
    assert!(with > without, "tracking does work on every request");
}
