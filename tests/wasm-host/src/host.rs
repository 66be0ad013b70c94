//! Per-VM host state (the wasmtime `Store` data): logs, configuration, properties,
//! streams, pending callouts, the effective context and call accounting.

use crate::abi::{buffer, map, HeaderPairs, HostResult, LogLevel, Status};
use crate::stream::{Direction, StreamState};
use crate::world::World;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// `proxy_log` (the SDK's `log` crate backend, including its panic hook).
    Proxy,
    /// A line the module wrote to WASI stdout (logged at `Info`).
    Stdout,
    /// A line the module wrote to WASI stderr (logged at `Error`).
    Stderr,
}

/// One log line emitted by the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub level: LogLevel,
    pub message: String,
    pub source: LogSource,
}

/// An HTTP callout made with `proxy_http_call`, waiting for the test to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    /// The cluster name the filter targeted.
    pub upstream: String,
    pub headers: HeaderPairs,
    pub body: Vec<u8>,
    pub trailers: HeaderPairs,
    pub timeout: Duration,
    /// Context that dispatched the call; the response is delivered to it.
    pub context_id: u32,
}

impl HttpCall {
    /// First value of a header of the callout request.
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::stream::header_value(&self.headers, name)
    }
}

/// The response the test gives to a callout (see `Vm::deliver_http_call`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalloutResponse {
    pub headers: HeaderPairs,
    pub body: Vec<u8>,
    pub trailers: HeaderPairs,
}

pub(crate) struct Host {
    pub world: World,
    /// Unique id of this VM in its world (owner of shared queues).
    pub vm_uid: u64,
    pub vm_id: String,
    pub log_level: LogLevel,
    pub echo_logs: bool,
    pub logs: Vec<LogEntry>,
    pub vm_config: Vec<u8>,
    pub plugin_config: Vec<u8>,
    pub properties: HashMap<Vec<String>, Vec<u8>>,
    pub root_id: u32,
    /// Context the host calls operate on: the callback's context, or the one chosen with
    /// `proxy_set_effective_context`.
    pub current_context: u32,
    pub streams: BTreeMap<u32, StreamState>,
    pub tick_period: Option<Duration>,
    pub http_calls: BTreeMap<u32, HttpCall>,
    pub next_token: u32,
    /// The callout response being delivered, readable only during that callback.
    pub callout: Option<CalloutResponse>,
    pub calls: BTreeMap<String, u64>,
    pub unimplemented: Vec<String>,
    pub done_calls: u32,
    pub rng_state: u64,
    /// Partial lines written to WASI stdout (0) and stderr (1).
    pub stdio: [Vec<u8>; 2],
}

impl Host {
    pub fn record_call(&mut self, name: &str) {
        *self.calls.entry(name.to_string()).or_default() += 1;
    }

    pub fn log(&mut self, level: LogLevel, message: String, source: LogSource) {
        if level < self.log_level {
            return;
        }
        if self.echo_logs {
            eprintln!("[wasm vm{} {level:?}] {message}", self.vm_uid);
        }
        self.logs.push(LogEntry {
            level,
            message,
            source,
        });
    }

