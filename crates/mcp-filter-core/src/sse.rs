//! Incremental `text/event-stream` parsing (WHATWG server-sent events) for MCP response streams.
//! Chunks may split the stream anywhere, even between a CR and its LF. Line ends are found
//! with `memchr`; an event whose `data` line lies within one chunk is handed out borrowing
//! that chunk, so the common case copies nothing. Only a line cut by a chunk boundary, or
//! multi-line data, is copied, into buffers capped at `max_event_bytes` and reused, so a
//! stream is never buffered whole. Also the legacy HTTP+SSE `endpoint` event rewrite, as a
//! pure function over the stream's head.

use memchr::memchr2;
use std::ops::Range;

/// One dispatched event, borrowed from the chunk or the parser for the callback's duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEventRef<'a> {
    /// The `event:` field, or "message" when absent.
    pub event: &'a [u8],
    pub data: &'a [u8],
    pub id: Option<&'a [u8]>,
    /// The event was larger than the cap: its data was not kept.
    pub truncated: bool,
}

impl SseEventRef<'_> {
    pub fn is_message(&self) -> bool {
        self.event == b"message"
    }

    pub fn to_owned_event(&self) -> SseEvent {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        SseEvent {
            event: text(self.event),
            data: text(self.data),
            id: self.id.map(text),
            truncated: self.truncated,
        }
    }
}

/// An owned event (tests, fuzzing, the endpoint rewrite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
    pub truncated: bool,
}

/// Where the current event's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Data {
    None,
    /// One `data` line, still in the chunk being fed.
    InChunk(Range<usize>),
    /// In `SseParser::data` (copied: cut by a chunk boundary, or several lines).
    Copied,
}

