//! [`Vm`]: one instance of the filter (one Envoy worker's copy), driven through the
//! proxy-wasm lifecycle the way Envoy drives it, plus inspection of what it did.

use crate::abi::{Action, LogLevel};
use crate::cache::ModuleCache;
use crate::host::{CalloutResponse, Host, HttpCall, LogEntry};
use crate::stream::{normalize, Direction, LocalReply, StreamId, StreamKind, StreamState};
use crate::world::World;
use crate::{hostcalls, stubs, wasi};
use anyhow::{anyhow, bail};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;
use wasmtime::{Instance, Linker, Memory, Module, Store, WasmParams, WasmResults};

/// Context id of the root context (the plugin); streams get 2, 3, ...
const ROOT: u32 = 1;
/// Fuel per guest call when no limit is set: effectively unlimited.
const UNLIMITED_FUEL: u64 = 1 << 62;
/// ABI versions whose marker export this host accepts.
const ABI_MARKERS: [&str; 2] = ["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"];

/// How to configure a VM, mirroring the Envoy `vm_config` / plugin `configuration`.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Bytes returned for `VmConfiguration` (`proxy_on_vm_start`).
    pub vm_config: Vec<u8>,
    /// Bytes returned for `PluginConfiguration` (`proxy_on_configure`).
    pub plugin_config: Vec<u8>,
    /// VM-level properties (path segments, raw value), e.g. `["plugin_name"]`.
    pub properties: Vec<(Vec<String>, Vec<u8>)>,
    /// Envoy's log level for the plugin: lower messages are dropped by the host.
    pub log_level: LogLevel,
    /// Fuel (≈ wasm instructions) allowed per guest call; exceeding it traps.
    /// Fuel is always metered, so `Vm::fuel_consumed` works without a limit.
    pub fuel_limit: Option<u64>,
    /// Seed of WASI `random_get` (hash map seeds, random ids).
    pub random_seed: u64,
    /// The Envoy `vm_id`, used to name shared queues.
    pub vm_id: String,
    /// Echo every log line to stderr; defaults to whether `WASM_HOST_LOG` is set.
    pub echo_logs: bool,
    /// Envoy's `PluginConfig.allow_on_headers_stop_iteration`. Off (Envoy's default), a
    /// stopped headers callback stops *all* iteration and Envoy delivers no body to the
    /// filter until it continues the stream; delivering one anyway is an error here. On,
    /// body callbacks run while the headers are held, and a body `Continue` resumes the
    /// headers too.
    pub allow_on_headers_stop_iteration: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            vm_config: Vec::new(),
            plugin_config: Vec::new(),
            properties: vec![(vec!["plugin_name".into()], b"test-plugin".to_vec())],
            log_level: LogLevel::Trace,
            fuel_limit: None,
            random_seed: 0x5EED,
            vm_id: String::new(),
            echo_logs: std::env::var_os("WASM_HOST_LOG").is_some(),
            allow_on_headers_stop_iteration: false,
        }
    }
}

impl VmOptions {
    pub fn plugin_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = config.into();
        self
    }

    pub fn vm_config(mut self, config: impl Into<Vec<u8>>) -> Self {
        self.vm_config = config.into();
        self
    }

    /// Adds (or overrides) a VM-level property.
    pub fn property(mut self, path: &[&str], value: impl Into<Vec<u8>>) -> Self {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.properties.retain(|(p, _)| *p != path);
        self.properties.push((path, value.into()));
        self
    }
}

/// One wasm VM running the filter. Any trap kills it: every later call returns `Err`,
/// as Envoy stops using a crashed VM.
pub struct Vm {
    store: Store<Host>,
    instance: Instance,
    memory: Option<Memory>,
    next_context_id: u32,
    fuel_budget: u64,
    fuel_used: u64,
    trap: Option<String>,
    allow_on_headers_stop_iteration: bool,
}

impl Vm {
    /// Compiles (cached, see [`ModuleCache`]) and starts a VM from wasm bytes.
    pub fn load(world: &World, wasm: &[u8], opts: VmOptions) -> anyhow::Result<Vm> {
        Vm::from_module(world, &ModuleCache::get(wasm)?, opts)
    }

