//! Event field names as they are written: pre-escaped, with the separating comma and the
//! colon, so writing a field is two copies. The names follow the OpenTelemetry MCP
//! conventions where one exists; docs/events.md documents each.

macro_rules! keys {
    ($($name:ident = $key:literal;)*) => {
        $(pub const $name: &str = concat!(",\"", $key, "\":");)*
        /// Every key, for tests.
        #[cfg(test)]
        pub const ALL: &[&str] = &[$($key,)*];
    };
}

keys! {
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
    METHOD = "mcp.method.name";
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
    ARGUMENTS = "gen_ai.tool.call.arguments";
    ARGUMENTS_TRUNCATED = "mcp.arguments.truncated";
    HTTP_STATUS = "http.response.status_code";
    RPC_STATUS = "rpc.response.status_code";
    ERROR_TYPE = "error.type";
    OUTCOME = "mcp.outcome";
    DURATION_MS = "duration_ms";
    REASON = "reason";
    DETAIL = "detail";
    HEADER_METHOD = "mcp.header.method";
    HEADER_NAME = "mcp.header.name";
    SSE_MESSAGES = "sse.messages";
    CODE_DETAILS = "envoy.response.code_details";
    CIRCUIT = "circuit";
    RETRY_AFTER_SECS = "retry_after_secs";
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_unique_and_need_no_escaping() {
        for (i, key) in super::ALL.iter().enumerate() {
            assert!(super::ALL[i + 1..].iter().all(|k| k != key), "{key}");
            assert!(key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'));
        }
        assert_eq!(super::METHOD, ",\"mcp.method.name\":");
    }
}
