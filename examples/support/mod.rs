//! What the wasm-cost examples share: the benchmark workloads (bench/workloads.json), the
//! plugin configuration `make bench` gives Envoy, and one request lifecycle driven through
//! the filter in the wasmtime test host, phase by phase.

use proxy_wasm_test_host::{headers, StreamId, Vm, VmOptions, World};
use serde_json::Value;
use std::path::{Path, PathBuf};

const WORKLOADS: &str = include_str!("../../bench/workloads.json");
pub const COLLECTOR_TOKEN: &str = "bench-collector-token-0123456789";

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub struct Workload {
    pub name: String,
    pub path: String,
    pub request: String,
    pub status: u16,
    pub content_type: String,
    pub response: String,
}

pub fn workloads() -> Result<Vec<Workload>> {
    let doc: Value = serde_json::from_str(WORKLOADS)?;
    let list = doc["workloads"]
        .as_array()
        .ok_or("workloads.json: no `workloads` list")?;
    let field = |w: &Value, k: &str| -> Result<String> {
        w[k].as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("workloads.json: `{k}` missing").into())
    };
    list.iter()
        .map(|w| {
            Ok(Workload {
                name: field(w, "name")?,
                path: field(w, "path")?,
                request: field(w, "request")?,
                status: w["status"].as_u64().unwrap_or(200) as u16,
                content_type: field(w, "content_type")?,
                response: field(w, "response")?,
            })
        })
        .collect()
}

/// The plugin configuration: the filter's defaults plus a collector, as bench/run.py gives
/// Envoy; `top_extra` adds top-level fields (`"min_level": "debug", `), `collector_extra`
/// collector fields (`, "buffer_bytes": 1048576`).
pub fn plugin_config(top_extra: &str, collector_extra: &str) -> String {
    format!(
        r#"{{{top_extra}"collector": {{"cluster": "collector", "authority": "collector", "token": "{COLLECTOR_TOKEN}"{collector_extra}}}}}"#
    )
}

pub fn load(world: &World, wasm: &Path, config: &str) -> Result<Vm> {
    let mut opts = VmOptions::default().plugin_config(config.as_bytes().to_vec());
    // As in Envoy (docs/filter.md): required for the filter to read bodies while holding headers.
    opts.allow_on_headers_stop_iteration = true;
    opts.echo_logs = false;
    Ok(Vm::load_file(world, wasm, opts)?)
}

/// The callbacks of one lifecycle, in order, for the per-phase breakdown.
pub const PHASES: [&str; 5] = [
    "request_headers",
    "request_body",
    "response_headers",
    "response_body",
    "end",
];

/// Runs phase `i` of a lifecycle on stream `s` (phase 0 opens the stream).
pub fn phase(vm: &mut Vm, s: &mut Option<StreamId>, w: &Workload, i: usize) -> Result<()> {
    match i {
        0 => {
            let stream = vm.new_stream()?;
            *s = Some(stream);
            vm.set_stream_property(stream, &["xds", "cluster_name"], b"upstream".to_vec())?;
            let mut h = headers::request("POST", &w.path);
            for (k, v) in [
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("authorization", "Bearer bench-client-credential-7f3a9"),
                ("mcp-protocol-version", "2025-06-18"),
                ("mcp-session-id", "3c9a1f2e-5d4b-4a7e-9c1d-2b8e7f6a5c4d"),
            ] {
                h = headers::with(h, k, v);
            }
            vm.request_headers(stream, &h, false)?;
        }
        1 => {
            vm.request_body(s.ok_or("no stream")?, w.request.as_bytes(), true)?;
        }
        2 => {
            let rh = headers::with(headers::response(w.status), "content-type", &w.content_type);
            vm.response_headers(s.ok_or("no stream")?, &rh, false)?;
        }
        3 => {
            vm.response_body(s.ok_or("no stream")?, w.response.as_bytes(), true)?;
        }
        _ => vm.complete(s.ok_or("no stream")?)?,
    }
    Ok(())
}

/// One request lifecycle as Envoy drives it; returns the fuel of each phase.
pub fn lifecycle(vm: &mut Vm, w: &Workload) -> Result<[u64; 5]> {
    let mut phases = [0u64; 5];
    let mut stream = None;
    for (i, fuel) in phases.iter_mut().enumerate() {
        let before = vm.fuel_consumed();
        phase(vm, &mut stream, w, i)?;
        *fuel = vm.fuel_consumed() - before;
    }
    Ok(phases)
}

/// The filter `make` builds, under `CARGO_TARGET_DIR` or `target/`.
pub fn default_wasm() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"));
    target.join("wasm32-wasip1/wasm/mcp_filter.wasm")
}