    /// Like [`Vm::load`] from a `.wasm` file.
    pub fn load_file(world: &World, path: impl AsRef<Path>, opts: VmOptions) -> anyhow::Result<Vm> {
        Vm::from_module(world, &ModuleCache::get_file(path)?, opts)
    }

    /// Instantiates `module` and runs Envoy's start sequence: `_initialize`,
    /// `proxy_on_context_create(root)`, `proxy_on_vm_start`, `proxy_on_configure`.
    /// Fails (with the filter's logs in the message) if either start callback returns
    /// false, which Envoy treats as a rejected configuration, or if anything traps.
    pub fn from_module(world: &World, module: &Module, opts: VmOptions) -> anyhow::Result<Vm> {
        if !module.exports().any(|e| ABI_MARKERS.contains(&e.name())) {
            bail!("module exports none of {ABI_MARKERS:?}: not a proxy-wasm 0.2 module");
        }
        let mut store = Store::new(module.engine(), Host::new(world, &opts));
        let mut linker = Linker::new(module.engine());
        hostcalls::add_to_linker(&mut linker)?;
        wasi::add_to_linker(&mut linker)?;
        stubs::link_missing(&mut linker, &mut store, module)?;
        let fuel_budget = opts.fuel_limit.unwrap_or(UNLIMITED_FUEL);
        store.set_fuel(fuel_budget)?;
        let instance = with_context(linker.instantiate(&mut store, module), || {
            "instantiating module".into()
        })?;
        let memory = instance.get_memory(&mut store, "memory");
        let mut vm = Vm {
            store,
            instance,
            memory,
            next_context_id: ROOT + 1,
            fuel_budget,
            fuel_used: 0,
            trap: None,
            allow_on_headers_stop_iteration: opts.allow_on_headers_stop_iteration,
        };
        vm.start()?;
        Ok(vm)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        // WASI reactor initialization (constructors + the SDK's `main!` body); a command
        // module has `_start` instead, which proxy-wasm-cpp-host also accepts.
        if self
            .call_optional::<(), ()>("_initialize", 0, ())?
            .is_none()
        {
            self.call_optional::<(), ()>("_start", 0, ())?;
        }
        self.call::<(i32, i32), ()>("proxy_on_context_create", ROOT, (ROOT as i32, 0))?;
        let vm_config_len = self.host().vm_config.len() as i32;
        if self.call::<(i32, i32), i32>("proxy_on_vm_start", ROOT, (ROOT as i32, vm_config_len))?
            == 0
        {
            bail!(self.with_logs("proxy_on_vm_start returned false: Envoy would fail the VM"));
        }
        let plugin_config_len = self.host().plugin_config.len() as i32;
        if self.call::<(i32, i32), i32>(
            "proxy_on_configure",
            ROOT,
            (ROOT as i32, plugin_config_len),
        )? == 0
        {
            bail!(self.with_logs(
                "proxy_on_configure returned false: Envoy would reject the configuration"
            ));
        }
        Ok(())
    }

    // ----- calling into the guest ------------------------------------------------------

    fn host(&self) -> &Host {
        self.store.data()
    }

    fn host_mut(&mut self) -> &mut Host {
        self.store.data_mut()
    }

