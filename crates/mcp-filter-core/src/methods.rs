//! The MCP method catalogue is the wire contract's (`mcp_contract::methods`: every method of
//! the known revisions, its target parameter and the revisions that define it); this adds the
//! hot path's lookup, which compares a word at a time.

pub use mcp_contract::methods::{
    is_known_protocol_version, MethodInfo, Revision, Target, KNOWN_PROTOCOL_VERSIONS, METHODS,
    STATELESS_REVISION,
};

/// The catalogue entry of `method`.
pub fn lookup(method: &str) -> Option<&'static MethodInfo> {
    let method = method.as_bytes();
    METHODS
        .iter()
        .find(|info| crate::bytes::bytes_eq(info.name.as_bytes(), method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_unique() {
        for (i, a) in METHODS.iter().enumerate() {
            assert!(
                METHODS.iter().skip(i + 1).all(|b| b.name != a.name),
                "{} listed twice",
                a.name
            );
        }
    }

    #[test]
    fn revisions_bound_methods() {
        let init = lookup("initialize").expect("known");
        assert!(init.in_revision("2025-03-26"));
        assert!(init.in_revision("2025-11-25"));
        assert!(!init.in_revision("2026-07-28"));
        let discover = lookup("server/discover").expect("known");
        assert!(!discover.in_revision("2025-11-25"));
        assert!(discover.in_revision("2026-07-28"));
        assert!(!lookup("elicitation/create")
            .expect("known")
            .in_revision("2025-03-26"));
        assert!(lookup("tasks/get")
            .expect("known")
            .in_revision("2026-07-28"));
        assert!(lookup("tools/frobnicate").is_none());
    }

    #[test]
    fn targets() {
        assert_eq!(lookup("tools/call").map(|m| m.target), Some(Target::Tool));
        assert_eq!(
            lookup("prompts/get").map(|m| m.target),
            Some(Target::Prompt)
        );
        assert_eq!(
            lookup("resources/read").map(|m| m.target),
            Some(Target::Resource)
        );
        assert_eq!(
            lookup("completion/complete").map(|m| m.target),
            Some(Target::Reference)
        );
    }

    #[test]
    fn versions() {
        assert!(is_known_protocol_version("2025-06-18"));
        assert!(!is_known_protocol_version("2099-01-01"));
    }
}
