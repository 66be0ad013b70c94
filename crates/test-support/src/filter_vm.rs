//! The filter in the wasmtime proxy-wasm host (tests/wasm-host): loading the built `.wasm`
//! as Envoy configures it, driving request lifecycles, and reading the events the filter
//! wrote to its log.

use proxy_wasm_test_host::{headers, StreamId, Vm, VmOptions, World};
use serde_json::Value;

pub use crate::envoy::filter_wasm;

pub const TOKEN: &str = "secret-token-7f3a9";
pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Options as Envoy runs the filter in envoy/envoy.yaml.
pub fn options(config: &str) -> VmOptions {
    let mut opts = VmOptions::default().plugin_config(config.as_bytes().to_vec());
    opts.allow_on_headers_stop_iteration = true;
    opts
}

pub fn load(world: &World, config: &str) -> Vm {
    Vm::load_file(world, filter_wasm(), options(config)).expect("filter loads")
}

/// The events the filter logged so far, parsed.
pub fn events(vm: &Vm) -> Vec<Value> {
    vm.logs()
        .iter()
        .filter_map(|entry| entry.message.strip_prefix("mcp_event "))
        .map(|json| serde_json::from_str(json).expect("event lines are JSON"))
        .collect()
}

/// Events with the given name.
pub fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

pub fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Request headers of an MCP POST, with a bearer credential.
pub fn post_headers(path: &str) -> headers::Headers {
    let h = headers::request("POST", path);
    let h = headers::with(h, "content-type", "application/json");
    let h = headers::with(h, "accept", "application/json, text/event-stream");
    headers::with(h, "authorization", &format!("Bearer {TOKEN}"))
}

pub fn json_response() -> headers::Headers {
    headers::with(headers::response(200), "content-type", "application/json")
}

pub fn sse_response() -> headers::Headers {
    headers::with(headers::response(200), "content-type", "text/event-stream")
}

/// A request whose body arrives whole: headers (held or forwarded, as the policy says), body.
pub fn send_request(vm: &mut Vm, h: &headers::Headers, body: &str) -> StreamId {
    let s = vm.new_stream().expect("stream");
    vm.request_headers(s, h, false).expect("headers");
    vm.request_body(s, body.as_bytes(), true).expect("body");
    s
}

/// A whole exchange with a JSON response.
pub fn exchange_json(vm: &mut Vm, h: &headers::Headers, body: &str, response: &str) -> StreamId {
    let s = send_request(vm, h, body);
    vm.response_headers(s, &json_response(), false)
        .expect("response headers");
    vm.response_body(s, response.as_bytes(), true)
        .expect("response body");
    vm.complete(s).expect("complete");
    s
}

pub fn tool_call(id: u64, tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"hi","password":"hunter2"}}}}}}"#
    )
}

pub fn ok_result(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"hi"}}]}}}}"#
    )
}

pub fn sse_event(data: &str) -> String {
    format!("event: message\ndata: {data}\n\n")
}
