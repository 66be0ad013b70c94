//! `mcp.outcome`: what became of one request element, the field the audit trail, the RED
//! metrics and the OTLP spans all key on.

/// Defines the outcomes from one table: the enum, its wire names and the success set.
macro_rules! outcomes {
    ($($variant:ident => $name:literal, $success:literal, $doc:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Outcome {
            $(#[doc = $doc] $variant,)*
        }

        impl Outcome {
            pub const ALL: &'static [Outcome] = &[$(Outcome::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Outcome::$variant => $name,)*
                }
            }

            /// Whether the element succeeded (no `error.type`, not counted as a failure).
            pub fn is_success(self) -> bool {
                match self {
                    $(Outcome::$variant => $success,)*
                }
            }
        }
    };
}

outcomes! {
    Ok => "ok", true, "A result.";
    JsonrpcError => "jsonrpc_error", false, "A JSON-RPC error response.";
    ToolError => "tool_error", false, "A tool result with `isError: true`.";
    Accepted => "accepted", true, "A notification or response, answered 202.";
    HttpError => "http_error", false, "An HTTP error status without a JSON-RPC answer.";
    Rejected => "rejected", false, "Answered by the filter (validation, unknown instance, open breaker).";
    Canceled => "canceled", false, "The client went away before the response.";
    ClientClosed => "client_closed", true, "The client closed an event stream (the normal end of a GET or subscriptions/listen stream).";
    UpstreamError => "upstream_error", false, "The upstream failed before responding.";
    UpstreamInterrupted => "upstream_interrupted", false, "A response broke off before its end.";
    NotInspected => "not_inspected", false, "The response body was over the cap.";
    NoResponse => "no_response", false, "The exchange ended without an answer to this element.";
}

impl Outcome {
    pub fn parse(name: &str) -> Option<Outcome> {
        Outcome::ALL.iter().copied().find(|o| o.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(Outcome::parse(o.as_str()), Some(*o));
            assert!(Outcome::ALL[i + 1..]
                .iter()
                .all(|p| p.as_str() != o.as_str()));
        }
        assert_eq!(Outcome::ALL.len(), 12);
        let successes: Vec<_> = Outcome::ALL.iter().filter(|o| o.is_success()).collect();
        assert_eq!(
            successes,
            [&Outcome::Ok, &Outcome::Accepted, &Outcome::ClientClosed]
        );
    }
}
