//! MCP instance resolution: which upstream MCP server a request is for, from a header, a path
//! prefix, or Envoy's route/cluster name, validated against the configured set or pattern so
//! that client-chosen ids cannot mint unbounded state.

use crate::config::{InstanceConfig, InstanceRule, InstanceSource};

/// What the request offers for resolution; the glue fills in what the source needs.
#[derive(Debug, Default, Clone, Copy)]
pub struct InstanceInputs<'a> {
    pub header: Option<&'a str>,
    pub path: &'a str,
    pub route_name: Option<&'a str>,
    pub cluster_name: Option<&'a str>,
}

/// Resolution outcome, borrowing from the inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved<'a> {
    Known(&'a str),
    /// The source gave nothing.
    Absent,
    /// The source gave an id outside the configured set/pattern (kept only for the event,
    /// capped in length).
    NotAllowed(&'a str),
}

/// Longest id echoed back in an event when it is not allowed.
const MAX_REPORTED_ID: usize = 64;

pub fn resolve<'a>(config: &InstanceConfig, inputs: &InstanceInputs<'a>) -> Resolved<'a> {
    let candidate = match &config.source {
        InstanceSource::Header(_) => inputs.header,
        InstanceSource::PathPrefix(prefix) => path_instance(inputs.path, prefix),
        InstanceSource::RouteName => inputs.route_name,
        InstanceSource::ClusterName => inputs.cluster_name,
    };
    let Some(id) = candidate.filter(|id| !id.is_empty()) else {
        return Resolved::Absent;
    };
    let allowed = match &config.rule {
        InstanceRule::Allowed(set) => set.contains(id),
        InstanceRule::Pattern(re) => re.is_match(id),
        InstanceRule::Any => true,
    };
    if allowed {
        Resolved::Known(id)
    } else {
        let end = id
            .char_indices()
            .nth(MAX_REPORTED_ID)
            .map_or(id.len(), |(i, _)| i);
        Resolved::NotAllowed(id.get(..end).unwrap_or(id))
    }
}

/// `/mcp/{instance}/rest` with prefix `/mcp/` gives `instance`; the query is ignored.
pub fn path_instance<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.get(..end)
}

/// The gateway path prefix of an instance, e.g. `/mcp/demo`, for endpoint rewrites.
pub fn instance_prefix(prefix: &str, instance: &str) -> String {
    format!("{prefix}{instance}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(json: &str) -> InstanceConfig {
        Config::parse(json.as_bytes()).expect("valid").instance
    }

    #[test]
    fn path_prefix_with_allowed_set() {
        let c = config(r#"{"instance":{"source":{"path_prefix":"/mcp/"},"allowed":["demo"]}}"#);
        let at = |path| {
            resolve(
                &c,
                &InstanceInputs {
                    path,
                    ..Default::default()
                },
            )
        };
        assert_eq!(at("/mcp/demo/sse"), Resolved::Known("demo"));
        assert_eq!(at("/mcp/demo"), Resolved::Known("demo"));
        assert_eq!(at("/mcp/demo?x=1"), Resolved::Known("demo"));
        assert_eq!(at("/mcp/evil/x"), Resolved::NotAllowed("evil"));
        assert_eq!(at("/other"), Resolved::Absent);
        assert_eq!(at("/mcp//x"), Resolved::Absent);
    }

    #[test]
    fn header_with_pattern_caps_reported_ids() {
        let c =
            config(r#"{"instance":{"source":{"header":"x-mcp-instance"},"pattern":"[a-z]{1,8}"}}"#);
        let with = |header| {
            resolve(
                &c,
                &InstanceInputs {
                    header,
                    ..Default::default()
                },
            )
        };
        assert_eq!(with(Some("billing")), Resolved::Known("billing"));
        assert_eq!(with(None), Resolved::Absent);
        let long = "X".repeat(500);
        match with(Some(&long)) {
            Resolved::NotAllowed(id) => assert_eq!(id.len(), 64),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn route_and_cluster_names() {
        let route = config(r#"{"instance":{"source":"route_name"}}"#);
        let cluster = config("{}");
        let inputs = InstanceInputs {
            route_name: Some("r1"),
            cluster_name: Some("c1"),
            ..Default::default()
        };
        assert_eq!(resolve(&route, &inputs), Resolved::Known("r1"));
        assert_eq!(resolve(&cluster, &inputs), Resolved::Known("c1"));
        assert_eq!(
            resolve(&cluster, &InstanceInputs::default()),
            Resolved::Absent
        );
        assert_eq!(instance_prefix("/mcp/", "demo"), "/mcp/demo");
    }
}
