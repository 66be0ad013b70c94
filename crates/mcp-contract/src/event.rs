//! The event catalogue: every event name with its one meaning (docs/events.md) and its one
//! level. The filter writes `line_head` as it is; the collector checks names against it.

use crate::level::Level;

/// Defines the catalogue from one table: the enum, its names, levels, and the part of each
/// line that only depends on the name (`,"event":"…","level":"…","message":`).
macro_rules! catalogue {
    ($($variant:ident => $name:literal, $level:ident = $level_name:literal;)*) => {
        /// Every event the filter emits. See docs/events.md for each one's field set.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventName {
            $($variant,)*
        }

        impl EventName {
            pub const ALL: &'static [EventName] = &[$(EventName::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventName::$variant => $name,)*
                }
            }

            /// The one level of each event name.
            pub fn level(self) -> Level {
                match self {
                    $(EventName::$variant => Level::$level,)*
                }
            }

            /// `,"event":"<name>","level":"<level>","message":` for this name.
            pub fn line_head(self) -> &'static str {
                match self {
                    $(EventName::$variant => concat!(
                        ",\"event\":\"", $name, "\",\"level\":\"", $level_name, "\",\"message\":"
                    ),)*
                }
            }
        }
    };
}

catalogue! {
    Request => "request", Info = "info";
    Response => "response", Info = "info";
    DirectorBefore => "director.before", Debug = "debug";
    DirectorAfter => "director.after", Debug = "debug";
    ClientCanceled => "client.canceled", Warn = "warn";
    SseStart => "sse.start", Info = "info";
    SseCancel => "sse.cancel", Info = "info";
    SseEof => "sse.eof", Info = "info";
    SseEndpointRewrite => "sse.endpoint.rewrite", Debug = "debug";
    HostCallFailed => "host_call.failed", Error = "error";
    RequestValidationFailed => "request.validation.failed", Warn = "warn";
    InstanceMissing => "instance.missing", Warn = "warn";
    ProtocolUnsupported => "protocol.unsupported", Warn = "warn";
    AccessUnsupported => "access.unsupported", Warn = "warn";
    UpstreamUrlParseFailed => "upstream.url.parse.failed", Error = "error";
    UpstreamError => "upstream.error", Error = "error";
    UpstreamConnectionInterrupted => "upstream.connection.interrupted", Error = "error";
    HeaderBodyMismatch => "header.body.mismatch", Warn = "warn";
    CircuitOpened => "circuit.opened", Error = "error";
    CircuitHalfOpened => "circuit.half_opened", Warn = "warn";
    CircuitClosed => "circuit.closed", Info = "info";
    CircuitRejected => "circuit.rejected", Warn = "warn";
    ServerRequest => "server.request", Info = "info";
    ServerRequestAnswered => "server.request.answered", Info = "info";
    ServerNotification => "server.notification", Info = "info";
}

impl EventName {
    pub fn parse(name: &str) -> Option<EventName> {
        EventName::ALL.iter().copied().find(|e| e.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_levels_fixed() {
        for (i, a) in EventName::ALL.iter().enumerate() {
            assert!(EventName::ALL[i + 1..]
                .iter()
                .all(|b| b.as_str() != a.as_str()));
            assert_eq!(EventName::parse(a.as_str()), Some(*a));
            let head = format!(
                ",\"event\":\"{}\",\"level\":\"{}\",\"message\":",
                a.as_str(),
                a.level().as_str()
            );
            assert_eq!(
                a.line_head(),
                head,
                "the level spelled in the table is the level"
            );
        }
        assert_eq!(EventName::ALL.len(), 25);
        assert_eq!(EventName::UpstreamError.level(), Level::Error);
        assert_eq!(EventName::DirectorBefore.level(), Level::Debug);
        assert_eq!(EventName::parse("nope"), None);
    }
}
