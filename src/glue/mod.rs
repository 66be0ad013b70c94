//! Host glue: the only module that talks to the proxy-wasm host. It implements the SDK's root
//! and HTTP context traits, reads headers, bodies and properties, and applies what
//! `exchange::Exchange` decides. Failed host calls return errors (see [`host`]), which are
//! counted and reported as `host_call.failed`, and the request passes untouched: the filter
//! never traps on traffic.

mod host;

use crate::breaker::{self, CasStats, LocalUpstream, UpstreamCounters, UpstreamEnv};
use crate::config::{Config, Fingerprinting, InstanceSource};
use crate::events::{Events, LogSink};
use crate::exchange::common::TailMemo;
use crate::exchange::{
    BufferPool, Clock, Env, Exchange, LocalReply, RequestAction, RequestHead, RequestHeaders,
    ResponseBodyAction, ResponseHeaders, StreamEnd, TraceState,
};
use crate::pending::{PendingStats, SharedPending};
use crate::redact::FingerprintCache;
use crate::shipping::Answer;
use crate::stats::{upstream_stat, StatKind, StatValues, STATS};
use crate::trace::IdGenerator;
use crate::upstream::{SetError, SharedStore, StoreError};
use host::HeaderMap;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the root context flushes and reports stats; batch thresholds are checked then.
const TICK: Duration = Duration::from_millis(100);

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}}

/// State shared by every stream of this VM (one Envoy worker).
struct VmState {
    config: Config,
    ids: IdGenerator,
    events: Events,
    memo: TailMemo,
    buffers: BufferPool,
    fingerprints: FingerprintCache,
    pending: PendingStats,
    internal_errors: u64,
    cas: CasStats,
    upstreams: BTreeMap<String, LocalUpstream>,
}

/// Envoy shared data: one store for all worker VMs, with compare-and-swap.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        hostcalls::get_shared_data(key).map_err(|_| StoreError)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|status| match status {
            proxy_wasm::types::Status::CasMismatch => SetError::CasMismatch,
            _ => SetError::Other,
        })
    }
}

impl VmState {
    /// Merges the upstreams' waiting results into shared data (one CAS per upstream).
    fn flush_upstreams(&mut self, now: SystemTime) {
        if let Some(mut upstream) = self.env().upstream {
            upstream.flush(now);
        }
    }

    fn env(&mut self) -> Env<'_> {
        let ids = &mut self.ids;
        let upstream = self.config.upstream.as_ref().map(|config| UpstreamEnv {
            config,
            store: &HostStore,
            stats: &mut self.cas,
            locals: &mut self.upstreams,
            random: ids.next_u64(),
        });
        Env {
            config: &self.config,
            clock: Clock::new(&now),
            ids,
            events: &mut self.events,
            memo: &mut self.memo,
            buffers: &mut self.buffers,
            fingerprints: &mut self.fingerprints,
            pending: SharedPending {
                store: &HostStore,
                slots: self.config.max_pending,
                stats: &mut self.pending,
            },
            upstream,
        }
    }
}

type Shared = Rc<RefCell<Option<VmState>>>;

/// The callout's headers, built once per configuration.
#[derive(Default)]
struct CalloutHeaders {
    path: String,
    authority: String,
    authorization: String,
}

#[derive(Default)]
struct Root {
    state: Shared,
    /// Token of the batch callout in flight.
    callout: Option<u32>,
    callout_headers: CalloutHeaders,
    /// Ids in the order of `STATS`; `None` where the host refused a definition.
    stat_ids: Vec<Option<u32>>,
    reported: StatValues,
    /// Per-upstream stat ids and the counts last reported, by instance.
    upstream_stats: BTreeMap<String, ([Option<u32>; 4], UpstreamCounters)>,
    /// Envoy asked the VM to finish (`on_done`): ship what is left, then `proxy_done`.
    draining: bool,
}

