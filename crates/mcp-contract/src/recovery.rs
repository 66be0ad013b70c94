//! Events a retiring filter VM could not ship are not lost: it writes each of them, and its
//! status record, to Envoy's log after this marker, one line each; `host-collector import`
//! finds the marker anywhere in a log line (Envoy prefixes its own fields) and stores the JSON
//! after it. The store's `(source, seq)` key makes an import idempotent, and harmless for
//! events that were shipped after all.

/// Precedes the JSON of one event line (or status record) in Envoy's log.
pub const MARKER: &str = "mcp_unshipped ";

/// The JSON after the marker in a log line, if the line carries one.
pub fn payload(log_line: &str) -> Option<&str> {
    let at = log_line.find(MARKER)?;
    Some(log_line[at + MARKER.len()..].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_json_after_envoys_prefix() {
        let line = "[2026-12-04 17:00:00.000][1][warning][wasm] [context.cc:1151] wasm log mcp mcp: mcp_unshipped {\"seq\":1}\n";
        assert_eq!(payload(line), Some("{\"seq\":1}"));
        assert_eq!(payload("mcp_event {\"seq\":1}"), None);
    }
}
