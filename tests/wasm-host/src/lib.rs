//! A proxy-wasm (ABI 0.2.1) host on wasmtime for testing proxy-wasm filters without
//! Envoy. A [`World`] is one simulated Envoy process (clock, shared data, metrics,
//! queues); each [`Vm`] is one worker's instance of the filter, driven through the
//! lifecycle Envoy uses and inspected afterwards. See README.md for the ABI coverage.
//!
//! ```no_run
//! use proxy_wasm_test_host::{headers, Action, Vm, VmOptions, World};
//! let world = World::new();
//! let opts = VmOptions::default().plugin_config(r#"{"mode":"strict"}"#);
//! let mut vm = Vm::load_file(&world, "target/wasm32-wasip1/release/filter.wasm", opts)?;
//! let mut stream = vm.stream()?;
//! assert_eq!(stream.request_headers(&headers::request("POST", "/mcp"), false)?, Action::Continue);
//! stream.request_body(br#"{"jsonrpc":"2.0"}"#, true)?;
//! stream.complete()?;
//! # anyhow::Ok(())
//! ```
// Test infrastructure: a broken fixture should fail loudly, so unwrap, expect and panic are
// allowed here (the workspace denies them in the product's crates).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod abi;
mod cache;
pub mod headers;
mod host;
mod hostcalls;
mod memory;
mod stream;
mod stubs;
mod vm;
mod wasi;
mod world;

pub use abi::{Action, LogLevel, MetricKind};
pub use cache::ModuleCache;
pub use host::{CalloutResponse, HttpCall, LogEntry, LogSource};
pub use stream::{Direction, LocalReply, StreamId, StreamKind};
pub use vm::{Vm, VmOptions};
pub use world::{Metric, MetricValue, World};

/// Encodings Envoy uses for property values.
pub mod values {
    /// Integers are 8-byte little-endian.
    pub fn int(value: i64) -> Vec<u8> {
        value.to_le_bytes().to_vec()
    }

    /// Booleans are one byte, 0 or 1.
    pub fn boolean(value: bool) -> Vec<u8> {
        vec![value as u8]
    }

    /// Decodes an 8-byte little-endian integer property.
    pub fn parse_int(bytes: &[u8]) -> Option<i64> {
        Some(i64::from_le_bytes(bytes.try_into().ok()?))
    }
}

/// A [`Vm`] borrowed together with one of its streams, for terse tests:
/// `let mut s = vm.stream()?; s.request_headers(&h, true)?;`.
pub struct Stream<'vm> {
    vm: &'vm mut Vm,
    id: StreamId,
}

impl<'vm> Stream<'vm> {
    pub(crate) fn new(vm: &'vm mut Vm, id: StreamId) -> Self {
        Stream { vm, id }
    }

    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The VM, for inspection (`s.vm().request_header_map(s.id())`).
    pub fn vm(&mut self) -> &mut Vm {
        self.vm
    }

    pub fn request_headers<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> anyhow::Result<Action> {
        self.vm.request_headers(self.id, headers, end_of_stream)
    }

    pub fn request_body(&mut self, chunk: &[u8], end_of_stream: bool) -> anyhow::Result<Action> {
        self.vm.request_body(self.id, chunk, end_of_stream)
    }

    pub fn request_trailers<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        trailers: &[(K, V)],
    ) -> anyhow::Result<Action> {
        self.vm.request_trailers(self.id, trailers)
    }

    pub fn response_headers<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> anyhow::Result<Action> {
        self.vm.response_headers(self.id, headers, end_of_stream)
    }

    pub fn response_body(&mut self, chunk: &[u8], end_of_stream: bool) -> anyhow::Result<Action> {
        self.vm.response_body(self.id, chunk, end_of_stream)
    }

    pub fn response_trailers<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        trailers: &[(K, V)],
    ) -> anyhow::Result<Action> {
        self.vm.response_trailers(self.id, trailers)
    }

    pub fn set_property(&mut self, path: &[&str], value: impl Into<Vec<u8>>) -> anyhow::Result<()> {
        self.vm.set_stream_property(self.id, path, value)
    }

    pub fn complete(&mut self) -> anyhow::Result<()> {
        self.vm.complete(self.id)
    }
}