/// Bound on batches sent back to back while draining, so a host that fails every dispatch
/// cannot keep `on_done` looping (each failure drops a batch, so the bound is never reached
/// in practice).
const DRAIN_STEPS: usize = 10_000;

fn now() -> SystemTime {
    hostcalls::get_current_time().unwrap_or(UNIX_EPOCH)
}

/// Seed for ids: WASI randomness, mixed with the clock in case the host offers none.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    let random = getrandom::fill(&mut bytes)
        .map(|_| u64::from_le_bytes(bytes))
        .unwrap_or(0);
    let nanos = now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    random ^ nanos.rotate_left(17)
}

fn new_vm_state(config: &Config) -> VmState {
    let mut ids = IdGenerator::new(seed());
    let source = ids.hex_id(8);
    VmState {
        config: config.clone(),
        events: Events::new(source, config.min_level),
        memo: TailMemo::default(),
        buffers: BufferPool::default(),
        fingerprints: FingerprintCache::new(&config.fingerprinting),
        ids,
        pending: PendingStats::default(),
        internal_errors: 0,
        cas: CasStats::default(),
        upstreams: BTreeMap::new(),
    }
}

fn define_stats() -> Vec<Option<u32>> {
    STATS
        .iter()
        .map(|(name, kind)| {
            let kind = match kind {
                StatKind::Counter => MetricType::Counter,
                StatKind::Gauge => MetricType::Gauge,
            };
            hostcalls::define_metric(kind, name).ok()
        })
        .collect()
}

impl Root {
    /// Sends the next due batch. Callouts are made from the root context only: one made in a
    /// stream's context would be cancelled when that stream ends.
    fn flush(&mut self) {
        if self.callout.is_some() {
            return;
        }
        let mut state = self.state.borrow_mut();
        let Some(vm) = state.as_mut() else {
            return;
        };
        let random = vm.ids.next_u64();
        let Some(shipper) = vm.events.shipper_mut() else {
            return;
        };
        let now = now();
        let timeout = Duration::from_millis(shipper.config().timeout_ms);
        let cluster = shipper.config().cluster.clone();
        let Some(body) = shipper.poll(now) else {
            return;
        };
        let h = &self.callout_headers;
        let headers = vec![
            (":method", "POST"),
            (":path", h.path.as_str()),
            (":authority", h.authority.as_str()),
            ("content-type", "application/x-ndjson"),
            ("authorization", h.authorization.as_str()),
        ];
        match hostcalls::dispatch_http_call(&cluster, headers, Some(body), vec![], timeout) {
            Ok(token) => self.callout = Some(token),
            Err(_) => shipper.on_answer(now, Answer::Failed, random),
        }
    }

    /// Runs `f` on the shipper with a random value for jitter; `None` when not shipping.
    fn with_shipper<T>(
        &mut self,
        f: impl FnOnce(&mut crate::shipping::Shipper, u64) -> T,
    ) -> Option<T> {
        let mut state = self.state.borrow_mut();
        let vm = state.as_mut()?;
        let random = vm.ids.next_u64();
        let shipper = vm.events.shipper_mut()?;
        Some(f(shipper, random))
    }

    /// While draining: sends the next batch (dropping, counted, those the host refuses to
    /// dispatch) until one is in flight or nothing is left; returns whether nothing is left.
    fn drain_step(&mut self) -> bool {
        for _ in 0..DRAIN_STEPS {
            self.flush();
            if self.callout.is_some() {
                return false;
            }
            if self.with_shipper(|shipper, _| shipper.is_empty()) != Some(false) {
                return true;
            }
        }
        true
    }