    /// Appends WASI output, turning complete lines into log entries.
    pub fn write_stdio(&mut self, fd: usize, bytes: &[u8]) {
        self.stdio[fd].extend_from_slice(bytes);
        while let Some(end) = self.stdio[fd].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.stdio[fd].drain(..=end).collect();
            self.log_stdio_line(fd, &line[..end]);
        }
    }

    /// Logs unterminated output, e.g. before reporting a trap.
    pub fn flush_stdio(&mut self) {
        for fd in 0..2 {
            let rest = std::mem::take(&mut self.stdio[fd]);
            if !rest.is_empty() {
                self.log_stdio_line(fd, &rest);
            }
        }
    }

    fn log_stdio_line(&mut self, fd: usize, line: &[u8]) {
        let (level, source) = match fd {
            0 => (LogLevel::Info, LogSource::Stdout),
            _ => (LogLevel::Error, LogSource::Stderr),
        };
        self.log(level, String::from_utf8_lossy(line).into_owned(), source);
    }

    /// splitmix64: deterministic per seed, good enough for hash seeds and ids.
    pub fn next_random(&mut self) -> u64 {
        self.rng_state = self.rng_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn current_stream(&mut self) -> HostResult<&mut StreamState> {
        self.streams
            .get_mut(&self.current_context)
            .ok_or(Status::BadArgument)
    }

    fn current_stream_ref(&self) -> Option<&StreamState> {
        self.streams.get(&self.current_context)
    }

    /// A readable buffer; stream bodies are the bytes currently buffered by the host.
    pub fn buffer(&self, kind: i32) -> HostResult<&[u8]> {
        let body = |dir| {
            self.current_stream_ref()
                .map(|s| s.half(dir).buffered.as_slice())
        };
        match kind {
            buffer::HTTP_REQUEST_BODY => body(Direction::Request).ok_or(Status::NotFound),
            buffer::HTTP_RESPONSE_BODY => body(Direction::Response).ok_or(Status::NotFound),
            buffer::HTTP_CALL_RESPONSE_BODY => self
                .callout
                .as_ref()
                .map(|c| c.body.as_slice())
                .ok_or(Status::NotFound),
            buffer::VM_CONFIGURATION => Ok(&self.vm_config),
            buffer::PLUGIN_CONFIGURATION => Ok(&self.plugin_config),
            _ => Err(Status::NotFound),
        }
    }

    /// Only stream bodies are writable, as in Envoy.
    pub fn buffer_mut(&mut self, kind: i32) -> HostResult<&mut Vec<u8>> {
        let dir = match kind {
            buffer::HTTP_REQUEST_BODY => Direction::Request,
            buffer::HTTP_RESPONSE_BODY => Direction::Response,
            _ => return Err(Status::NotFound),
        };
        Ok(&mut self
            .current_stream()
            .map_err(|_| Status::NotFound)?
            .half_mut(dir)
            .buffered)
    }

    /// A readable header map; `None` when that map does not exist (yet) in this context.
    pub fn map(&self, kind: i32) -> HostResult<Option<&HeaderPairs>> {
        if let Some((dir, trailers)) = stream_map(kind) {
            let stream = self.current_stream_ref();
            return Ok(stream.and_then(|s| s.half(dir).map(trailers).as_ref()));
        }
        let callout = self.callout.as_ref();
        match kind {
            map::HTTP_CALL_RESPONSE_HEADERS => Ok(callout.map(|c| &c.headers)),
            map::HTTP_CALL_RESPONSE_TRAILERS => Ok(callout.map(|c| &c.trailers)),
            _ => Err(Status::BadArgument),
        }
    }

    /// A writable stream header map, created on first write; callout maps are read-only.
    pub fn map_mut(&mut self, kind: i32) -> HostResult<&mut HeaderPairs> {
        let (dir, trailers) = stream_map(kind).ok_or(Status::BadArgument)?;
        let half = self.current_stream()?.half_mut(dir);
        Ok(half.map_mut(trailers).get_or_insert_with(Vec::new))
    }

    /// Property lookup: stream properties set by the test, then the filter state the
    /// filter wrote, then values derived from the stream's headers, then VM properties.
    pub fn property(&self, path: &[String]) -> Option<Vec<u8>> {
        let from_stream = self
            .current_stream_ref()
            .and_then(|stream| stream.property(path));
        from_stream.or_else(|| self.properties.get(path).cloned())
    }
}

/// Maps a stream header-map type to (direction, is_trailers).
fn stream_map(kind: i32) -> Option<(Direction, bool)> {
    match kind {
        map::HTTP_REQUEST_HEADERS => Some((Direction::Request, false)),
        map::HTTP_REQUEST_TRAILERS => Some((Direction::Request, true)),
        map::HTTP_RESPONSE_HEADERS => Some((Direction::Response, false)),
        map::HTTP_RESPONSE_TRAILERS => Some((Direction::Response, true)),
        _ => None,
    }
}
