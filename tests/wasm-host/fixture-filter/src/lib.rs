//! Fixture filter for the proxy-wasm test host's own tests.
//!
//! Each request path selects one behaviour, so a test drives exactly the host calls it
//! wants to check: `/deny`, `/grpc-deny`, `/panic`, `/unknown`, `/callout`, `/cas`,
//! `/wasi`, `/upper`, `/close`; any other path just decorates headers and buffers the
//! request body until end of stream. The plugin configuration is `key=value` lines:
//! `fail=1` rejects the configuration, `tick_ms=N` sets the tick period.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, GrpcStatusCode, LogLevel, MetricType, Status};
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

#[link(wasm_import_module = "env")]
extern "C" {
    /// Deliberately not part of the ABI: the host must stub it with Unimplemented.
    fn proxy_fixture_unknown_call(arg: u32) -> u32;
}

#[derive(Default, Clone, Copy)]
struct Metrics {
    requests: u32,
    inflight: u32,
    body_bytes: u32,
}

#[derive(Default)]
struct Root {
    metrics: Metrics,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let status = self.get_http_call_response_header(":status");
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        info!(
            "root callout {token} response: headers={num_headers} status={status:?} body={}",
            String::from_utf8_lossy(&body)
        );
        let value = status.unwrap_or_else(|| "failed".into());
        self.set_shared_data("last_callout_status", Some(value.as_bytes()), None)
            .unwrap();
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, vm_config_size: usize) -> bool {
        let config = self.get_vm_configuration().unwrap_or_default();
        info!(
            "vm_start size={vm_config_size} config={}",
            String::from_utf8_lossy(&config)
        );
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let config =
            String::from_utf8(self.get_plugin_configuration().unwrap_or_default()).unwrap();
        let name = self.get_property(vec!["plugin_name"]).unwrap_or_default();
        info!("configure plugin_name={}", String::from_utf8_lossy(&name));
        for (key, value) in config.lines().filter_map(|l| l.split_once('=')) {
            match key {
                "fail" => {
                    warn!("rejecting configuration");
                    return false;
                }
                "tick_ms" => self.set_tick_period(Duration::from_millis(value.parse().unwrap())),
                _ => {}
            }
        }
        self.metrics = Metrics {
            requests: hostcalls::define_metric(MetricType::Counter, "fixture_requests_total")
                .unwrap(),
            inflight: hostcalls::define_metric(MetricType::Gauge, "fixture_inflight").unwrap(),
            body_bytes: hostcalls::define_metric(MetricType::Histogram, "fixture_body_bytes")
                .unwrap(),
        };
        true
    }

    fn on_tick(&mut self) {
        let ticks = hostcalls::define_metric(MetricType::Counter, "fixture_ticks").unwrap();
        hostcalls::increment_metric(ticks, 1).unwrap();
        let now = self
            .get_current_time()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let body = format!("tick at {}", now.as_secs());
        let headers = vec![
            (":method", "POST"),
            (":path", "/ingest"),
            (":authority", "collector"),
        ];
        let token = self
            .dispatch_http_call(
                "collector",
                headers,
                Some(body.as_bytes()),
                vec![],
                Duration::from_secs(2),
            )
            .unwrap();
        info!("tick dispatched {token}");
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            context_id,
            metrics: self.metrics,
            path: String::new(),
        }))
    }
}

struct Http {
    context_id: u32,
    metrics: Metrics,
    path: String,
}