    fn stat_values(&self) -> Option<StatValues> {
        let state = self.state.borrow();
        let vm = state.as_ref()?;
        let mut values = [0i64; STATS.len()];
        values[0] = vm.events.emitted() as i64;
        values[5] = vm.internal_errors as i64;
        values[9] = vm.cas.retries as i64;
        values[10] = vm.cas.lost as i64;
        values[11] = vm.cas.store_failures as i64;
        values[12] = vm.cas.unregistered as i64;
        values[13] = vm.pending.evicted as i64;
        values[14] = vm.pending.lost as i64;
        if let Some(s) = vm.events.shipper() {
            values[1] = s.shipped as i64;
            values[2] = s.drops.buffer_full as i64;
            values[3] = s.drops.callout_failed as i64;
            values[4] = s.drops.rejected_by_collector as i64;
            values[6] = i64::from(s.in_flight());
            values[7] = s.buffered_bytes() as i64;
            values[8] = s.last_flush_latency.map_or(0, |d| d.as_millis() as i64);
        }
        Some(StatValues(values))
    }

    fn report_stats(&mut self) {
        let Some(current) = self.stat_values() else {
            return;
        };
        for (index, delta) in current.deltas(&self.reported) {
            if let Some(Some(id)) = self.stat_ids.get(index).copied() {
                // A failed stat update is not worth a trap or an event.
                let _ = hostcalls::increment_metric(id, delta);
            }
        }
        self.reported = current;
        self.report_upstream_stats();
    }

