//! Host-call calibration for `make bench`: the no-op filter (every callback continues) plus
//! `count` calls of one proxy-wasm host call per request, named by the plugin configuration
//! `{"hostcall": "<call>", "count": N}`. Measured against the no-op filter in the same run,
//! `(CPU/request - no-op) / N` is what one such call costs in this Envoy and runtime: the
//! price list for the MCP filter's own host calls (bench/run.py, "Host call cost").
//!
//! Calls: `get_current_time` (returns a number), `get_property` (`xds.cluster_name`),
//! `get_header_map_pairs` (the request headers), `get_header_map_value` (`content-type`),
//! `replace_header_map_value` (a request header), `get_buffer_bytes` (the request body, from
//! its body callback). Calls that return bytes make the host allocate them in the VM, a call
//! back into wasm; `get_current_time` returns a number and makes none, so the gap between its
//! price and the others' is mostly that call back.
#![cfg(target_arch = "wasm32")]

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
use std::cell::Cell;
use std::rc::Rc;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

#[derive(Clone, Copy, PartialEq)]
enum Call {
    None,
    CurrentTime,
    Property,
    HeaderPairs,
    HeaderValue,
    ReplaceHeader,
    BodyBytes,
}

const CALLS: [(&str, Call); 6] = [
    ("get_current_time", Call::CurrentTime),
    ("get_property", Call::Property),
    ("get_header_map_pairs", Call::HeaderPairs),
    ("get_header_map_value", Call::HeaderValue),
    ("replace_header_map_value", Call::ReplaceHeader),
    ("get_buffer_bytes", Call::BodyBytes),
];

#[derive(Clone, Copy)]
struct Plan {
    call: Call,
    count: u32,
}

/// `{"hostcall": "<call>", "count": N}`, read without a JSON library: the bench writes it.
fn plan(config: &str) -> Plan {
    let value_of = |key: &str| {
        let at = config.find(&format!("\"{key}\""))? + key.len() + 2;
        let rest = config[at..].trim_start().strip_prefix(':')?.trim_start();
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim().trim_matches('"').to_string())
    };
    let call = value_of("hostcall")
        .and_then(|name| CALLS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c))
        .unwrap_or(Call::None);
    let count = value_of("count").and_then(|n| n.parse().ok()).unwrap_or(0);
    Plan { call, count }
}

#[derive(Default)]
struct Root {
    plan: Rc<Cell<Option<Plan>>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let plan = plan(&String::from_utf8_lossy(&bytes));
        if plan.call == Call::None || plan.count == 0 {
            log::warn!("hostcall-filter: no call named; it runs as the no-op filter");
        }
        self.plan.set(Some(plan));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            plan: self.plan.get().unwrap_or(Plan {
                call: Call::None,
                count: 0,
            }),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    plan: Plan,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let headers = MapType::HttpRequestHeaders;
        for _ in 0..self.plan.count {
            // Results are dropped: the cost of the call is what is measured.
            let _ = match self.plan.call {
                Call::CurrentTime => hostcalls::get_current_time().map(|_| ()),
                Call::Property => hostcalls::get_property(vec!["xds", "cluster_name"]).map(|_| ()),
                Call::HeaderPairs => hostcalls::get_map(headers).map(|_| ()),
                Call::HeaderValue => hostcalls::get_map_value(headers, "content-type").map(|_| ()),
                Call::ReplaceHeader => {
                    hostcalls::set_map_value(headers, "x-calibration", Some("1"))
                }
                Call::None | Call::BodyBytes => Ok(()),
            };
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if self.plan.call == Call::BodyBytes {
            for _ in 0..self.plan.count {
                let _ = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size);
            }
        }
        Action::Continue
    }
}
