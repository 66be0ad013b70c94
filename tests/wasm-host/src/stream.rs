//! Per-stream state: header maps, body buffering as Envoy's filter manager does it,
//! filter state, the local reply and continue/close requests.

use crate::abi::{stream_type, HeaderPairs, HostResult, Status};
use std::collections::{BTreeMap, HashMap};

/// Identifies a stream (HTTP context) inside one [`crate::Vm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u32);

/// Request or response half of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// The `StreamType` argument of `proxy_continue_stream` / `proxy_close_stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    HttpRequest,
    HttpResponse,
    Downstream,
    Upstream,
}

impl StreamKind {
    pub(crate) fn from_raw(raw: i32) -> HostResult<StreamKind> {
        Ok(match raw {
            stream_type::HTTP_REQUEST => StreamKind::HttpRequest,
            stream_type::HTTP_RESPONSE => StreamKind::HttpResponse,
            stream_type::DOWNSTREAM => StreamKind::Downstream,
            stream_type::UPSTREAM => StreamKind::Upstream,
            _ => return Err(Status::BadArgument),
        })
    }

    fn direction(self) -> Option<Direction> {
        match self {
            StreamKind::HttpRequest => Some(Direction::Request),
            StreamKind::HttpResponse => Some(Direction::Response),
            _ => None,
        }
    }
}

/// A response the filter sent with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status_code: u32,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: HeaderPairs,
    /// `None` when the filter passed -1 (plain HTTP reply).
    pub grpc_status: Option<i32>,
}

/// One direction of a stream.
#[derive(Debug, Default)]
pub(crate) struct Half {
    pub headers: Option<HeaderPairs>,
    pub trailers: Option<HeaderPairs>,
    /// Body bytes the filter is holding (`StopIterationAndBuffer`); what
    /// `proxy_get_buffer_bytes` reads and `proxy_set_buffer_bytes` edits.
    pub buffered: Vec<u8>,
    /// Body bytes the filter let through while its headers callback was still stopped:
    /// Envoy keeps them until the stream is continued.
    pub held: Vec<u8>,
    /// Body bytes passed on to the next filter (upstream for requests, downstream for
    /// responses).
    pub forwarded: Vec<u8>,
    /// True while the headers callback returned a stop status and no continue came yet.
    pub headers_stopped: bool,
}

impl Half {
    pub fn map(&self, trailers: bool) -> &Option<HeaderPairs> {
        if trailers {
            &self.trailers
        } else {
            &self.headers
        }
    }

    pub fn map_mut(&mut self, trailers: bool) -> &mut Option<HeaderPairs> {
        if trailers {
            &mut self.trailers
        } else {
            &mut self.headers
        }
    }

    /// The filter continued the body: pass the buffer on, or hold it behind stopped headers.
    pub fn release_body(&mut self) {
        let body = std::mem::take(&mut self.buffered);
        if self.headers_stopped {
            self.held.extend(body);
        } else {
            self.forwarded.extend(body);
        }
    }

    /// `proxy_continue_stream`: Envoy resumes iteration and releases everything it kept.
    pub fn resume(&mut self) {
        self.headers_stopped = false;
        let held = std::mem::take(&mut self.held);
        self.forwarded.extend(held);
        self.release_body();
    }
}

#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub request: Half,
    pub response: Half,
    /// Properties the test set for this stream (`Vm::set_stream_property`).
    pub properties: HashMap<Vec<String>, Vec<u8>>,
    /// What the filter stored with `proxy_set_property` in this stream.
    pub filter_state: BTreeMap<Vec<String>, Vec<u8>>,
    pub local_reply: Option<LocalReply>,
    pub continues: Vec<StreamKind>,
    pub closes: Vec<StreamKind>,
    pub completed: bool,
}