    /// Calls an export that must exist.
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        export: &str,
        context: u32,
        params: P,
    ) -> anyhow::Result<R> {
        self.call_optional(export, context, params)?
            .ok_or_else(|| anyhow!("module does not export {export}"))
    }

    /// Calls an export with `context` as the current context; `Ok(None)` if it is absent.
    fn call_optional<P: WasmParams, R: WasmResults>(
        &mut self,
        export: &str,
        context: u32,
        params: P,
    ) -> anyhow::Result<Option<R>> {
        if let Some(trap) = &self.trap {
            bail!("VM is dead after an earlier trap ({trap}); {export} not called");
        }
        let Some(func) = self.instance.get_func(&mut self.store, export) else {
            return Ok(None);
        };
        let func = with_context(func.typed::<P, R>(&self.store), || {
            format!("export {export} has an unexpected signature")
        })?;
        self.host_mut().current_context = context;
        self.store.set_fuel(self.fuel_budget)?;
        let result = func.call(&mut self.store, params);
        self.fuel_used += self.fuel_budget - self.store.get_fuel()?;
        match result {
            Ok(value) => Ok(Some(value)),
            Err(err) => {
                self.host_mut().flush_stdio();
                let trap = format!("{export} trapped: {err:#}");
                self.trap = Some(trap.clone());
                Err(anyhow!(self.with_logs(&trap)))
            }
        }
    }

    /// `message` followed by the filter's recent log lines, for error reports.
    fn with_logs(&self, message: &str) -> String {
        let logs = &self.host().logs;
        let recent = logs.iter().skip(logs.len().saturating_sub(20));
        let lines: Vec<String> = recent
            .map(|l| format!("  [{:?}] {}", l.level, l.message))
            .collect();
        format!(
            "{message}\nfilter logs (most recent last):\n{}",
            lines.join("\n")
        )
    }

    fn call_action(
        &mut self,
        export: &str,
        stream: StreamId,
        params: (i32, i32, i32),
    ) -> anyhow::Result<Action> {
        Action::from_raw(self.call(export, stream.0, params)?)
    }

    // ----- root context ----------------------------------------------------------------

    /// Calls `proxy_on_tick` on the root context (advance the world's clock yourself).
    pub fn tick(&mut self) -> anyhow::Result<()> {
        self.call::<i32, ()>("proxy_on_tick", ROOT, ROOT as i32)
    }

    /// Period set with `proxy_set_tick_period_milliseconds` (None if unset or zero).
    pub fn tick_period(&self) -> Option<Duration> {
        self.host().tick_period
    }

    /// Calls `proxy_on_queue_ready` for each queue this VM registered that received
    /// items since the last call; returns how many notifications were delivered.
    pub fn deliver_queue_ready(&mut self) -> anyhow::Result<usize> {
        let ready = self.host().world.take_ready_queues(self.host().vm_uid);
        for &queue in &ready {
            self.call::<(i32, i32), ()>("proxy_on_queue_ready", ROOT, (ROOT as i32, queue as i32))?;
        }
        Ok(ready.len())
    }

    // ----- streams ---------------------------------------------------------------------

    /// Creates an HTTP stream: `proxy_on_context_create(new id, root id)`.
    pub fn new_stream(&mut self) -> anyhow::Result<StreamId> {
        let id = self.next_context_id;
        self.next_context_id += 1;
        self.host_mut().streams.insert(id, StreamState::default());
        self.call::<(i32, i32), ()>("proxy_on_context_create", id, (id as i32, ROOT as i32))?;
        Ok(StreamId(id))
    }

    /// Creates a stream and returns a handle bound to it.
    pub fn stream(&mut self) -> anyhow::Result<crate::Stream<'_>> {
        let id = self.new_stream()?;
        Ok(crate::Stream::new(self, id))
    }

    fn live_stream(&mut self, stream: StreamId) -> anyhow::Result<&mut StreamState> {
        match self.host_mut().streams.get_mut(&stream.0) {
            Some(state) if !state.completed => Ok(state),
            Some(_) => bail!("stream {} is already complete", stream.0),
            None => bail!("unknown stream {}", stream.0),
        }
    }

    fn state(&self, stream: StreamId) -> &StreamState {
        self.host()
            .streams
            .get(&stream.0)
            .unwrap_or_else(|| panic!("unknown stream {}", stream.0))
    }

    /// Sets a property visible to this stream only (e.g. `["xds", "route_name"]`);
    /// lookups fall back to the VM-level properties.
    pub fn set_stream_property(
        &mut self,
        stream: StreamId,
        path: &[&str],
        value: impl Into<Vec<u8>>,
    ) -> anyhow::Result<()> {
        let path = path.iter().map(|s| s.to_string()).collect();
        self.live_stream(stream)?
            .properties
            .insert(path, value.into());
        Ok(())
    }

    /// Sets a VM-level property after start.
    pub fn set_property(&mut self, path: &[&str], value: impl Into<Vec<u8>>) {
        let path = path.iter().map(|s| s.to_string()).collect();
        self.host_mut().properties.insert(path, value.into());
    }

    pub fn request_headers<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        stream: StreamId,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> anyhow::Result<Action> {
        self.deliver_headers(stream, Direction::Request, headers, end_of_stream)
    }

    pub fn request_body(
        &mut self,
        stream: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> anyhow::Result<Action> {
        self.deliver_body(stream, Direction::Request, chunk, end_of_stream)
    }

    pub fn request_trailers<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        stream: StreamId,
        trailers: &[(K, V)],
    ) -> anyhow::Result<Action> {
        self.deliver_trailers(stream, Direction::Request, trailers)
    }

    pub fn response_headers<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        stream: StreamId,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> anyhow::Result<Action> {
        self.deliver_headers(stream, Direction::Response, headers, end_of_stream)
    }

    pub fn response_body(
        &mut self,
        stream: StreamId,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> anyhow::Result<Action> {
        self.deliver_body(stream, Direction::Response, chunk, end_of_stream)
    }

    pub fn response_trailers<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        stream: StreamId,
        trailers: &[(K, V)],
    ) -> anyhow::Result<Action> {
        self.deliver_trailers(stream, Direction::Response, trailers)
    }

    /// Delivers headers; a non-Continue result keeps later body bytes from being
    /// forwarded until the filter calls `proxy_continue_stream`.
    pub fn deliver_headers<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        stream: StreamId,
        dir: Direction,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> anyhow::Result<Action> {
        self.live_stream(stream)?.half_mut(dir).headers = Some(normalize(headers));
        let params = (stream.0 as i32, headers.len() as i32, end_of_stream as i32);
        let action = self.call_action(&dir.export("headers"), stream, params)?;
        self.live_stream(stream)?.half_mut(dir).headers_stopped = action != Action::Continue;
        Ok(action)
    }

    /// Delivers a body chunk. The chunk joins the bytes the filter is buffering and the
    /// callback sees the whole buffer (`body_size` = total buffered). `Continue` releases
    /// the (possibly rewritten) buffer; every stop status keeps it buffered, including
    /// `StopIterationNoBuffer` (Envoy's wasm filter buffers there too).
    pub fn deliver_body(
        &mut self,
        stream: StreamId,
        dir: Direction,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> anyhow::Result<Action> {
        let allow_stop_iteration = self.allow_on_headers_stop_iteration;
        let half = self.live_stream(stream)?.half_mut(dir);
        if half.headers_stopped && !allow_stop_iteration {
            bail!(
                "Envoy would not deliver this body: the headers callback stopped iteration \
                 (StopAllIterationAndWatermark) and the stream was not continued; set \
                 allow_on_headers_stop_iteration to model Envoy with that option"
            );
        }
        half.buffered.extend_from_slice(chunk);
        let params = (
            stream.0 as i32,
            half.buffered.len() as i32,
            end_of_stream as i32,
        );
        let action = self.call_action(&dir.export("body"), stream, params)?;
        if action == Action::Continue {
            let half = self.live_stream(stream)?.half_mut(dir);
            if allow_stop_iteration && half.headers_stopped {
                // With StopIteration, a body Continue resumes the held headers as well.
                half.resume();
            } else {
                half.release_body();
            }
        }
        Ok(action)
    }

    /// Delivers trailers (end of that direction); `Continue` releases buffered body bytes.
    pub fn deliver_trailers<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        stream: StreamId,
        dir: Direction,
        trailers: &[(K, V)],
    ) -> anyhow::Result<Action> {
        self.live_stream(stream)?.half_mut(dir).trailers = Some(normalize(trailers));
        let export = dir.export("trailers");
        let raw: i32 = self.call(&export, stream.0, (stream.0 as i32, trailers.len() as i32))?;
        let action = Action::from_raw(raw)?;
        if action == Action::Continue {
            self.live_stream(stream)?.half_mut(dir).release_body();
        }
        Ok(action)
    }

    /// Asks the root context to finish, as Envoy does when it retires the VM
    /// (`proxy_on_done` on the root context). Returns whether it finished at once; if not,
    /// it is expected to call `proxy_done` later (see [`Vm::done_calls`]).
    pub fn retire(&mut self) -> anyhow::Result<bool> {
        Ok(self.call::<i32, i32>("proxy_on_done", ROOT, ROOT as i32)? != 0)
    }

    /// Ends the stream as Envoy does: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    /// Callouts the stream still has pending are cancelled (never delivered). The
    /// stream's state stays inspectable.
    pub fn complete(&mut self, stream: StreamId) -> anyhow::Result<()> {
        self.live_stream(stream)?;
        let id = stream.0 as i32;
        self.call_optional::<i32, i32>("proxy_on_done", stream.0, id)?;
        self.call_optional::<i32, ()>("proxy_on_log", stream.0, id)?;
        self.call_optional::<i32, ()>("proxy_on_delete", stream.0, id)?;
        self.live_stream(stream)?.completed = true;
        self.host_mut()
            .http_calls
            .retain(|_, call| call.context_id != stream.0);
        Ok(())
    }

    // ----- callouts --------------------------------------------------------------------

    /// Callouts dispatched with `proxy_http_call` and not answered yet, by token.
    pub fn pending_http_calls(&self) -> Vec<HttpCall> {
        self.host().http_calls.values().cloned().collect()
    }

    /// Answers a callout: `:status` plus `headers`, and `body`.
    pub fn http_call_response<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        token: u32,
        status: u16,
        headers: &[(K, V)],
        body: &[u8],
    ) -> anyhow::Result<()> {
        let mut all = vec![(":status".to_string(), status.to_string())];
        all.extend(normalize(headers));
        self.deliver_http_call(
            token,
            CalloutResponse {
                headers: all,
                body: body.to_vec(),
                trailers: Vec::new(),
            },
        )
    }

    /// Envoy's report of a failed callout (reset, timeout, no healthy upstream): no
    /// headers, no body, no trailers.
    pub fn http_call_failure(&mut self, token: u32) -> anyhow::Result<()> {
        self.deliver_http_call(token, CalloutResponse::default())
    }

    /// Delivers `proxy_on_http_call_response` to the context that dispatched the call;
    /// the response is readable (`HttpCallResponseHeaders/Body/Trailers`) only during it.
    pub fn deliver_http_call(
        &mut self,
        token: u32,
        response: CalloutResponse,
    ) -> anyhow::Result<()> {
        let call = self
            .host_mut()
            .http_calls
            .remove(&token)
            .ok_or_else(|| anyhow!("no pending http call with token {token}"))?;
        let sizes = (
            response.headers.len() as i32,
            response.body.len() as i32,
            response.trailers.len() as i32,
        );
        self.host_mut().callout = Some(response);
        let params = (
            call.context_id as i32,
            token as i32,
            sizes.0,
            sizes.1,
            sizes.2,
        );
        let result = self.call::<_, ()>("proxy_on_http_call_response", call.context_id, params);
        self.host_mut().callout = None;
        result
    }

    // ----- inspection ------------------------------------------------------------------

    pub fn world(&self) -> &World {
        &self.host().world
    }

    /// Request headers as they are now, after the filter's modifications.
    pub fn request_header_map(&self, stream: StreamId) -> Vec<(String, String)> {
        self.header_map(stream, Direction::Request, false)
    }

    /// Response headers as they are now, after the filter's modifications.
    pub fn response_header_map(&self, stream: StreamId) -> Vec<(String, String)> {
        self.header_map(stream, Direction::Response, false)
    }

    /// Headers (or trailers) of one direction; empty if none were delivered.
    pub fn header_map(
        &self,
        stream: StreamId,
        dir: Direction,
        trailers: bool,
    ) -> Vec<(String, String)> {
        self.state(stream)
            .half(dir)
            .map(trailers)
            .clone()
            .unwrap_or_default()
    }

    /// First value of a request header, after modifications.
    pub fn request_header(&self, stream: StreamId, name: &str) -> Option<String> {
        crate::stream::header_value(
            self.state(stream)
                .half(Direction::Request)
                .headers
                .as_ref()?,
            name,
        )
        .map(str::to_string)
    }

    /// First value of a response header, after modifications.
    pub fn response_header(&self, stream: StreamId, name: &str) -> Option<String> {
        crate::stream::header_value(
            self.state(stream)
                .half(Direction::Response)
                .headers
                .as_ref()?,
            name,
        )
        .map(str::to_string)
    }

    /// Request body bytes released upstream so far.
    pub fn forwarded_request_body(&self, stream: StreamId) -> Vec<u8> {
        self.state(stream).request.forwarded.clone()
    }

    /// Response body bytes released downstream so far.
    pub fn forwarded_response_body(&self, stream: StreamId) -> Vec<u8> {
        self.state(stream).response.forwarded.clone()
    }

    /// Body bytes the filter is still holding in one direction.
    pub fn buffered_body(&self, stream: StreamId, dir: Direction) -> Vec<u8> {
        let half = self.state(stream).half(dir);
        [half.held.as_slice(), half.buffered.as_slice()].concat()
    }

    pub fn local_reply(&self, stream: StreamId) -> Option<LocalReply> {
        self.state(stream).local_reply.clone()
    }

    /// Values the filter stored with `proxy_set_property` on this stream, keyed by the
    /// path segments joined with '.'.
    pub fn filter_state(&self, stream: StreamId) -> BTreeMap<String, Vec<u8>> {
        self.state(stream)
            .filter_state
            .iter()
            .map(|(k, v)| (k.join("."), v.clone()))
            .collect()
    }

    /// Every `proxy_continue_stream` call the stream made, in order.
    pub fn continue_calls(&self, stream: StreamId) -> Vec<StreamKind> {
        self.state(stream).continues.clone()
    }

    /// Every `proxy_close_stream` call the stream made, in order.
    pub fn close_calls(&self, stream: StreamId) -> Vec<StreamKind> {
        self.state(stream).closes.clone()
    }

    pub fn logs(&self) -> &[LogEntry] {
        &self.host().logs
    }

    /// Returns and clears the logs collected so far.
    pub fn take_logs(&mut self) -> Vec<LogEntry> {
        std::mem::take(&mut self.host_mut().logs)
    }

    /// True if some log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs().iter().any(|l| l.message.contains(needle))
    }

    /// Number of calls per host function (`env` names, WASI as `wasi:name`, stubs as
    /// `module.name`).
    pub fn hostcall_counts(&self) -> &BTreeMap<String, u64> {
        &self.host().calls
    }

    /// Calls to imports this host does not implement, in order (`module.name`).
    pub fn unimplemented_calls(&self) -> &[String] {
        &self.host().unimplemented
    }

    /// Number of `proxy_done` calls (a context finishing a deferred `on_done`).
    pub fn done_calls(&self) -> u32 {
        self.host().done_calls
    }

    /// Fuel (≈ wasm instructions) burnt by guest code since load or [`Vm::reset_fuel`].
    pub fn fuel_consumed(&self) -> u64 {
        self.fuel_used
    }

    pub fn reset_fuel(&mut self) {
        self.fuel_used = 0;
    }

    /// Changes the per-call fuel limit (see [`VmOptions::fuel_limit`]).
    pub fn set_fuel_limit(&mut self, limit: Option<u64>) {
        self.fuel_budget = limit.unwrap_or(UNLIMITED_FUEL);
    }

    /// Size of the module's linear memory in bytes.
    pub fn memory_size(&self) -> usize {
        self.memory.map_or(0, |m| m.data_size(&self.store))
    }

    /// True once any guest call trapped; the VM refuses further calls.
    pub fn trapped(&self) -> bool {
        self.trap.is_some()
    }

    /// Description of the trap that killed the VM.
    pub fn trap_message(&self) -> Option<&str> {
        self.trap.as_deref()
    }
}

