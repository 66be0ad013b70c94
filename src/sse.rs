//! Incremental `text/event-stream` parsing (WHATWG server-sent events) for MCP response streams.
//! Chunks may split the stream anywhere, even between a CR and its LF; the parser keeps only the
//! current line and the current event's data, capped, so a stream is never buffered whole.
//! Also the legacy HTTP+SSE `endpoint` event rewrite, as a pure function over the stream's head.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or "message" when absent.
    pub event: String,
    pub data: String,
    pub id: Option<String>,
    /// The event was larger than the cap: its data was not kept.
    pub truncated: bool,
}

/// Streaming parser state.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    line: Vec<u8>,
    line_overflow: bool,
    after_cr: bool,
    event: Option<String>,
    data: Vec<u8>,
    has_data: bool,
    id: Option<String>,
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
            line: Vec::new(),
            line_overflow: false,
            after_cr: false,
            event: None,
            data: Vec::new(),
            has_data: false,
            id: None,
            truncated: false,
            bom_matched: Some(0),
        }
    }

    /// Feeds the next chunk; complete events are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let chunk = self.skip_bom(chunk, out);
        for &byte in chunk {
            self.feed_byte(byte, out);
        }
    }

    /// Consumes a leading BOM, however the chunks split it; bytes that turn out not to be
    /// one are parsed as ordinary input.
    fn skip_bom<'c>(&mut self, chunk: &'c [u8], out: &mut Vec<SseEvent>) -> &'c [u8] {
        let Some(mut matched) = self.bom_matched else {
            return chunk;
        };
        for (i, &byte) in chunk.iter().enumerate() {
            if BOM.get(matched) == Some(&byte) {
                matched += 1;
                if matched == BOM.len() {
                    self.bom_matched = None;
                    return &chunk[i + 1..];
                }
                continue;
            }
            self.bom_matched = None;
            for &held in &BOM[..matched] {
                self.feed_byte(held, out);
            }
            return &chunk[i..];
        }
        self.bom_matched = Some(matched);
        &[]
    }

    fn feed_byte(&mut self, byte: u8, out: &mut Vec<SseEvent>) {
        match byte {
            b'\n' if self.after_cr => self.after_cr = false,
            b'\n' | b'\r' => {
                self.after_cr = byte == b'\r';
                self.end_line(out);
            }
            _ => {
                self.after_cr = false;
                self.push_line_byte(byte);
            }
        }
    }

    fn push_line_byte(&mut self, byte: u8) {
        if self.line.len() < self.max_event_bytes {
            self.line.push(byte);
        } else {
            self.line_overflow = true;
        }
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.line_overflow) {
            self.truncated = true;
        }
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &[][..]),
        };
        match field {
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => self.push_data(value),
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned())
            }
            _ => {}
        }
    }

    fn push_data(&mut self, value: &[u8]) {
        let separator = usize::from(self.has_data);
        if self.data.len() + separator + value.len() > self.max_event_bytes {
            self.truncated = true;
        } else {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
        }
        self.has_data = true;
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        let id = self.id.take();
        let data = std::mem::take(&mut self.data);
        let truncated = std::mem::take(&mut self.truncated);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        out.push(SseEvent {
            event: event.unwrap_or_else(|| "message".to_string()),
            data: if truncated {
                String::new()
            } else {
                String::from_utf8_lossy(&data).into_owned()
            },
            id,
            truncated,
        });
    }
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
    let mut parser = SseParser::new(head.len() + 1);
    let mut events = Vec::new();
    parser.feed(&head[..end], &mut events);
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
    stream.extend_from_slice(&head[end..]);
    EndpointRewrite::Rewritten {
        stream,
        old: first.data.clone(),
        new,
    }
}

/// Path and query of an endpoint given as a path or an absolute http(s) URL.
fn endpoint_path(endpoint: &str) -> Option<&str> {
    let valid =
        |p: &str| p.starts_with('/') && !p.starts_with("//") && !p.contains(char::is_whitespace);
    if valid(endpoint) {
        return Some(endpoint);
    }
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))?;
    let path = &rest[rest.find('/')?..];
    valid(path).then_some(path)
}

/// Byte offset just past the blank line that ends the first event, if it has arrived.
fn first_event_end(head: &[u8]) -> Option<usize> {
    let mut previous_was_newline = false;
    let mut i = 0;
    while i < head.len() {
        let newline_len = match (head[i], head.get(i + 1)) {
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

    fn parse_in_pieces(pieces: &[&[u8]], cap: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::new(cap);
        let mut out = Vec::new();
        for piece in pieces {
            parser.feed(piece, &mut out);
        }
        out
    }

    #[test]
    fn whole_stream() {
        assert_eq!(parse_in_pieces(&[STREAM], 1024), expected());
    }

    #[test]
    fn every_single_split_point() {
        for split in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(split);
            assert_eq!(
                parse_in_pieces(&[a, b], 1024),
                expected(),
                "split at {split}"
            );
        }
    }

    #[test]
    fn every_pair_of_split_points() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let pieces = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                assert_eq!(parse_in_pieces(&pieces, 1024), expected(), "splits {i},{j}");
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let pieces: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse_in_pieces(&pieces, 1024), expected());
    }

    #[test]
    fn a_bom_split_across_chunks_is_still_a_bom_and_a_false_start_is_data() {
        let split = parse_in_pieces(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"], 64);
        assert_eq!(split.len(), 1);
        assert_eq!(split[0].data, "a");
        // Not a BOM after all: the held bytes are parsed as the start of the first line.
        let false_start = parse_in_pieces(&[b"\xEF\xBB", b"x: 1\ndata: b\n\n"], 64);
        assert_eq!(false_start.len(), 1);
        assert_eq!(false_start[0].data, "b");
        let no_bom = parse_in_pieces(&[b"data: c\n\n"], 64);
        assert_eq!(no_bom[0].data, "c");
    }

    #[test]
    fn oversized_events_are_marked_not_kept() {
        let stream = b"data: 0123456789abcdef\n\ndata: ok\n\n";
        let events = parse_in_pieces(&[stream], 8);
        assert_eq!(events.len(), 2);
        assert!(events[0].truncated);
        assert_eq!(events[0].data, "");
        assert_eq!(events[1].data, "ok");
        assert!(!events[1].truncated);
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