/// Streaming parser state.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// The start of a line cut by the end of the previous chunk.
    carry: Vec<u8>,
    carry_overflow: bool,
    /// The previous chunk ended in CR: a leading LF belongs to that line end.
    after_cr: bool,
    event: Vec<u8>,
    data: Vec<u8>,
    data_at: Data,
    id: Vec<u8>,
    has_id: bool,
    truncated: bool,
    /// Bytes of a leading UTF-8 BOM matched so far (it may be split across chunks); `None`
    /// once the stream is past its start.
    bom_matched: Option<usize>,
}

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            max_event_bytes,
            carry: Vec::new(),
            carry_overflow: false,
            after_cr: false,
            event: Vec::new(),
            data: Vec::new(),
            data_at: Data::None,
            id: Vec::new(),
            has_id: false,
            truncated: false,
            bom_matched: Some(0),
        }
    }

    /// Feeds the next chunk; `on_event` gets every event completed by it.
    pub fn feed(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(SseEventRef)) {
        let mut chunk = self.skip_bom(chunk);
        if chunk.is_empty() {
            return;
        }
        if std::mem::take(&mut self.after_cr) && chunk.first() == Some(&b'\n') {
            chunk = chunk.get(1..).unwrap_or_default();
        }
        let mut pos = 0;
        while pos < chunk.len() {
            let rest = chunk.get(pos..).unwrap_or_default();
            let Some(offset) = memchr2(b'\n', b'\r', rest) else {
                self.push_carry(rest);
                break;
            };
            let end = pos + offset;
            if self.carry.is_empty() && !self.carry_overflow {
                self.line(chunk, pos..end, on_event);
            } else {
                self.push_carry(chunk.get(pos..end).unwrap_or_default());
                let carried = std::mem::take(&mut self.carry);
                let overflow = std::mem::take(&mut self.carry_overflow);
                self.truncated |= overflow;
                self.copied_line(&carried);
                self.carry = carried;
                self.carry.clear();
            }
            pos = end + 1;
            if chunk.get(end) == Some(&b'\r') {
                match chunk.get(pos) {
                    Some(b'\n') => pos += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        // Data still pointing into this chunk must outlive it.
        if let Data::InChunk(range) = self.data_at.clone() {
            self.data.clear();
            self.data
                .extend_from_slice(chunk.get(range).unwrap_or_default());
            self.data_at = Data::Copied;
        }
    }

    /// Consumes a leading BOM, however the chunks split it; bytes that turn out not to be
    /// one start the first line.
    fn skip_bom<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        let Some(mut matched) = self.bom_matched else {
            return chunk;
        };
        for (i, &byte) in chunk.iter().enumerate() {
            if BOM.get(matched) == Some(&byte) {
                matched += 1;
                if matched == BOM.len() {
                    self.bom_matched = None;
                    return chunk.get(i + 1..).unwrap_or_default();
                }
                continue;
            }
            self.bom_matched = None;
            self.push_carry(&BOM[..matched]);
            return chunk.get(i..).unwrap_or_default();
        }
        self.bom_matched = Some(matched);
        &[]
    }

    /// Keeps at most `max_event_bytes` of a cut line: its field name survives, its value is
    /// marked truncated, as when the whole line is in one chunk.
    fn push_carry(&mut self, bytes: &[u8]) {
        let room = self.max_event_bytes.saturating_sub(self.carry.len());
        if bytes.len() > room {
            self.carry_overflow = true;
        }
        self.carry
            .extend_from_slice(bytes.get(..bytes.len().min(room)).unwrap_or_default());
    }

    /// A complete line inside `chunk` (borrowed).
    fn line(&mut self, chunk: &[u8], range: Range<usize>, on_event: &mut dyn FnMut(SseEventRef)) {
        let line = chunk.get(range.clone()).unwrap_or_default();
        if line.is_empty() {
            self.dispatch(chunk, on_event);
            return;
        }
        // A line over the cap counts as its first `max_event_bytes` bytes, truncated.
        let kept = line.len().min(self.max_event_bytes);
        self.truncated |= kept < line.len();
        let line = line.get(..kept).unwrap_or_default();
        let (field, value) = split_field(line);
        if field == b"data" {
            let end = range.start + kept;
            if self.data_at == Data::None {
                self.data_at = Data::InChunk(end - value.len()..end);
            } else {
                self.materialize(chunk);
                self.append_data(value);
            }
        } else {
            self.other_field(field, value);
        }
    }

    /// A complete line that was cut across chunks (copied). It is never empty: an empty
    /// line has nothing to carry.
    fn copied_line(&mut self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        let (field, value) = split_field(line);
        if field == b"data" {
            self.append_data(value);
        } else {
            self.other_field(field, value);
        }
    }

    fn other_field(&mut self, field: &[u8], value: &[u8]) {
        match field {
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            b"id" if !value.contains(&0) => {
                self.id.clear();
                self.id.extend_from_slice(value);
                self.has_id = true;
            }
            _ => {}
        }
    }

    /// Moves data borrowed from `chunk` into the parser's buffer.
    fn materialize(&mut self, chunk: &[u8]) {
        if let Data::InChunk(range) = self.data_at.clone() {
            self.data.clear();
            self.data
                .extend_from_slice(chunk.get(range).unwrap_or_default());
            self.data_at = Data::Copied;
        }
    }

    fn append_data(&mut self, value: &[u8]) {
        match self.data_at {
            Data::None => {
                self.data.clear();
                self.data_at = Data::Copied;
            }
            _ => self.data.push(b'\n'),
        }
        if self.truncated {
            return;
        }
        if self.data.len() + value.len() > self.max_event_bytes {
            self.truncated = true;
            self.data.clear();
        } else {
            self.data.extend_from_slice(value);
        }
    }

    fn dispatch(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(SseEventRef)) {
        let data_at = std::mem::replace(&mut self.data_at, Data::None);
        let truncated = std::mem::take(&mut self.truncated);
        if data_at != Data::None {
            let data = match (&data_at, truncated) {
                (_, true) => &[][..],
                (Data::InChunk(range), false) => chunk.get(range.clone()).unwrap_or_default(),
                _ => &self.data[..],
            };
            let event = if self.event.is_empty() {
                &b"message"[..]
            } else {
                &self.event[..]
            };
            on_event(SseEventRef {
                event,
                data,
                id: self.has_id.then_some(&self.id[..]),
                truncated,
            });
        }
        self.event.clear();
        self.has_id = false;
        self.data.clear();
    }
}

/// `field: value` (one optional space after the colon); a line without a colon is a field
/// with an empty value; a line starting with a colon is a comment (empty field name).
fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b':', line) {
        Some(i) => {
            let value = line.get(i + 1..).unwrap_or_default();
            (
                line.get(..i).unwrap_or_default(),
                value.strip_prefix(b" ").unwrap_or(value),
            )
        }
        None => (line, &[]),
    }
}

