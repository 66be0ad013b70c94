//! Host-call calibration for `make bench`: the no-op filter (every callback continues) plus
//! `count` calls of one proxy-wasm host call per request, named by the plugin configuration
//! `{"hostcall": "<call>", "count": N}`. Measured against the no-op filter in the same run,
//! `(CPU/request - no-op) / N` is what one such call costs in this Envoy and runtime: the
//! price list for the MCP filter's own host calls (bench/run.py, "Host call cost").
//!
//! Calls: `get_current_time` (returns a number), `get_property` (`xds.cluster_name`, or Envoy's
//! wasm attribute `cluster_name` with `"property": "cluster_name"`),
//! `get_header_map_pairs` (the request headers), `get_header_map_value` (`content-type`),
//! `replace_header_map_value` (a request header), `get_buffer_bytes` (the request body, from
//! its body callback). Calls that return bytes make the host allocate them in the VM, a call
//! back into wasm; `get_current_time` returns a number and makes none, so the gap between its
//! price and the others' is mostly that call back.
//!
//! `{"hostcall": "lifecycle"}` instead makes, once each and with no logic around them, the host
//! calls the MCP filter makes for a JSON `tools/call` in its default configuration, in the same
//! callbacks, holding the request and its response body the same way: what any filter doing
//! that job costs through the ABI, the floor under the MCP filter's own cost. `"skip":
//! "property+hold"` leaves parts out (`PARTS`), to price each in place.
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

#[derive(Clone, Copy, PartialEq, Default)]
enum Call {
    #[default]
    None,
    CurrentTime,
    Property,
    HeaderPairs,
    HeaderValue,
    ReplaceHeader,
    BodyBytes,
    Lifecycle,
}

/// What `"hostcall"` can name.
const CALLS: [(&str, Call); 7] = [
    ("get_current_time", Call::CurrentTime),
    ("get_property", Call::Property),
    ("get_header_map_pairs", Call::HeaderPairs),
    ("get_header_map_value", Call::HeaderValue),
    ("replace_header_map_value", Call::ReplaceHeader),
    ("get_buffer_bytes", Call::BodyBytes),
    ("lifecycle", Call::Lifecycle),
];

#[derive(Clone, Copy, Default)]
struct Plan {
    call: Call,
    count: u32,
    /// Parts of `lifecycle` left out (`"skip": "property+hold"`), to price each in place.
    skip: u32,
    /// The property read (`"property": "xds.cluster_name"`, the default, or `cluster_name`).
    wasm_attribute: bool,
}

/// The parts of `lifecycle` that `skip` can leave out, as bits of `Plan::skip` (so the floor
/// pays one AND per part, not a name lookup).
const HOLD: u32 = 1;
const REQUEST_HEADERS: u32 = 1 << 1;
const PROPERTY: u32 = 1 << 2;
const BODIES: u32 = 1 << 3;
const HEADER_WRITES: u32 = 1 << 4;
const RESPONSE_HEADERS: u32 = 1 << 5;
const TIME: u32 = 1 << 6;
const PARTS: [(&str, u32); 7] = [
    ("hold", HOLD),
    ("request_headers", REQUEST_HEADERS),
    ("property", PROPERTY),
    ("bodies", BODIES),
    ("header_writes", HEADER_WRITES),
    ("response_headers", RESPONSE_HEADERS),
    ("time", TIME),
];

impl Plan {
    fn property_path(&self) -> Vec<&'static str> {
        if self.wasm_attribute {
            vec!["cluster_name"]
        } else {
            vec!["xds", "cluster_name"]
        }
    }

    fn does(&self, part: u32) -> bool {
        self.skip & part == 0
    }
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
    let skip = value_of("skip").unwrap_or_default();
    let skip = skip
        .split('+')
        .filter_map(|part| PARTS.iter().find(|(name, _)| *name == part))
        .fold(0, |bits, (_, bit)| bits | bit);
    let wasm_attribute = value_of("property").is_some_and(|p| p == "cluster_name");
    Plan {
        call,
        count,
        skip,
        wasm_attribute,
    }
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
        if plan.call == Call::None || (plan.count == 0 && plan.call != Call::Lifecycle) {
            log::warn!("hostcall-filter: no call named; it runs as the no-op filter");
        }
        self.plan.set(Some(plan));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            plan: self.plan.get().unwrap_or_default(),
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
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let headers = MapType::HttpRequestHeaders;
        if self.plan.call == Call::Lifecycle {
            let plan = self.plan;
            if plan.does(REQUEST_HEADERS) {
                let _ = hostcalls::get_map_bytes(headers);
            }
            if plan.does(PROPERTY) {
                let _ = hostcalls::get_property(plan.property_path());
            }
            if plan.does(TIME) {
                let _ = hostcalls::get_current_time();
            }
            // The MCP filter holds a POST until its body is complete.
            return if end_of_stream || !plan.does(HOLD) {
                Action::Continue
            } else {
                Action::Pause
            };
        }
        for _ in 0..self.plan.count {
            // Results are dropped: the cost of the call is what is measured.
            let _ = match self.plan.call {
                Call::CurrentTime => hostcalls::get_current_time().map(|_| ()),
                Call::Property => hostcalls::get_property(self.plan.property_path()).map(|_| ()),
                Call::HeaderPairs => hostcalls::get_map(headers).map(|_| ()),
                Call::HeaderValue => hostcalls::get_map_value(headers, "content-type").map(|_| ()),
                Call::ReplaceHeader => {
                    hostcalls::set_map_value(headers, "x-calibration", Some("1"))
                }
                Call::None | Call::BodyBytes | Call::Lifecycle => Ok(()),
            };
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.plan.call == Call::Lifecycle {
            if !end_of_stream {
                return Action::Pause;
            }
            if self.plan.does(BODIES) {
                let _ = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size);
            }
            if self.plan.does(HEADER_WRITES) {
                let headers = MapType::HttpRequestHeaders;
                let _ = hostcalls::set_map_value(headers, "traceparent", Some(TRACEPARENT));
            }
            return Action::Continue;
        }
        if self.plan.call == Call::BodyBytes {
            for _ in 0..self.plan.count {
                let _ = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size);
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if self.plan.call == Call::Lifecycle {
            let headers = MapType::HttpResponseHeaders;
            if self.plan.does(RESPONSE_HEADERS) {
                let _ = hostcalls::get_map_bytes(headers);
            }
            if self.plan.does(HEADER_WRITES) {
                let _ = hostcalls::add_map_value(headers, "x-mcp-trace-id", &TRACEPARENT[3..35]);
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.plan.call != Call::Lifecycle {
            return Action::Continue;
        }
        // The MCP filter reads a JSON answer whole.
        if !end_of_stream {
            return Action::Pause;
        }
        if self.plan.does(BODIES) {
            let _ = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size);
        }
        if self.plan.does(TIME) {
            let _ = hostcalls::get_current_time();
        }
        Action::Continue
    }
}

/// What the MCP filter writes into `traceparent` (a fresh trace: same length).
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
