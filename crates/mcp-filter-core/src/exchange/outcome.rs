//! What became of one request element (`mcp.outcome`, the wire contract's enum) and the
//! `error.type` that goes with it.

use crate::jsonrpc::{Kind, Message};

pub use mcp_contract::Outcome;

/// The outcome of a JSON-RPC response message.
pub fn of_message(message: &Message) -> Outcome {
    if message.kind == Kind::Error {
        Outcome::JsonrpcError
    } else if message.is_error {
        Outcome::ToolError
    } else {
        Outcome::Ok
    }
}

/// `error.type` of an outcome decided without a JSON-RPC message (at the stream's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    None,
    /// The HTTP status, for `http_error`.
    Status(u32),
    /// The outcome's own name.
    Outcome(Outcome),
}

impl ErrorType {
    pub fn of(outcome: Outcome, status: Option<u32>) -> ErrorType {
        match outcome {
            ok if ok.is_success() => ErrorType::None,
            Outcome::HttpError => status.map_or(ErrorType::None, ErrorType::Status),
            other => ErrorType::Outcome(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::parse_message;

    #[test]
    fn outcomes_of_messages_and_error_types() {
        let outcome = |json: &str| of_message(&parse_message(json.as_bytes()).expect("valid"));
        assert_eq!(
            outcome(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Outcome::Ok
        );
        assert_eq!(
            outcome(r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true}}"#),
            Outcome::ToolError
        );
        assert_eq!(
            outcome(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1}}"#),
            Outcome::JsonrpcError
        );
        assert_eq!(ErrorType::of(Outcome::Ok, Some(200)), ErrorType::None);
        assert_eq!(
            ErrorType::of(Outcome::HttpError, Some(404)),
            ErrorType::Status(404)
        );
        assert_eq!(
            ErrorType::of(Outcome::Canceled, None),
            ErrorType::Outcome(Outcome::Canceled)
        );
        assert_eq!(
            Outcome::UpstreamInterrupted.as_str(),
            "upstream_interrupted"
        );
    }
}
