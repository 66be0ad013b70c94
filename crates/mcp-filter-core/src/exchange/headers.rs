//! The headers an exchange reads, found in one pass over Envoy's header map (as the glue
//! iterates it, nothing copied): fixed MCP and tracing names by length then bytes, and the
//! configured credential and instance headers (credentials by their configured priority).

use super::Header;
use crate::bytes::{bytes_eq, utf8};
use crate::config::{Config, InstanceSource};

#[derive(Debug, Default)]
pub struct RequestHeaders<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub protocol_version: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// SEP-2243 `Mcp-Method` / `Mcp-Name`.
    pub mcp_method: Option<&'a str>,
    pub mcp_name: Option<&'a str>,
    /// The credential header present first in `Config::credential_headers` (its index) and
    /// its value, as bytes: it is only fingerprinted.
    pub credential: Option<(usize, &'a [u8])>,
    /// The configured instance header, when the instance comes from a header.
    pub instance: Option<&'a str>,
}

impl<'a> RequestHeaders<'a> {
    pub fn read(headers: impl IntoIterator<Item = Header<'a>>, config: &Config) -> Self {
        let instance_header = match &config.instance.source {
            InstanceSource::Header(name) => Some(name.as_bytes()),
            _ => None,
        };
        let mut found = RequestHeaders::default();
        for (name, value) in headers {
            let text = || utf8(value);
            let is = |wanted: &[u8]| bytes_eq(name, wanted);
            match name.len() {
                5 if is(b":path") => found.path = text().unwrap_or(""),
                7 if is(b":method") => found.method = text().unwrap_or(""),
                8 if is(b"mcp-name") => found.mcp_name = text(),
                10 if is(b"mcp-method") => found.mcp_method = text(),
                10 if is(b"tracestate") => found.tracestate = text(),
                11 if is(b"traceparent") => found.traceparent = text(),
                12 if is(b"content-type") => found.content_type = text(),
                14 if is(b"mcp-session-id") => found.session_id = text(),
                20 if is(b"mcp-protocol-version") => found.protocol_version = text(),
                _ => {}
            }
            if config.credential_lengths & (1u64 << name.len().min(63)) != 0 {
                let better = found.credential.map_or(usize::MAX, |(i, _)| i);
                let position = config
                    .credential_headers
                    .iter()
                    .take(better)
                    .position(|wanted| {
                        wanted.len() == name.len() && bytes_eq(name, wanted.as_bytes())
                    });
                if let Some(i) = position {
                    found.credential = Some((i, value));
                }
            }
            if instance_header.is_some_and(|wanted| bytes_eq(name, wanted)) {
                found.instance = text();
            }
        }
        found
    }
}

/// What the exchange reads of the response head.
#[derive(Debug, Default)]
pub struct ResponseHeaders<'a> {
    pub status: Option<u32>,
    pub content_type: Option<&'a str>,
    pub session_id: Option<&'a str>,
}

impl<'a> ResponseHeaders<'a> {
    pub fn read(headers: impl IntoIterator<Item = Header<'a>>) -> Self {
        let mut found = ResponseHeaders::default();
        for (name, value) in headers {
            let is = |wanted: &[u8]| bytes_eq(name, wanted);
            match name.len() {
                7 if is(b":status") => {
                    found.status = utf8(value).and_then(|s| s.parse().ok());
                }
                12 if is(b"content-type") => found.content_type = utf8(value),
                14 if is(b"mcp-session-id") => found.session_id = utf8(value),
                _ => {}
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_finds_every_header_and_the_credential_by_priority() {
        let config = Config::parse(
            br#"{"credential_headers":["authorization","x-api-key"],
                 "instance":{"source":{"header":"x-mcp-instance"},"allowed":["a"]}}"#,
        )
        .expect("valid");
        let headers: Vec<Header> = [
            (":method", "POST"),
            (":path", "/mcp?x"),
            ("x-api-key", "second"),
            ("mcp-session-id", "s1"),
            ("authorization", "Bearer first"),
            ("x-mcp-instance", "a"),
            ("mcp-protocol-version", "2025-06-18"),
            ("content-type", "application/json"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("traceparent", "00-x"),
        ]
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
        let h = RequestHeaders::read(headers.iter().copied(), &config);
        assert_eq!((h.method, h.path), ("POST", "/mcp?x"));
        assert_eq!(
            h.credential,
            Some((0, &b"Bearer first"[..])),
            "priority, not order"
        );
        assert_eq!(h.instance, Some("a"));
        assert_eq!(h.session_id, Some("s1"));
        assert_eq!(h.protocol_version, Some("2025-06-18"));
        assert_eq!(h.content_type, Some("application/json"));
        assert_eq!(
            (h.mcp_method, h.mcp_name),
            (Some("tools/call"), Some("echo"))
        );
        assert_eq!(h.traceparent, Some("00-x"));
        let only_second: Vec<Header> = vec![(b"x-api-key", b"k")];
        assert_eq!(
            RequestHeaders::read(only_second, &config).credential,
            Some((1, &b"k"[..]))
        );
    }
}