impl Http {
    /// Increments a shared counter with get + CAS set, retrying on conflicts.
    fn cas_increment(&self, key: &str) -> u32 {
        for attempt in 0..5 {
            let (value, cas) = self.get_shared_data(key);
            let current: u64 = value.map_or(0, |v| String::from_utf8(v).unwrap().parse().unwrap());
            let next = (current + 1).to_string();
            match self.set_shared_data(key, Some(next.as_bytes()), cas) {
                Ok(()) => return attempt,
                Err(Status::CasMismatch) => continue,
                Err(other) => panic!("set_shared_data: {other:?}"),
            }
        }
        u32::MAX
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, _: usize, _: usize, _: usize) {
        match self.get_http_call_response_header(":status").as_deref() {
            Some("200") => {
                self.add_http_request_header("x-authz", "ok");
                self.resume_http_request();
            }
            status => {
                info!(
                    "stream {} callout {token} failed: {status:?}",
                    self.context_id
                );
                self.send_http_response(503, vec![], Some(b"authz unavailable"));
            }
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, num_headers: usize, _end_of_stream: bool) -> Action {
        hostcalls::increment_metric(self.metrics.requests, 1).unwrap();
        hostcalls::increment_metric(self.metrics.inflight, 1).unwrap();
        self.path = self.get_http_request_header(":path").unwrap_or_default();
        info!("request headers n={num_headers} path={}", self.path);
        self.add_http_request_header("x-fixture-seen", "1");
        if self.get_http_request_header("x-replace-me").is_some() {
            self.set_http_request_header("x-replace-me", Some("replaced"));
        }
        self.set_http_request_header("x-remove-me", None);
        self.set_property(vec!["fixture", "path"], Some(self.path.as_bytes()));
        if let Some(route) = self.get_property(vec!["xds", "route_name"]) {
            self.add_http_request_header("x-route", &String::from_utf8(route).unwrap());
        }
        match self.path.as_str() {
            "/deny" => {
                self.send_http_response(403, vec![("x-deny", "yes")], Some(b"denied"));
                Action::Pause
            }
            "/grpc-deny" => {
                self.send_grpc_response(GrpcStatusCode::PermissionDenied, Some("nope"), vec![]);
                Action::Pause
            }
            "/panic" => panic!("fixture panic on purpose"),
            "/unknown" => {
                let status = unsafe { proxy_fixture_unknown_call(7) };
                info!("unknown call status={status}");
                Action::Continue
            }
            "/callout" => {
                let headers = vec![
                    (":method", "GET"),
                    (":path", "/check"),
                    (":authority", "authz"),
                ];
                match self.dispatch_http_call(
                    "authz",
                    headers,
                    None,
                    vec![],
                    Duration::from_millis(250),
                ) {
                    Ok(token) => info!("stream {} dispatched {token}", self.context_id),
                    Err(status) => warn!("dispatch failed: {status:?}"),
                }
                Action::Pause
            }
            "/bad-callout" => {
                let result =
                    self.dispatch_http_call("authz", vec![], None, vec![], Duration::from_secs(1));
                info!("bad callout result={result:?}");
                Action::Continue
            }
            "/cas" => {
                let retries = self.cas_increment("cb_counter");
                self.add_http_request_header("x-cas-retries", &retries.to_string());
                Action::Continue
            }
            "/wasi" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                let mut set = std::collections::HashSet::new();
                set.insert(self.context_id);
                println!("hello from stdout");
                eprintln!("hello from stderr");
                self.add_http_request_header("x-wasi-time", &now.as_secs().to_string());
                Action::Continue
            }
            "/close" => {
                self.reset_http_request();
                Action::Pause
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        info!("request body size={body_size} eos={end_of_stream}");
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        hostcalls::record_metric(self.metrics.body_bytes, body.len() as u64).unwrap();
        if String::from_utf8_lossy(&body).contains("REDACT") {
            self.set_http_request_body(0, body_size, b"[redacted]");
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        info!("request trailers n={num_trailers}");
        self.add_http_request_trailer("x-trailer-seen", "1");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-fixture-response", Some("1"));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if self.path == "/upper" {
            let chunk = self
                .get_http_response_body(0, body_size)
                .unwrap_or_default();
            self.set_http_response_body(0, body_size, &chunk.to_ascii_uppercase());
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        hostcalls::increment_metric(self.metrics.inflight, -1).unwrap();
        let status = self.get_http_response_header(":status");
        info!("on_log path={} status={status:?}", self.path);
    }
}