    /// Per-upstream requests, failures, rejections (this VM's increments) and breaker state.
    fn report_upstream_stats(&mut self) {
        let counters = match self.state.borrow().as_ref() {
            Some(vm) => vm
                .upstreams
                .iter()
                .map(|(instance, local)| (instance.clone(), local.counters))
                .collect::<Vec<_>>(),
            None => return,
        };
        for (instance, now) in counters {
            let (ids, before) = self
                .upstream_stats
                .entry(instance.clone())
                .or_insert_with(|| {
                    let define = |what: &str, kind| {
                        hostcalls::define_metric(kind, &upstream_stat(&instance, what)).ok()
                    };
                    let ids = [
                        define("requests", MetricType::Counter),
                        define("failures", MetricType::Counter),
                        define("rejections", MetricType::Counter),
                        define("breaker_state", MetricType::Gauge),
                    ];
                    (ids, UpstreamCounters::default())
                });
            let deltas = [
                now.requests - before.requests,
                now.failures - before.failures,
                now.rejections - before.rejections,
            ];
            for (id, delta) in ids.iter().zip(deltas) {
                if let (Some(id), true) = (id, delta > 0) {
                    let _ = hostcalls::increment_metric(*id, delta as i64);
                }
            }
            if let (Some(id), Some(state)) = (ids[3], now.state) {
                if before.state != Some(state) {
                    let _ = hostcalls::record_metric(id, state as u64);
                }
            }
            *before = now;
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self.callout != Some(token) {
            return;
        }
        self.callout = None;
        let status = HeaderMap::read(MapType::HttpCallResponseHeaders)
            .ok()
            .and_then(|map| ResponseHeaders::read(map.iter()).status);
        let body = host::buffer(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default();
        let answer = match status {
            Some(status) if num_headers > 0 => Answer::Status(status, &body),
            _ => Answer::Failed,
        };
        self.with_shipper(|shipper, random| shipper.on_answer(now(), answer, random));
        if self.draining {
            if self.drain_step() {
                self.report_stats();
                // Best effort: a host that does not wait for us has already moved on.
                let _ = hostcalls::done();
            }
            return;
        }
        // A full batch waiting goes out now, not at the next tick: under load the pipeline
        // runs at callout round-trip speed instead of one batch per tick.
        self.flush();
    }

    /// Envoy is retiring this VM (shutdown, or a configuration change replacing it). Rather
    /// than lose the buffered events, send them now and finish with `proxy_done` once the
    /// last batch is answered. Anything the host will not dispatch is counted as dropped.
    fn on_done(&mut self) -> bool {
        self.draining = true;
        if let Some(vm) = self.state.borrow_mut().as_mut() {
            vm.flush_upstreams(now());
        }
        let at = now();
        let buffered = self.with_shipper(|shipper, _| {
            shipper.start_draining();
            write_unshipped(shipper, at)
        });
        log::info!(
            "mcp-filter: VM retiring, shipping {} buffered events (also written to this log \
             as `{}` lines, which host-collector import recovers should Envoy exit first)",
            buffered.unwrap_or(0),
            mcp_contract::recovery::MARKER.trim_end()
        );
        let finished = self.drain_step();
        self.report_stats();
        finished
    }
}

/// Writes every event the VM has not shipped, and its status record (how many it emitted),
/// to Envoy's log as recoverable lines; returns how many events. Envoy may exit before the
/// drain finishes; what is shipped after all is deduplicated by the collector.
fn write_unshipped(shipper: &crate::shipping::Shipper, now: SystemTime) -> u64 {
    let marker = mcp_contract::recovery::MARKER;
    let mut events = 0;
    for line in shipper.unshipped_lines() {
        log::warn!("{marker}{}", String::from_utf8_lossy(line));
        events += 1;
    }
    log::warn!("{marker}{}", shipper.status_record(now));
    events
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log::error!("mcp-filter: {e}");
                return false;
            }
        };
        if let Fingerprinting::Unkeyed { .. } = config.fingerprinting {
            log::warn!(
                "mcp-filter: no fingerprint_key: credential fingerprints are unkeyed SHA-256 \
                 prefixes that anyone can compute for a guessed credential (short or common \
                 secrets are found by trying); set fingerprint_key to a random secret, the \
                 same as host-collector's --fingerprint-key"
            );
        }
        let mut state = self.state.borrow_mut();
        let vm = state.get_or_insert_with(|| new_vm_state(&config));
        // A reconfigured VM keeps its source id and seq so the collector sees no gap.
        vm.events.set_min_level(config.min_level);
        vm.events.set_shipping(config.collector.clone());
        let log_lines = config.collector.as_ref().is_none_or(|c| c.log_events);
        vm.events.set_line_sink(
            log_lines.then(|| Box::new(LogSink) as Box<dyn crate::events::LineSink>),
        );
        vm.fingerprints = FingerprintCache::new(&config.fingerprinting);
        self.callout_headers = config
            .collector
            .as_ref()
            .map(|c| CalloutHeaders {
                path: c.path.clone(),
                authority: c.authority.clone(),
                authorization: format!("Bearer {}", c.token),
            })
            .unwrap_or_default();
        vm.config = config;
        drop(state);
        if self.stat_ids.is_empty() {
            self.stat_ids = define_stats();
        }
        // Best effort: without ticks, batches and stats simply wait.
        let _ = hostcalls::set_tick_period(TICK);
        true
    }

    fn on_tick(&mut self) {
        if let Some(vm) = self.state.borrow_mut().as_mut() {
            vm.flush_upstreams(now());
        }
        self.flush();
        self.report_stats();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            state: self.state.clone(),
            exchange: None,
            request_body: BodyCursor::default(),
            response_body: BodyCursor::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Which bytes of Envoy's body buffer are new: after a `Pause` the buffer accumulates and
/// the next callback sees the old bytes again; after `Continue` it holds only the new chunk.
#[derive(Default)]
struct BodyCursor {
    buffered: usize,
}

impl BodyCursor {
    fn read_new(&self, buffer: BufferType, body_size: usize) -> Result<Vec<u8>, &'static str> {
        let start = self.buffered.min(body_size);
        host::buffer(buffer, start, body_size - start)
    }

    fn after(&mut self, paused: bool, body_size: usize) {
        self.buffered = if paused { body_size } else { 0 };
    }
}

struct Http {
    state: Shared,
    /// Boxed: the exchange is a few hundred bytes, and taking it at the end moves a pointer.
    exchange: Option<Box<Exchange>>,
    request_body: BodyCursor,
    response_body: BodyCursor,
}

