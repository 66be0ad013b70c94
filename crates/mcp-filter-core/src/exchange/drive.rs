//! Driving one exchange through its phases natively, with a fixed clock, an in-memory shared
//! store and the events captured as JSON: the harness of the exchange's unit tests and of the
//! `exchange_chunking` fuzz target ([`check_chunking`]). Built only for tests and fuzzing.
#![allow(clippy::expect_used, clippy::panic)]

use super::*;
use crate::breaker::{CasStats, LocalUpstream, UpstreamEnv};
use crate::config::Config;
use crate::events::capture::{capturing, SharedSink};
use crate::pending::{PendingStats, SharedPending};
use crate::upstream::shared::MapStore;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

/// An exchange's world: configuration, ids, events, caches and shared data.
pub(crate) struct Harness {
    pub(crate) config: Config,
    pub(crate) ids: IdGenerator,
    pub(crate) events: Events,
    pub(crate) sink: SharedSink,
    pub(crate) memo: common::TailMemo,
    pub(crate) buffers: BufferPool,
    pub(crate) fingerprints: FingerprintCache,
    pub(crate) store: MapStore,
    pub(crate) pending: PendingStats,
    pub(crate) cas: CasStats,
    pub(crate) upstreams: BTreeMap<String, LocalUpstream>,
    pub(crate) now: SystemTime,
}

impl Harness {
    #[cfg(test)]
    pub(crate) fn new(config: &str) -> Self {
        Harness::with(Config::parse(config.as_bytes()).expect("valid config"))
    }

    pub(crate) fn with(config: Config) -> Self {
        let (events, sink) = capturing(config.min_level);
        Harness {
            fingerprints: FingerprintCache::new(&config.fingerprinting),
            memo: common::TailMemo::default(),
            buffers: BufferPool::default(),
            config,
            ids: IdGenerator::new(7),
            events,
            sink,
            store: MapStore::default(),
            pending: PendingStats::default(),
            cas: CasStats::default(),
            upstreams: BTreeMap::new(),
            now: UNIX_EPOCH + Duration::from_secs(1_763_780_000),
        }
    }

    pub(crate) fn env(&mut self) -> Env<'_> {
        let upstream = self.config.upstream.as_ref().map(|config| UpstreamEnv {
            config,
            store: &self.store,
            stats: &mut self.cas,
            locals: &mut self.upstreams,
            random: 0,
        });
        Env {
            config: &self.config,
            clock: Clock::fixed(self.now),
            ids: &mut self.ids,
            events: &mut self.events,
            memo: &mut self.memo,
            buffers: &mut self.buffers,
            fingerprints: &mut self.fingerprints,
            pending: SharedPending {
                store: &self.store,
                slots: 64,
                stats: &mut self.pending,
            },
            upstream,
        }
    }

    #[cfg(test)]
    pub(crate) fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    pub(crate) fn start(
        &mut self,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> (Box<Exchange>, RequestAction) {
        let pairs = headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()));
        let head = RequestHead {
            headers: RequestHeaders::read(pairs, &self.config),
            route_name: None,
            cluster_name: Some("demo"),
            end_of_stream,
        };
        Exchange::on_request_headers(&head, &mut self.env())
    }

    #[cfg(test)]
    pub(crate) fn respond(
        &mut self,
        exchange: &mut Exchange,
        headers: &[(&str, &str)],
        body: &str,
    ) {
        exchange.on_response_headers(&response_head(headers), false, &mut self.env());
        exchange.on_response_body(body.as_bytes(), true, &mut self.env());
    }

    pub(crate) fn end(&mut self, exchange: &mut Exchange, details: Option<&str>) {
        let end = StreamEnd {
            code_details: details,
            response_code: None,
        };
        exchange.on_stream_end(&end, &mut self.env());
    }

    #[cfg(test)]
    pub(crate) fn events(&self) -> Vec<Value> {
        self.sink.events()
    }

    #[cfg(test)]
    pub(crate) fn named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }
}

/// Request and response of one exchange, as the fuzz target reads them from its input.
struct Case<'a> {
    request_body: &'a [u8],
    response_body: &'a [u8],
    response_type: &'static str,
    request_chunk: usize,
    response_chunk: usize,
}