/// `anyhow::Context` for wasmtime's own error type.
fn with_context<T>(
    result: wasmtime::Result<T>,
    message: impl FnOnce() -> String,
) -> anyhow::Result<T> {
    result.map_err(|err| anyhow::Error::from(err).context(message()))
}

impl Host {
    fn new(world: &World, opts: &VmOptions) -> Host {
        Host {
            world: world.clone(),
            vm_uid: world.new_vm_id(),
            vm_id: opts.vm_id.clone(),
            log_level: opts.log_level,
            echo_logs: opts.echo_logs,
            logs: Vec::new(),
            vm_config: opts.vm_config.clone(),
            plugin_config: opts.plugin_config.clone(),
            properties: opts.properties.iter().cloned().collect::<HashMap<_, _>>(),
            root_id: ROOT,
            current_context: ROOT,
            streams: BTreeMap::new(),
            tick_period: None,
            http_calls: BTreeMap::new(),
            next_token: 0,
            callout: None,
            calls: BTreeMap::new(),
            unimplemented: Vec::new(),
            done_calls: 0,
            rng_state: opts.random_seed,
            stdio: [Vec::new(), Vec::new()],
        }
    }
}

impl Direction {
    /// Export name of this direction's callback for `phase` (headers/body/trailers).
    fn export(self, phase: &str) -> String {
        let side = match self {
            Direction::Request => "request",
            Direction::Response => "response",
        };
        format!("proxy_on_{side}_{phase}")
    }
}
