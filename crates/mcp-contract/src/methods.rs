//! The MCP method catalogue: every method of the 2025-03-26, 2025-06-18, 2025-11-25 and
//! 2026-07-28 revisions (plus 2024-11-05, which the legacy HTTP+SSE transport speaks), with the
//! parameter that names its target (tool, prompt or resource) and the revisions that define it.

/// Protocol revisions this filter knows, oldest first.
pub const KNOWN_PROTOCOL_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// The stateless revision: no `initialize`, no `Mcp-Session-Id`.
pub const STATELESS_REVISION: &str = "2026-07-28";

pub fn is_known_protocol_version(v: &str) -> bool {
    KNOWN_PROTOCOL_VERSIONS.contains(&v)
}

/// What a method's target parameter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `params.name` is a tool name (`gen_ai.tool.name`).
    Tool,
    /// `params.name` is a prompt name (`gen_ai.prompt.name`).
    Prompt,
    /// `params.uri` is a resource URI (`mcp.resource.uri`).
    Resource,
    /// `params.ref` is a prompt or resource reference (completion/complete).
    Reference,
    None,
}

/// Revision range of a method: first revision that has it, and the first that dropped it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    pub name: &'static str,
    pub target: Target,
    /// `params.arguments` holds the call's arguments (captured when configured).
    pub has_arguments: bool,
    pub since: &'static str,
    pub until: Option<&'static str>,
}

const fn m(name: &'static str, target: Target, since: &'static str) -> MethodInfo {
    MethodInfo {
        name,
        target,
        has_arguments: false,
        since,
        until: None,
    }
}

const fn with_arguments(info: MethodInfo) -> MethodInfo {
    MethodInfo {
        has_arguments: true,
        ..info
    }
}

const fn dropped(name: &'static str, since: &'static str, until: &'static str) -> MethodInfo {
    MethodInfo {
        name,
        target: Target::None,
        has_arguments: false,
        since,
        until: Some(until),
    }
}

const V2024: &str = "2024-11-05";
const V0618: &str = "2025-06-18";
const V1125: &str = "2025-11-25";
const V2026: &str = "2026-07-28";

/// Requests and notifications in both directions.
pub const METHODS: &[MethodInfo] = &[
    // Lifecycle.
    dropped("initialize", V2024, V2026),
    dropped("notifications/initialized", V2024, V2026),
    m("server/discover", Target::None, V2026),
    m("ping", Target::None, V2024),
    // Server features.
    m("tools/list", Target::None, V2024),
    with_arguments(m("tools/call", Target::Tool, V2024)),
    m("resources/list", Target::None, V2024),
    m("resources/templates/list", Target::None, V2024),
    m("resources/read", Target::Resource, V2024),
    m("resources/subscribe", Target::Resource, V2024),
    m("resources/unsubscribe", Target::Resource, V2024),
    m("prompts/list", Target::None, V2024),
    with_arguments(m("prompts/get", Target::Prompt, V2024)),
    m("completion/complete", Target::Reference, V2024),
    m("logging/setLevel", Target::None, V2024),
    // Tasks (2025-11-25; an extension in 2026-07-28, same method names).
    m("tasks/get", Target::None, V1125),
    m("tasks/list", Target::None, V1125),
    m("tasks/result", Target::None, V1125),
    m("tasks/cancel", Target::None, V1125),
    // Client features, requested by the server.
    m("sampling/createMessage", Target::None, V2024),
    m("roots/list", Target::None, V2024),
    m("elicitation/create", Target::None, V0618),
    // Notifications.
    m("notifications/cancelled", Target::None, V2024),
    m("notifications/progress", Target::None, V2024),
    m("notifications/message", Target::None, V2024),
    m("notifications/resources/updated", Target::Resource, V2024),
    m("notifications/resources/list_changed", Target::None, V2024),
    m("notifications/tools/list_changed", Target::None, V2024),
    m("notifications/prompts/list_changed", Target::None, V2024),
    m("notifications/roots/list_changed", Target::None, V2024),
    m("notifications/elicitation/complete", Target::None, V1125),
    m("notifications/tasks/status", Target::None, V1125),
];

/// The catalogue entry of `method` (the filter's hot path has a faster lookup over the same
/// table).
pub fn lookup(method: &str) -> Option<&'static MethodInfo> {
    METHODS.iter().find(|info| info.name == method)
}

impl MethodInfo {
    /// Whether the method exists in the given revision (dates compare as strings).
    pub fn in_revision(&self, version: &str) -> bool {
        version >= self.since && self.until.is_none_or(|until| version < until)
    }
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
