//! The MCP method catalogue: every method of the 2025-03-26, 2025-06-18, 2025-11-25 and
//! 2026-07-28 revisions (plus 2024-11-05, which the legacy HTTP+SSE transport speaks), with the
//! parameter that names its target (tool, prompt or resource) and the revisions that define it.

/// A protocol revision this contract knows, in order (so ranges compare as integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Revision {
    V2024_11_05,
    V2025_03_26,
    V2025_06_18,
    V2025_11_25,
    V2026_07_28,
}

impl Revision {
    pub const ALL: &'static [Revision] = &[
        Revision::V2024_11_05,
        Revision::V2025_03_26,
        Revision::V2025_06_18,
        Revision::V2025_11_25,
        Revision::V2026_07_28,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Revision::V2024_11_05 => "2024-11-05",
            Revision::V2025_03_26 => "2025-03-26",
            Revision::V2025_06_18 => "2025-06-18",
            Revision::V2025_11_25 => "2025-11-25",
            Revision::V2026_07_28 => "2026-07-28",
        }
    }

    /// The revision named `version`. On the filter's hot path (once per request), so the
    /// candidate is picked by the bytes that differ and confirmed by one comparison.
    pub fn parse(version: &str) -> Option<Revision> {
        let b = version.as_bytes();
        let candidate = match (b.len(), b.get(3), b.get(5), b.get(6)) {
            (10, Some(b'4'), Some(b'1'), Some(b'1')) => Revision::V2024_11_05,
            (10, Some(b'5'), Some(b'0'), Some(b'3')) => Revision::V2025_03_26,
            (10, Some(b'5'), Some(b'0'), Some(b'6')) => Revision::V2025_06_18,
            (10, Some(b'5'), Some(b'1'), Some(b'1')) => Revision::V2025_11_25,
            (10, Some(b'6'), Some(b'0'), Some(b'7')) => Revision::V2026_07_28,
            _ => return None,
        };
        (candidate.as_str() == version).then_some(candidate)
    }
}

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
    pub since: Revision,
    pub until: Option<Revision>,
}

const fn m(name: &'static str, target: Target, since: Revision) -> MethodInfo {
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

/// A method the revision `until` removed.
const fn until(info: MethodInfo, until: Revision) -> MethodInfo {
    MethodInfo {
        until: Some(until),
        ..info
    }
}

const V2024: Revision = Revision::V2024_11_05;
const V0618: Revision = Revision::V2025_06_18;
const V1125: Revision = Revision::V2025_11_25;
const V2026: Revision = Revision::V2026_07_28;

/// Requests and notifications in both directions. The 2026-07-28 changes follow its
/// changelog: the handshake, `ping`, `logging/setLevel`, `resources/(un)subscribe` and
/// `notifications/roots/list_changed` removed; `server/discover` and `subscriptions/listen`
/// added; server-to-client requests replaced by input requests inside results (MRTR); tasks
/// an extension without `tasks/list` and `tasks/result`, with `tasks/update`.
pub const METHODS: &[MethodInfo] = &[
    // Lifecycle.
    until(m("initialize", Target::None, V2024), V2026),
    until(m("notifications/initialized", Target::None, V2024), V2026),
    m("server/discover", Target::None, V2026),
    until(m("ping", Target::None, V2024), V2026),
    // Server features.
    m("tools/list", Target::None, V2024),
    with_arguments(m("tools/call", Target::Tool, V2024)),
    m("resources/list", Target::None, V2024),
    m("resources/templates/list", Target::None, V2024),
    m("resources/read", Target::Resource, V2024),
    until(m("resources/subscribe", Target::Resource, V2024), V2026),
    until(m("resources/unsubscribe", Target::Resource, V2024), V2026),
    m("subscriptions/listen", Target::None, V2026),
    m("prompts/list", Target::None, V2024),
    with_arguments(m("prompts/get", Target::Prompt, V2024)),
    m("completion/complete", Target::Reference, V2024),
    until(m("logging/setLevel", Target::None, V2024), V2026),
    // Tasks (2025-11-25; the io.modelcontextprotocol/tasks extension in 2026-07-28).
    m("tasks/get", Target::None, V1125),
    until(m("tasks/list", Target::None, V1125), V2026),
    until(m("tasks/result", Target::None, V1125), V2026),
    m("tasks/cancel", Target::None, V1125),
    m("tasks/update", Target::None, V2026),
    // Client features, requested by the server (input requests inside results from 2026-07-28).
    until(m("sampling/createMessage", Target::None, V2024), V2026),
    until(m("roots/list", Target::None, V2024), V2026),
    until(m("elicitation/create", Target::None, V0618), V2026),
    // Notifications.
    m("notifications/cancelled", Target::None, V2024),
    m("notifications/progress", Target::None, V2024),
    m("notifications/message", Target::None, V2024),
    m("notifications/resources/updated", Target::Resource, V2024),
    m("notifications/resources/list_changed", Target::None, V2024),
    m("notifications/tools/list_changed", Target::None, V2024),
    m("notifications/prompts/list_changed", Target::None, V2024),
    until(
        m("notifications/roots/list_changed", Target::None, V2024),
        V2026,
    ),
    until(
        m("notifications/elicitation/complete", Target::None, V1125),
        V2026,
    ),
    m(
        "notifications/subscriptions/acknowledged",
        Target::None,
        V2026,
    ),
    m("notifications/tasks/status", Target::None, V1125),
];

/// The catalogue entry of `method` (the filter's hot path has a faster lookup over the same
/// table).
pub fn lookup(method: &str) -> Option<&'static MethodInfo> {
    METHODS.iter().find(|info| info.name == method)
}

impl MethodInfo {
    /// Whether the method exists in the given revision.
    pub fn exists_in(&self, revision: Revision) -> bool {
        revision >= self.since && self.until.is_none_or(|until| revision < until)
    }

    /// Whether the method exists in the revision named `version` (false for an unknown one).
    pub fn in_revision(&self, version: &str) -> bool {
        Revision::parse(version).is_some_and(|revision| self.exists_in(revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_the_known_versions_in_order() {
        let names: Vec<&str> = Revision::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, KNOWN_PROTOCOL_VERSIONS);
        assert!(Revision::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Revision::parse("2026-07-28"), Some(Revision::V2026_07_28));
        assert_eq!(Revision::parse("2099-01-01"), None);
        for revision in Revision::ALL {
            assert_eq!(Revision::parse(revision.as_str()), Some(*revision));
        }
        for near_miss in ["2025-11-26", "2025-11-2", "2025-11-255", "2026-07-2x", ""] {
            assert_eq!(Revision::parse(near_miss), None, "{near_miss}");
        }
    }

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
        // The 2026-07-28 changelog, point by point.
        let in_2026 = |name: &str| lookup(name).expect(name).in_revision("2026-07-28");
        for removed in [
            "ping",
            "logging/setLevel",
            "resources/subscribe",
            "notifications/roots/list_changed",
            "notifications/elicitation/complete",
            "sampling/createMessage",
            "roots/list",
            "elicitation/create",
            "tasks/list",
            "tasks/result",
        ] {
            assert!(!in_2026(removed), "{removed} is gone in 2026-07-28");
            assert!(lookup(removed).expect(removed).in_revision("2025-11-25"));
        }
        for added in ["subscriptions/listen", "tasks/update", "server/discover"] {
            assert!(in_2026(added), "{added}");
        }
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
