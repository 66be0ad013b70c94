//! Wasm-level test support: builds the filter for `wasm32-wasip1` once per test process,
//! loads it into the wasmtime proxy-wasm host, drives request lifecycles and reads the
//! events the filter wrote to its log.

#![allow(dead_code)]

pub mod envoy;

use proxy_wasm_test_host::{headers, StreamId, Vm, VmOptions, World};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const TOKEN: &str = "secret-token-7f3a9";
pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The release `.wasm`, built (or found up to date) once per test process, so a test never
/// runs against a stale build of the filter.
pub fn wasm_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = workspace_root();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(|d| root.join(d))
            .unwrap_or_else(|| root.join("target"));
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--profile",
                "wasm",
                "--target",
                "wasm32-wasip1",
                "-p",
                "mcp-filter",
            ])
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the filter for wasm32-wasip1 failed"
        );
        target.join("wasm32-wasip1/wasm/mcp_filter.wasm")
    })
}

/// An Envoy config with the freshly built filter (see `envoy::EnvoyConfig`).
pub fn envoy_yaml(config: &envoy::EnvoyConfig) -> String {
    config.render(&wasm_path().display().to_string())
}

/// Options as Envoy runs the filter in envoy/envoy.yaml.
pub fn options(config: &str) -> VmOptions {
    let mut opts = VmOptions::default().plugin_config(config.as_bytes().to_vec());
    opts.allow_on_headers_stop_iteration = true;
    opts
}

pub fn load(world: &World, config: &str) -> Vm {
    Vm::load_file(world, wasm_path(), options(config)).expect("filter loads")
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