/// Parses a whole input into owned events (tests, fuzzing, the endpoint rewrite).
pub fn parse_all(max_event_bytes: usize, chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::new(max_event_bytes);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut |e| out.push(e.to_owned_event()));
    }
    out
}

/// Outcome of looking for the legacy transport's `endpoint` event at the head of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointRewrite {
    /// The first event is not complete yet: hold the stream and look again.
    NeedMore,
    /// The first event is not `endpoint`: nothing to rewrite.
    NotEndpoint,
    /// The endpoint is not a path or URL this filter can rewrite.
    Unparsable(String),
    /// The stream head with the endpoint's path moved under `prefix`.
    Rewritten {
        stream: Vec<u8>,
        old: String,
        new: String,
    },
}

/// Rewrites the first `endpoint` event so the client posts back through the gateway's prefix.
/// `prefix` is e.g. `/mcp/demo` (no trailing slash); `/message?sessionId=1` becomes
/// `/mcp/demo/message?sessionId=1`. Absolute URLs keep only their path and query, which
/// makes the client post to the gateway it is already talking to.
pub fn rewrite_endpoint(head: &[u8], prefix: &str) -> EndpointRewrite {
    let Some(end) = first_event_end(head) else {
        return EndpointRewrite::NeedMore;
    };
    let events = parse_all(head.len() + 1, &[head.get(..end).unwrap_or_default()]);
    let Some(first) = events.first() else {
        return EndpointRewrite::NotEndpoint;
    };
    if first.event != "endpoint" {
        return EndpointRewrite::NotEndpoint;
    }
    let Some(path) = endpoint_path(first.data.trim()) else {
        return EndpointRewrite::Unparsable(first.data.clone());
    };
    let new = format!("{prefix}{path}");
    let mut stream = format!("event: endpoint\ndata: {new}\n\n").into_bytes();
    stream.extend_from_slice(head.get(end..).unwrap_or_default());
    EndpointRewrite::Rewritten {
        stream,
        old: first.data.clone(),
        new,
    }
}

/// Path and query of an endpoint given as a path or an absolute http(s) URL.
pub fn endpoint_path(endpoint: &str) -> Option<&str> {
    let valid =
        |p: &str| p.starts_with('/') && !p.starts_with("//") && !p.contains(char::is_whitespace);
    if valid(endpoint) {
        return Some(endpoint);
    }
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))?;
    let path = rest.get(rest.find('/')?..)?;
    valid(path).then_some(path)
}