impl<'a> Case<'a> {
    /// Byte 0: chunk sizes (low nibble request, high nibble response, each 1..=16); byte 1:
    /// the response's content type; the rest: the request body, then after the first `0xff`
    /// the response body.
    fn read(input: &'a [u8]) -> Option<Self> {
        let (&sizes, rest) = input.split_first()?;
        let (&kind, rest) = rest.split_first()?;
        let (request_body, response_body) = match rest.iter().position(|&b| b == 0xff) {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        let response_type = match kind % 3 {
            0 => "application/json",
            1 => "text/event-stream",
            _ => "text/plain",
        };
        Some(Case {
            request_body,
            response_body,
            response_type,
            request_chunk: usize::from(sizes & 0x0f) + 1,
            response_chunk: usize::from(sizes >> 4) + 1,
        })
    }

    /// The event lines of the exchange with the bodies cut into `request` / `response` sized
    /// chunks (`usize::MAX`: whole).
    fn event_lines(&self, config: &Config, request: usize, response: usize) -> Vec<String> {
        let mut h = Harness::with(config.clone());
        let headers = [
            (":method", "POST"),
            (":path", "/mcp"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("authorization", "Bearer fuzz-token-0123456789"),
        ];
        let (mut exchange, _) = h.start(&headers, self.request_body.is_empty());
        feed(self.request_body, request, |chunk, end| {
            exchange.on_request_body(chunk, end, &mut h.env());
        });
        let content_type = [(":status", "200"), ("content-type", self.response_type)];
        exchange.on_response_headers(
            &response_head(&content_type),
            self.response_body.is_empty(),
            &mut h.env(),
        );
        feed(self.response_body, response, |chunk, end| {
            exchange.on_response_body(chunk, end, &mut h.env());
        });
        h.end(&mut exchange, None);
        let lines = h.sink.0.borrow().clone();
        lines
    }
}

/// Calls `each` with the body's chunks of `size` bytes, the last with `end` set.
fn feed(body: &[u8], size: usize, mut each: impl FnMut(&[u8], bool)) {
    if body.is_empty() {
        return;
    }
    let mut chunks = body.chunks(size.max(1)).peekable();
    while let Some(chunk) = chunks.next() {
        each(chunk, chunks.peek().is_none());
    }
}

/// Response headers as the exchange reads them.
pub fn response_head<'a>(headers: &'a [(&'a str, &'a str)]) -> ResponseHeaders<'a> {
    ResponseHeaders::read(headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
}

/// The fuzz target's check: any request and response, cut into any chunks, give the same
/// events as when each body arrives whole, never panic, and end every request element with
/// exactly one `response` event.
pub fn check_chunking(input: &[u8]) {
    let Some(case) = Case::read(input) else {
        return;
    };
    thread_local! {
        static CONFIG: Config = Config::parse(br#"{"min_level":"debug","validation":"observe"}"#)
            .expect("valid config");
    }
    CONFIG.with(|config| {
        let whole = case.event_lines(config, usize::MAX, usize::MAX);
        let chunked = case.event_lines(config, case.request_chunk, case.response_chunk);
        assert_eq!(whole, chunked, "chunking changed the events");
        let count = |name: &str| {
            let field = format!(r#","event":"{name}","#);
            whole.iter().filter(|l| l.contains(&field)).count()
        };
        assert_eq!(
            count("request"),
            count("response"),
            "one response per request element: {whole:#?}"
        );
        for line in &whole {
            let object = serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object());
            assert!(object, "every line is one JSON object: {line}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::check_chunking;

    /// A few shapes the fuzz target starts from, so `cargo test` runs the check too.
    #[test]
    fn chunking_never_changes_the_events() {
        let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"t":"é"}}}"#;
        let json = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}"#;
        let sse = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n";
        let batch =
            format!("[{call},{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}]");
        for (sizes, kind, request, response) in [
            (0x00, 0, call, json.to_string()),
            (0x3a, 1, call, sse.to_string()),
            (0xf1, 0, batch.as_str(), format!("[{json}]")),
            (0x52, 2, "{not json", "oops".to_string()),
            (
                0x11,
                1,
                call,
                "data: {\"jsonrpc\":\"2.0\",\"id\":7,".to_string(),
            ),
        ] {
            let mut input = vec![sizes, kind];
            input.extend_from_slice(request.as_bytes());
            input.push(0xff);
            input.extend_from_slice(response.as_bytes());
            check_chunking(&input);
        }
    }
}
