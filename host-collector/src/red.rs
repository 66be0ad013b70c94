//! RED metrics of MCP operations (rate, errors, duration) from the filter's `response`
//! events, by instance, method and tool. Owns the label folding that bounds their
//! cardinality: methods outside the MCP catalogue, outcomes outside the filter's set and
//! instances, tools and error types beyond their caps all become `_other`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use mcp_contract::{methods, Outcome};

use crate::ingest::wire::ResponseFields;
use crate::ingest::{EventOutcome, IngestObserver, IngestedEvent};
use crate::internal_events::Labels;

/// Label value that folded values become.
pub const OTHER_LABEL: &str = "_other";

/// The MCP semantic conventions' advice for `mcp.server.operation.duration` (and the
/// session duration), in seconds: MCP calls run from milliseconds to minutes. The OTLP
/// histograms use the same bounds, so both backends bucket alike.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Distinct error types kept as labels (JSON-RPC codes, HTTP statuses, outcome names).
pub const MAX_ERROR_TYPES: usize = 64;
/// Longer label values are folded: they are not names but free text.
const MAX_LABEL_CHARS: usize = 128;

/// A method label: methods of the contract's catalogue keep their name, missing is `""`,
/// anything else folds.
pub fn fold_method(method: Option<&str>) -> &str {
    fold_known(method, |m| methods::lookup(m).is_some())
}

/// An outcome label: the contract's outcomes keep their name, missing is `""`.
pub fn fold_outcome(outcome: Option<&str>) -> &str {
    fold_known(outcome, |o| Outcome::parse(o).is_some())
}

fn fold_known(value: Option<&str>, known: impl Fn(&str) -> bool) -> &str {
    match value {
        None => "",
        Some(v) if known(v) => v,
        Some(_) => OTHER_LABEL,
    }
}

/// The first `max` distinct values keep their name; later ones fold into `_other`. The empty
/// value (field missing) is always kept and takes no slot.
#[derive(Debug)]
pub struct LabelCap {
    max: usize,
    seen: HashSet<String>,
}

impl LabelCap {
    pub fn new(max: usize) -> Self {
        LabelCap {
            max,
            seen: HashSet::new(),
        }
    }

    pub fn fold(&mut self, value: &str) -> String {
        let admitted = value.is_empty()
            || self.seen.contains(value)
            || (self.seen.len() < self.max && value.chars().count() <= MAX_LABEL_CHARS);
        if !admitted {
            return OTHER_LABEL.to_string();
        }
        if !value.is_empty() && !self.seen.contains(value) {
            self.seen.insert(value.to_string());
        }
        value.to_string()
    }
}

/// Caps of the free-form labels: instances globally, tools per (folded) instance.
#[derive(Debug)]
struct Folding {
    instances: LabelCap,
    tools: HashMap<String, LabelCap>,
    error_types: LabelCap,
    max_tools: usize,
}

/// The folded labels of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationLabels {
    pub instance: String,
    pub method: String,
    pub tool: String,
    pub outcome: String,
    pub error_type: Option<String>,
}

impl Folding {
    fn labels(&mut self, event: &IngestedEvent, response: &ResponseFields) -> OperationLabels {
        let row = &event.row;
        let instance = self
            .instances
            .fold(row.instance_id.as_deref().unwrap_or(""));
        let max_tools = self.max_tools;
        let tool = self
            .tools
            .entry(instance.clone())
            .or_insert_with(|| LabelCap::new(max_tools))
            .fold(row.tool_name.as_deref().unwrap_or(""));
        OperationLabels {
            instance,
            method: fold_method(row.mcp_method.as_deref()).to_string(),
            tool,
            outcome: fold_outcome(response.outcome.as_deref()).to_string(),
            error_type: response
                .error_type
                .as_deref()
                .filter(|e| !e.is_empty())
                .map(|e| self.error_types.fold(e)),
        }
    }
}

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

pub struct RedMetrics {
    durations: HistogramFamily,
    operations: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    folding: Mutex<Folding>,
}

impl RedMetrics {
    pub fn new(max_instances: usize, max_tools: usize) -> Self {
        RedMetrics {
            durations: Family::new_with_constructor(duration_histogram),
            operations: Family::default(),
            errors: Family::default(),
            folding: Mutex::new(Folding {
                instances: LabelCap::new(max_instances),
                tools: HashMap::new(),
                error_types: LabelCap::new(MAX_ERROR_TYPES),
                max_tools,
            }),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "mcp_server_operation_duration_seconds",
            "Duration of MCP operations seen by the filter (mcp.server.operation.duration).",
            self.durations.clone(),
        );
        registry.register(
            "mcp_server_operations",
            "MCP operations by instance, method, tool and outcome.",
            self.operations.clone(),
        );
        registry.register(
            "mcp_server_operation_errors",
            "Failed MCP operations by instance, method, tool and error.type.",
            self.errors.clone(),
        );
    }

    pub fn record(&self, event: &IngestedEvent, response: &ResponseFields) {
        let l = self
            .folding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .labels(event, response);
        let base: Labels = vec![
            ("instance", l.instance),
            ("method", l.method),
            ("tool", l.tool),
        ];
        let with = |key: &'static str, value: String| {
            let mut labels = base.clone();
            labels.push((key, value));
            labels
        };
        self.operations
            .get_or_create(&with("outcome", l.outcome))
            .inc();
        if let Some(error_type) = l.error_type {
            self.errors
                .get_or_create(&with("error_type", error_type))
                .inc();
        }
        if let Some(seconds) = response
            .duration_ms
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .map(|ms| ms / 1000.0)
        {
            self.durations.get_or_create(&base).observe(seconds);
        }
    }
}