/// Byte offset just past the blank line that ends the first event, if it has arrived.
fn first_event_end(head: &[u8]) -> Option<usize> {
    let mut previous_was_newline = false;
    let mut i = 0;
    while let Some(&byte) = head.get(i) {
        let newline_len = match (byte, head.get(i + 1)) {
            (b'\r', Some(b'\n')) => 2,
            (b'\r', None) => return None, // the LF may be in the next chunk
            (b'\r', _) | (b'\n', _) => 1,
            _ => 0,
        };
        if newline_len == 0 {
            previous_was_newline = false;
            i += 1;
            continue;
        }
        i += newline_len;
        if previous_was_newline {
            return Some(i);
        }
        previous_was_newline = true;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"\xEF\xBB\xBF: keep-alive\r\n\r\nevent: message\r\nid: 1\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1}\r\n\r\ndata: second\n\nretry: 5\nevent: custom\ndata\n\rdata: last\r\r";

    fn expected() -> Vec<SseEvent> {
        let ev = |event: &str, data: &str, id: Option<&str>| SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(str::to_string),
            truncated: false,
        };
        vec![
            ev("message", "{\"jsonrpc\":\"2.0\",\n\"id\":1}", Some("1")),
            ev("message", "second", None),
            ev("custom", "", None),
            ev("message", "last", None),
        ]
    }

    #[test]
    fn whole_stream() {
        assert_eq!(parse_all(1024, &[STREAM]), expected());
    }

    #[test]
    fn every_single_split_point() {
        for split in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(split);
            assert_eq!(parse_all(1024, &[a, b]), expected(), "split at {split}");
        }
    }

    #[test]
    fn every_pair_of_split_points() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let pieces = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                assert_eq!(parse_all(1024, &pieces), expected(), "splits {i},{j}");
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let pieces: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse_all(1024, &pieces), expected());
    }

    #[test]
    fn an_event_within_one_chunk_borrows_it() {
        let chunk = b"event: message\ndata: {\"id\":1}\n\n";
        let mut parser = SseParser::new(64);
        let mut seen = 0;
        parser.feed(chunk, &mut |e| {
            seen += 1;
            let inside = chunk.as_ptr_range();
            assert!(
                inside.contains(&e.data.as_ptr()),
                "data borrowed, not copied"
            );
            assert_eq!(e.data, b"{\"id\":1}");
            assert!(e.is_message());
        });
        assert_eq!(seen, 1);
        assert!(parser.data.capacity() == 0, "nothing was copied");
    }

    #[test]
    fn a_bom_split_across_chunks_is_still_a_bom_and_a_false_start_is_data() {
        let split = parse_all(64, &[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]);
        assert_eq!(split.len(), 1);
        assert_eq!(split[0].data, "a");
        // Not a BOM after all: the held bytes are parsed as the start of the first line.
        let false_start = parse_all(64, &[b"\xEF\xBB", b"x: 1\ndata: b\n\n"]);
        assert_eq!(false_start.len(), 1);
        assert_eq!(false_start[0].data, "b");
        let no_bom = parse_all(64, &[b"data: c\n\n"]);
        assert_eq!(no_bom[0].data, "c");
    }

    #[test]
    fn oversized_events_are_marked_not_kept() {
        let stream = b"data: 0123456789abcdef\n\ndata: ok\n\n";
        for pieces in [vec![&stream[..]], stream.chunks(3).collect::<Vec<_>>()] {
            let events = parse_all(8, &pieces);
            assert_eq!(events.len(), 2);
            assert!(events[0].truncated);
            assert_eq!(events[0].data, "");
            assert_eq!(events[1].data, "ok");
            assert!(!events[1].truncated);
        }
        let two_lines = parse_all(8, &[b"data: 01234\ndata: 56789\n\n"]);
        assert!(two_lines[0].truncated && two_lines[0].data.is_empty());
    }

    #[test]
    fn endpoint_rewrite() {
        let head =
            b"event: endpoint\r\ndata: /message?sessionId=abc\r\n\r\nevent: message\ndata: x";
        match rewrite_endpoint(head, "/mcp/demo") {
            EndpointRewrite::Rewritten { stream, old, new } => {
                assert_eq!(old, "/message?sessionId=abc");
                assert_eq!(new, "/mcp/demo/message?sessionId=abc");
                assert_eq!(
                    stream,
                    b"event: endpoint\ndata: /mcp/demo/message?sessionId=abc\n\nevent: message\ndata: x"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            rewrite_endpoint(b"event: endpoint\ndata: /m", "/p"),
            EndpointRewrite::NeedMore
        );
        assert_eq!(
            rewrite_endpoint(b"event: endpoint\r\n\r", "/p"),
            EndpointRewrite::NeedMore
        );
        assert_eq!(
            rewrite_endpoint(b"data: x\n\n", "/p"),
            EndpointRewrite::NotEndpoint
        );
        assert_eq!(
            rewrite_endpoint(b"event: endpoint\ndata: ::bad::\n\n", "/p"),
            EndpointRewrite::Unparsable("::bad::".into())
        );
        match rewrite_endpoint(
            b"event: endpoint\ndata: http://10.0.0.1:9/messages?s=1\n\n",
            "/p",
        ) {
            EndpointRewrite::Rewritten { new, .. } => assert_eq!(new, "/p/messages?s=1"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