impl StreamState {
    pub fn half(&self, dir: Direction) -> &Half {
        match dir {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    pub fn half_mut(&mut self, dir: Direction) -> &mut Half {
        match dir {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }

    pub fn continue_stream(&mut self, kind: StreamKind) {
        self.continues.push(kind);
        if let Some(dir) = kind.direction() {
            self.half_mut(dir).resume();
        }
    }

    pub fn property(&self, path: &[String]) -> Option<Vec<u8>> {
        let explicit = self
            .properties
            .get(path)
            .or_else(|| self.filter_state.get(path));
        explicit.cloned().or_else(|| self.derived_property(path))
    }

    /// A few of Envoy's request/response attributes, computed from the header maps.
    fn derived_property(&self, path: &[String]) -> Option<Vec<u8>> {
        let segments: Vec<&str> = path.iter().map(String::as_str).collect();
        let request = self.request.headers.as_ref();
        let response = self.response.headers.as_ref();
        let header = |map: Option<&HeaderPairs>, name: &str| {
            header_value(map?, name).map(|v| v.as_bytes().to_vec())
        };
        match segments.as_slice() {
            ["request", "path"] => header(request, ":path"),
            ["request", "url_path"] => {
                header(request, ":path").map(|p| p.split(|&b| b == b'?').next().unwrap().to_vec())
            }
            ["request", "method"] => header(request, ":method"),
            ["request", "host"] => header(request, ":authority"),
            ["request", "scheme"] => header(request, ":scheme"),
            ["request", "headers", name] => header(request, name),
            ["response", "headers", name] => header(response, name),
            ["response", "code"] => {
                let code: i64 = header_value(response?, ":status")?.parse().ok()?;
                Some(code.to_le_bytes().to_vec())
            }
            _ => None,
        }
    }
}

/// First value of `name` (case-insensitive, like Envoy's lower-cased header maps).
pub(crate) fn header_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Envoy `setHeaderMapValue`: replace the first value, drop the others, or append.
pub(crate) fn replace_header(pairs: &mut HeaderPairs, name: &str, value: &str) {
    let mut seen = false;
    pairs.retain_mut(|(k, v)| {
        if !k.eq_ignore_ascii_case(name) {
            return true;
        }
        let keep = !seen;
        if keep {
            *v = value.to_string();
        }
        seen = true;
        keep
    });
    if !seen {
        pairs.push((name.to_ascii_lowercase(), value.to_string()));
    }
}

/// Envoy's body `copyFrom` semantics for `proxy_set_buffer_bytes`: `start == 0` drains
/// `size` bytes then prepends (so (0, len) replaces everything), `start >= len` appends,
/// anything else is a `BadArgument`.
pub(crate) fn set_buffer_bytes(
    buffer: &mut Vec<u8>,
    start: usize,
    size: usize,
    data: &[u8],
) -> HostResult {
    if start == 0 {
        buffer.splice(..size.min(buffer.len()), data.iter().copied());
        Ok(())
    } else if start >= buffer.len() {
        buffer.extend_from_slice(data);
        Ok(())
    } else {
        Err(Status::BadArgument)
    }
}

/// Lower-cases keys, as Envoy's header maps store them.
pub(crate) fn normalize<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> HeaderPairs {
    pairs
        .iter()
        .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_buffer_bytes_follows_envoy() {
        let mut buffer = b"hello world".to_vec();
        set_buffer_bytes(&mut buffer, 0, 5, b"HEY").unwrap();
        assert_eq!(buffer, b"HEY world");
        set_buffer_bytes(&mut buffer, 0, 0, b">").unwrap();
        assert_eq!(buffer, b">HEY world");
        set_buffer_bytes(&mut buffer, 10, 0, b"!").unwrap();
        assert_eq!(buffer, b">HEY world!");
        assert_eq!(
            set_buffer_bytes(&mut buffer, 3, 1, b"x"),
            Err(Status::BadArgument)
        );
        set_buffer_bytes(&mut buffer, 0, usize::MAX, b"all").unwrap();
        assert_eq!(buffer, b"all");
    }

    #[test]
    fn replace_header_keeps_position_and_dedups() {
        let mut pairs = normalize(&[("A", "1"), ("b", "2"), ("a", "3")]);
        replace_header(&mut pairs, "a", "x");
        assert_eq!(pairs, normalize(&[("a", "x"), ("b", "2")]));
        replace_header(&mut pairs, "C", "y");
        assert_eq!(pairs.last().unwrap(), &("c".to_string(), "y".to_string()));
    }

    #[test]
    fn body_is_held_while_headers_are_stopped() {
        let mut half = Half {
            headers_stopped: true,
            buffered: b"abc".to_vec(),
            ..Half::default()
        };
        half.release_body();
        assert!(half.forwarded.is_empty());
        half.buffered = b"def".to_vec();
        half.resume();
        assert_eq!(half.forwarded, b"abcdef");
    }
}