impl IngestObserver for RedMetrics {
    /// Duplicates are left out: a retried batch must not count an operation twice.
    fn on_event(&self, event: &IngestedEvent, outcome: EventOutcome) {
        if let (EventOutcome::Queued, Some(response)) = (outcome, &event.response) {
            self.record(event, response);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::wire::{parse_line, Line};

    fn response(extra: &str) -> IngestedEvent {
        let line = format!(
            r#"{{"ts":"2026-11-22T02:53:34Z","source":"vm","seq":1,"event":"response","level":"info"{extra}}}"#
        );
        match parse_line(line.as_bytes(), chrono::Utc::now().naive_utc()) {
            Ok(Line::Event { row, response, .. }) => IngestedEvent { row, response },
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn folding(max_instances: usize, max_tools: usize) -> Folding {
        Folding {
            instances: LabelCap::new(max_instances),
            tools: HashMap::new(),
            error_types: LabelCap::new(2),
            max_tools,
        }
    }

    fn labels(f: &mut Folding, extra: &str) -> OperationLabels {
        let event = response(extra);
        let fields = event.response.clone().expect("response fields");
        f.labels(&event, &fields)
    }

    #[test]
    fn methods_and_outcomes_outside_the_catalogue_fold() {
        assert_eq!(fold_method(Some("tools/call")), "tools/call");
        assert_eq!(
            fold_method(Some("notifications/tools/list_changed")),
            "notifications/tools/list_changed"
        );
        assert_eq!(fold_method(Some("notifications/custom")), OTHER_LABEL);
        assert_eq!(fold_method(Some("tools/call2")), OTHER_LABEL);
        assert_eq!(fold_method(None), "");
        assert_eq!(
            fold_outcome(Some("upstream_interrupted")),
            "upstream_interrupted"
        );
        assert_eq!(fold_outcome(Some("weird")), OTHER_LABEL);
    }

    #[test]
    fn tools_are_capped_per_instance_and_instances_globally() {
        let mut f = folding(2, 2);
        let call = |i: &str, t: &str| {
            format!(
                r#","instance_id":"{i}","mcp.method.name":"tools/call","gen_ai.tool.name":"{t}""#
            )
        };
        assert_eq!(labels(&mut f, &call("i1", "a")).tool, "a");
        assert_eq!(labels(&mut f, &call("i1", "b")).tool, "b");
        assert_eq!(labels(&mut f, &call("i1", "c")).tool, OTHER_LABEL);
        assert_eq!(
            labels(&mut f, &call("i1", "a")).tool,
            "a",
            "known tool kept"
        );
        assert_eq!(
            labels(&mut f, &call("i2", "c")).tool,
            "c",
            "cap is per instance"
        );
        let third = labels(&mut f, &call("i3", "z"));
        assert_eq!(third.instance, OTHER_LABEL);
        assert_eq!(third.tool, "z", "the _other instance has its own tool cap");
        let untooled = labels(
            &mut f,
            r#","instance_id":"i1","mcp.method.name":"tools/list""#,
        );
        assert_eq!(untooled.tool, "", "missing tool is empty and takes no slot");
        assert_eq!(untooled.method, "tools/list");
    }

    #[test]
    fn error_types_are_capped() {
        let mut f = folding(10, 10);
        let err = |e: &str| format!(r#","mcp.outcome":"jsonrpc_error","error.type":"{e}""#);
        assert_eq!(
            labels(&mut f, &err("-32602")).error_type.as_deref(),
            Some("-32602")
        );
        assert_eq!(
            labels(&mut f, &err("500")).error_type.as_deref(),
            Some("500")
        );
        assert_eq!(
            labels(&mut f, &err("-32000")).error_type.as_deref(),
            Some(OTHER_LABEL)
        );
        assert_eq!(labels(&mut f, r#","mcp.outcome":"ok""#).error_type, None);
    }

    #[test]
    fn records_counts_errors_and_durations_but_not_duplicates() {
        let red = RedMetrics::new(10, 10);
        let ok = response(
            r#","instance_id":"i1","mcp.method.name":"tools/call","gen_ai.tool.name":"echo","mcp.outcome":"ok","duration_ms":30"#,
        );
        let failed = response(
            r#","instance_id":"i1","mcp.method.name":"tools/call","gen_ai.tool.name":"echo","mcp.outcome":"tool_error","error.type":"tool_error","duration_ms":700"#,
        );
        red.on_event(&ok, EventOutcome::Queued);
        red.on_event(&ok, EventOutcome::Duplicate);
        red.on_event(&failed, EventOutcome::Queued);
        let mut registry = Registry::default();
        red.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        let base = r#"instance="i1",method="tools/call",tool="echo""#;
        for sample in [
            format!(r#"mcp_server_operations_total{{{base},outcome="ok"}} 1"#),
            format!(r#"mcp_server_operations_total{{{base},outcome="tool_error"}} 1"#),
            format!(r#"mcp_server_operation_errors_total{{{base},error_type="tool_error"}} 1"#),
            format!(r#"mcp_server_operation_duration_seconds_bucket{{le="0.05",{base}}} 1"#),
            format!(r#"mcp_server_operation_duration_seconds_bucket{{le="0.5",{base}}} 1"#),
            format!(r#"mcp_server_operation_duration_seconds_bucket{{le="1.0",{base}}} 2"#),
            format!(r#"mcp_server_operation_duration_seconds_count{{{base}}} 2"#),
        ] {
            assert!(text.contains(&sample), "{sample} missing in:\n{text}");
        }
    }
}