/// The filter's own health endpoint, when configured and asked for. This VM's waiting
/// results are merged first; other workers' merge on their next tick.
fn health_endpoint(vm: &mut VmState, path: &str) -> Option<LocalReply> {
    let wanted = vm.config.health_path.as_deref()?;
    if crate::exchange::path_only(path) != wanted {
        return None;
    }
    let now = now();
    vm.flush_upstreams(now);
    let config = vm.config.upstream.as_ref()?;
    Some(breaker::health_reply(config, &HostStore, now))
}

fn send_local_reply(reply: &LocalReply) -> Result<(), &'static str> {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()))
        .map_err(|_| "send_http_response")
}

impl Http {
    /// Runs `f` with the exchange and its VM environment; `None` when unconfigured.
    fn with_exchange<T>(&mut self, f: impl FnOnce(&mut Exchange, &mut Env) -> T) -> Option<T> {
        let exchange = self.exchange.as_deref_mut()?;
        let mut state = self.state.borrow_mut();
        let vm = state.as_mut()?;
        let mut env = vm.env();
        Some(f(exchange, &mut env))
    }

    /// A host call failed: count and report it, and let the stream go on untouched.
    fn host_call_failed(&mut self, what: &'static str) -> Action {
        if let Some(vm) = self.state.borrow_mut().as_mut() {
            vm.internal_errors += 1;
        }
        self.with_exchange(|exchange, env| exchange.report_internal_error(env, what));
        Action::Continue
    }

