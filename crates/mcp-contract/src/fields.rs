//! Field names of an event line, each defined once: [`name`] holds them as they are, for
//! whoever reads lines; [`key`] holds the same names pre-escaped with the separating comma
//! and the colon (`,"trace_id":`), which is how the filter writes a field in two copies.
//! The names follow the OpenTelemetry MCP conventions where one exists; docs/events.md
//! documents each.

macro_rules! fields {
    ($($id:ident = $field:literal;)*) => {
        /// Field names as they appear in a line.
        pub mod name {
            $(pub const $id: &str = $field;)*
        }
        /// The same names as the filter writes them: `,"<name>":`.
        pub mod key {
            $(pub const $id: &str = concat!(",\"", $field, "\":");)*
        }
        /// Every field name, in this table's order.
        pub const ALL: &[&str] = &[$($field,)*];
    };
}

fields! {
    // The line's own fields (the first three open every line).
    TS = "ts";
    SOURCE = "source";
    SEQ = "seq";
    EVENT = "event";
    LEVEL = "level";
    MESSAGE = "message";
    // Shared by every event of an exchange.
    TRACE_ID = "trace_id";
    SPAN_ID = "span_id";
    PARENT_SPAN_ID = "parent_span_id";
    TRACE_ORIGIN = "trace.origin";
    INSTANCE_ID = "instance_id";
    HTTP_METHOD = "http.request.method";
    URL_PATH = "url.path";
    TRANSPORT = "mcp.transport";
    SESSION_ID = "mcp.session.id";
    PROTOCOL_VERSION = "mcp.protocol.version";
    TOKEN_HEADER = "token_header";
    TOKEN = "token";
    // Message fields.
    METHOD = "mcp.method.name";
    DIRECTION = "mcp.direction";
    MESSAGE_KIND = "mcp.message.kind";
    TOOL_NAME = "gen_ai.tool.name";
    PROMPT_NAME = "gen_ai.prompt.name";
    RESOURCE_URI = "mcp.resource.uri";
    REQUEST_ID = "jsonrpc.request.id";
    BATCH_SIZE = "jsonrpc.batch.size";
    BATCH_INDEX = "jsonrpc.batch.index";
    METHOD_KNOWN = "mcp.method.known";
    CLASSIFIED_FROM = "mcp.classified_from";
    BODY_INSPECTED = "mcp.body.inspected";
    BODY_BYTES = "mcp.body.bytes";
    CLIENT_NAME = "mcp.client.name";
    CLIENT_VERSION = "mcp.client.version";
    CLIENT_CAPABILITIES = "mcp.client.capabilities";
    ARGUMENTS = "gen_ai.tool.call.arguments";
    ARGUMENTS_TRUNCATED = "mcp.arguments.truncated";
    // Outcome fields.
    HTTP_STATUS = "http.response.status_code";
    RPC_STATUS = "rpc.response.status_code";
    ERROR_TYPE = "error.type";
    OUTCOME = "mcp.outcome";
    DURATION_MS = "duration_ms";
    // Event-specific fields.
    REASON = "reason";
    DETAIL = "detail";
    HEADER_METHOD = "mcp.header.method";
    HEADER_NAME = "mcp.header.name";
    SSE_MESSAGES = "sse.messages";
    CODE_DETAILS = "envoy.response.code_details";
    CIRCUIT = "circuit";
    RETRY_AFTER_SECS = "retry_after_secs";
    // Fields over their limit (see `limits`) or invalid, cut or dropped; the names, listed.
    TRUNCATED = "truncated";
    // The status record (see `status`).
    KIND = "kind";
    DROPPED = "dropped";
    EMITTED = "emitted";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_need_no_escaping() {
        for (i, field) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|f| f != field), "{field}");
            assert!(field.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'));
        }
        assert_eq!(key::METHOD, ",\"mcp.method.name\":");
        assert_eq!(name::METHOD, "mcp.method.name");
    }
}

/// Longest value, in characters, of the fields the collector keeps in their own columns:
/// longer ones are cut at a character boundary (by the filter before it writes them, by the
/// collector for any line) and named in `truncated`, never rejected.
pub mod limits {
    pub const INSTANCE_ID: usize = 128;
    pub const METHOD: usize = 128;
    pub const TOOL_NAME: usize = 256;
    pub const TOKEN_HEADER: usize = 128;

    // Fields without a column: the filter caps what a client can make long, the same way
    // (cut, named in `truncated`), so a line stays small whatever the client sends.
    pub const CLIENT_NAME: usize = 128;
    pub const CLIENT_VERSION: usize = 64;
    /// Capability names listed in `mcp.client.capabilities` (each at most `CLIENT_NAME`
    /// characters; longer ones are left out).
    pub const CLIENT_CAPABILITIES: usize = 16;
}