    fn apply_request_action(&mut self, action: RequestAction) -> Result<Action, &'static str> {
        match action {
            RequestAction::Forward(trace) => {
                let headers = MapType::HttpRequestHeaders;
                host::replace_header(headers, "traceparent", &trace.traceparent)?;
                match trace.tracestate {
                    TraceState::Keep => {}
                    TraceState::Remove => host::remove_header(headers, "tracestate")?,
                    TraceState::FromMeta => {
                        let state = self.exchange.as_deref().and_then(Exchange::meta_tracestate);
                        let state = state.unwrap_or_default().as_bytes();
                        host::replace_header(headers, "tracestate", state)?
                    }
                }
                self.mirror_filter_state();
                Ok(Action::Continue)
            }
            RequestAction::Continue => {
                self.mirror_filter_state();
                Ok(Action::Continue)
            }
            RequestAction::Hold => Ok(Action::Pause),
            RequestAction::Reject(reply) => {
                send_local_reply(&reply)?;
                Ok(Action::Pause)
            }
        }
    }

    /// Classification into Envoy filter state (`wasm.mcp_*`), when configured and changed.
    fn mirror_filter_state(&mut self) {
        if let Some(exchange) = self.exchange.as_deref_mut() {
            for (key, value) in exchange.take_filter_state() {
                // Best effort: a host without filter state loses only this mirror.
                let _ = hostcalls::set_property(vec![key], Some(value.as_bytes()));
            }
        }
    }

    fn request_headers(&mut self, end_of_stream: bool) -> Result<Action, &'static str> {
        let map = HeaderMap::read(MapType::HttpRequestHeaders)?;
        let mut state = self.state.borrow_mut();
        let Some(vm) = state.as_mut() else {
            return Ok(Action::Continue);
        };
        let headers = RequestHeaders::read(map.iter(), &vm.config);
        if let Some(reply) = health_endpoint(vm, headers.path) {
            drop(state);
            send_local_reply(&reply)?;
            return Ok(Action::Pause);
        }
        let (route_name, cluster_name) = match vm.config.instance.source {
            InstanceSource::RouteName => (host::property(b"xds\0route_name"), None),
            InstanceSource::ClusterName => (None, host::property(b"xds\0cluster_name")),
            _ => (None, None),
        };
        let head = RequestHead {
            headers,
            route_name: route_name.as_deref().and_then(crate::bytes::utf8),
            cluster_name: cluster_name.as_deref().and_then(crate::bytes::utf8),
            end_of_stream,
        };
        let (exchange, action) = Exchange::on_request_headers(&head, &mut vm.env());
        drop(state);
        self.exchange = Some(exchange);
        self.apply_request_action(action)
    }

    fn request_body(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
    ) -> Result<Action, &'static str> {
        if !self
            .exchange
            .as_deref()
            .is_some_and(Exchange::wants_request_body)
        {
            return Ok(Action::Continue);
        }
        let chunk = self
            .request_body
            .read_new(BufferType::HttpRequestBody, body_size)?;
        let action = self
            .with_exchange(|exchange, env| exchange.on_request_body(&chunk, end_of_stream, env))
            .unwrap_or(RequestAction::Continue);
        self.request_body
            .after(matches!(action, RequestAction::Hold), body_size);
        self.apply_request_action(action)
    }

    fn response_headers(&mut self, end_of_stream: bool) -> Result<Action, &'static str> {
        let map = HeaderMap::read(MapType::HttpResponseHeaders)?;
        let headers = ResponseHeaders::read(map.iter());
        let echo = self
            .with_exchange(|exchange, env| {
                exchange.on_response_headers(&headers, end_of_stream, env)
            })
            .flatten();
        if let Some(trace_id) = echo {
            let state = self.state.borrow();
            let name = state
                .as_ref()
                .and_then(|vm| vm.config.trace_response_header.as_deref());
            if let Some(name) = name {
                host::add_header(MapType::HttpResponseHeaders, name, &trace_id)?;
            }
        }
        Ok(Action::Continue)
    }

    fn response_body(
        &mut self,
        body_size: usize,
        end_of_stream: bool,
    ) -> Result<Action, &'static str> {
        let Some(wants_bytes) = self.exchange.as_deref().map(Exchange::wants_response_bytes) else {
            return Ok(Action::Continue);
        };
        let chunk = if wants_bytes {
            self.response_body
                .read_new(BufferType::HttpResponseBody, body_size)?
        } else {
            Vec::new()
        };
        let action = self
            .with_exchange(|exchange, env| exchange.on_response_body(&chunk, end_of_stream, env))
            .unwrap_or(ResponseBodyAction::Continue);
        self.response_body
            .after(action == ResponseBodyAction::Buffer, body_size);
        match action {
            ResponseBodyAction::Continue => Ok(Action::Continue),
            ResponseBodyAction::Buffer => Ok(Action::Pause),
            ResponseBodyAction::Replace(bytes) => {
                hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &bytes)
                    .map_err(|_| "set_buffer")?;
                Ok(Action::Continue)
            }
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.request_headers(end_of_stream)
            .unwrap_or_else(|what| self.host_call_failed(what))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_body(body_size, end_of_stream)
            .unwrap_or_else(|what| self.host_call_failed(what))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.response_headers(end_of_stream)
            .unwrap_or_else(|what| self.host_call_failed(what))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_body(body_size, end_of_stream)
            .unwrap_or_else(|what| self.host_call_failed(what))
    }

    fn on_log(&mut self) {
        // A complete response below 400 needs nothing more from Envoy.
        let needs_details = self
            .exchange
            .as_deref()
            .is_some_and(Exchange::needs_stream_details);
        let (code_details, response_code) = if needs_details {
            (
                host::string_property(b"response\0code_details"),
                host::int_property(b"response\0code"),
            )
        } else {
            (None, None)
        };
        let end = StreamEnd {
            code_details: code_details.as_deref(),
            response_code,
        };
        self.with_exchange(|exchange, env| exchange.on_stream_end(&end, env));
        // Nothing follows on_log but the context's deletion.
        if let (Some(mut exchange), Some(vm)) =
            (self.exchange.take(), self.state.borrow_mut().as_mut())
        {
            exchange.recycle(&mut vm.buffers);
        }
    }
}
