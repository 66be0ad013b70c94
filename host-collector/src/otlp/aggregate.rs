//! OTLP metrics: `mcp.server.operation.duration` and `mcp.server.session.duration`
//! (histograms in seconds with the conventions' buckets and attributes), aggregated in the
//! export task from every `response` event (sampling thins spans, never metrics), plus the
//! pipeline's own counters, read from live state at each export. Cumulative temporality.
//!
//! Bounded: at most `max_series` attribute sets per histogram (later ones are recorded in one
//! series marked `otel.metric.overflow`, as OpenTelemetry SDKs do) and at most `max_sessions`
//! open sessions (the oldest is forgotten, and counted).

use std::collections::{HashMap, VecDeque};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point::Value, AggregationTemporality, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, Sum,
};

use super::span::{kv, ResponseEvent, Times};
use crate::red::fold_method;

/// The conventions' advice for both MCP duration histograms, in seconds (shared with the
/// Prometheus histogram).
pub const BUCKETS: [f64; 14] = crate::red::DURATION_BUCKETS;

/// Attribute values longer than this are not names: they are recorded as `_OTHER`.
const MAX_VALUE_CHARS: usize = 128;

type Attributes = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
struct Hist {
    counts: [u64; BUCKETS.len() + 1],
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: [0; BUCKETS.len() + 1],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Hist {
    fn record(&mut self, v: f64) {
        let bucket = BUCKETS
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket] += 1;
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn point(&self, attributes: Vec<KeyValue>, start: u64, now: u64) -> HistogramDataPoint {
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: self.count,
            sum: Some(self.sum),
            bucket_counts: self.counts.to_vec(),
            explicit_bounds: BUCKETS.to_vec(),
            min: (self.count > 0).then_some(self.min),
            max: (self.count > 0).then_some(self.max),
            ..Default::default()
        }
    }
}

/// One histogram instrument, with a cap on its attribute sets.
#[derive(Debug)]
pub struct HistogramSet {
    series: HashMap<Attributes, Hist>,
    overflow: Option<Hist>,
    max_series: usize,
}

impl HistogramSet {
    pub fn new(max_series: usize) -> Self {
        HistogramSet {
            series: HashMap::new(),
            overflow: None,
            max_series,
        }
    }

    pub fn record(&mut self, attributes: Attributes, seconds: f64) {
        if let Some(h) = self.series.get_mut(&attributes) {
            h.record(seconds);
        } else if self.series.len() < self.max_series {
            self.series.entry(attributes).or_default().record(seconds);
        } else {
            self.overflow
                .get_or_insert_with(Hist::default)
                .record(seconds);
        }
    }

    pub fn series(&self) -> usize {
        self.series.len() + usize::from(self.overflow.is_some())
    }

    fn metric(&self, name: &str, description: &str, start: u64, now: u64) -> Metric {
        let mut points: Vec<HistogramDataPoint> = self
            .series
            .iter()
            .map(|(attrs, h)| {
                let attrs = attrs.iter().map(|(k, v)| kv(k, v.as_str())).collect();
                h.point(attrs, start, now)
            })
            .collect();
        if let Some(h) = &self.overflow {
            let overflow = KeyValue {
                key: "otel.metric.overflow".into(),
                value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(true),
                    ),
                }),
                ..Default::default()
            };
            points.push(h.point(vec![overflow], start, now));
        }
        Metric {
            name: name.into(),
            description: description.into(),
            unit: "s".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        }
    }
}

fn bounded(value: &str) -> String {
    if value.chars().count() > MAX_VALUE_CHARS {
        "_OTHER".to_string()
    } else {
        value.to_string()
    }
}

/// The transport attributes both instruments carry.
fn transport(attrs: &mut Attributes) {
    attrs.push(("network.transport", "tcp".into()));
    attrs.push(("network.protocol.name", "http".into()));
}

/// The conventions' attributes of `mcp.server.operation.duration`. Methods outside the MCP
/// catalogue are folded (`_other`), like the Prometheus labels, so a client cannot mint series.
pub fn operation_attributes(event: &ResponseEvent) -> Option<Attributes> {
    let method = fold_method(Some(event.method.as_deref()?)).to_string();
    let mut attrs: Attributes = Vec::with_capacity(9);
    if method == "tools/call" {
        attrs.push(("gen_ai.operation.name", "execute_tool".into()));
    }
    attrs.push(("mcp.method.name", method));
    let optional = [
        ("gen_ai.tool.name", event.tool.as_deref().map(bounded)),
        ("gen_ai.prompt.name", event.prompt.as_deref().map(bounded)),
        (
            "mcp.protocol.version",
            event.protocol_version.as_deref().map(bounded),
        ),
        (
            "rpc.response.status_code",
            event
                .rpc_status
                .as_ref()
                .and_then(|s| match s {
                    super::span::Scalar::Text(t) => Some(t.to_string()),
                    super::span::Scalar::Number(n) => Some(n.to_string()),
                    super::span::Scalar::Other(_) => None,
                })
                .map(|s| bounded(&s)),
        ),
        ("error.type", event.error_type().map(|e| bounded(&e))),
    ];
    attrs.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    transport(&mut attrs);
    Some(attrs)
}

/// Open sessions: first seen (the start of their first exchange) until their end, a DELETE
/// (Streamable HTTP) or the end of the legacy transport's GET event stream.
#[derive(Debug)]
pub struct Sessions {
    open: HashMap<String, u64>,
    order: VecDeque<String>,
    max: usize,
    pub forgotten: u64,
}

impl Sessions {
    pub fn new(max: usize) -> Self {
        Sessions {
            open: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
            forgotten: 0,
        }
    }

    /// Returns the session's duration in seconds when this event ends it.
    pub fn observe(&mut self, event: &ResponseEvent, times: Times) -> Option<f64> {
        let id = event.session_id.as_deref()?;
        let method = event.http_method.as_deref();
        let ends = method == Some("DELETE")
            || (method == Some("GET") && event.transport.as_deref() == Some("sse"));
        if ends {
            let start = self.open.remove(id)?;
            return Some(times.end.saturating_sub(start) as f64 / 1e9);
        }
        if !self.open.contains_key(id) {
            while self.open.len() >= self.max {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                if self.open.remove(&oldest).is_some() {
                    self.forgotten += 1;
                }
            }
            self.open.insert(id.to_string(), times.start);
            self.order.push_back(id.to_string());
            if self.order.len() > 2 * self.max {
                let open = &self.open;
                self.order.retain(|s| open.contains_key(s));
            }
        }
        None
    }

    pub fn open(&self) -> usize {
        self.open.len()
    }
}

/// Both MCP instruments.
#[derive(Debug)]
pub struct McpMetrics {
    pub operations: HistogramSet,
    pub sessions_duration: HistogramSet,
    pub sessions: Sessions,
}

impl McpMetrics {
    pub fn new(max_series: usize, max_sessions: usize) -> Self {
        McpMetrics {
            operations: HistogramSet::new(max_series),
            sessions_duration: HistogramSet::new(max_series),
            sessions: Sessions::new(max_sessions),
        }
    }

    pub fn record(&mut self, event: &ResponseEvent, times: Times) {
        if let (Some(attrs), Some(ms)) = (operation_attributes(event), event.duration_ms()) {
            self.operations.record(attrs, ms / 1000.0);
        }
        if let Some(seconds) = self.sessions.observe(event, times) {
            let mut attrs: Attributes = Vec::with_capacity(4);
            if let Some(v) = event.protocol_version.as_deref() {
                attrs.push(("mcp.protocol.version", bounded(v)));
            }
            if let Some(e) = event.error_type() {
                attrs.push(("error.type", bounded(&e)));
            }
            transport(&mut attrs);
            self.sessions_duration.record(attrs, seconds);
        }
    }

    pub fn metrics(&self, start: u64, now: u64) -> Vec<Metric> {
        vec![
            self.operations.metric(
                "mcp.server.operation.duration",
                "MCP request or notification duration as observed by the gateway, from the request until the result or ack.",
                start,
                now,
            ),
            self.sessions_duration.metric(
                "mcp.server.session.duration",
                "The duration of MCP sessions as observed by the gateway, from their first exchange to their end.",
                start,
                now,
            ),
        ]
    }
}

/// A monotonic counter with one point per attribute set.
pub fn counter(
    name: &str,
    description: &str,
    points: Vec<(Attributes, u64)>,
    start: u64,
    now: u64,
) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: "1".into(),
        data: Some(Data::Sum(Sum {
            data_points: points
                .into_iter()
                .map(|(attrs, v)| NumberDataPoint {
                    attributes: attrs.iter().map(|(k, v)| kv(k, v.as_str())).collect(),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX))),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

pub fn gauge(name: &str, description: &str, unit: &str, value: f64, now: u64) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: now,
                value: Some(Value::AsDouble(value)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> ResponseEvent<'_> {
        serde_json::from_str(json).expect("event")
    }

    #[test]
    fn operations_use_the_conventions_buckets_and_attributes() {
        let mut m = McpMetrics::new(2, 10);
        let call = event(
            r#"{"mcp.method.name":"tools/call","gen_ai.tool.name":"echo","mcp.protocol.version":"2025-06-18","duration_ms":15}"#,
        );
        m.record(
            &call,
            Times {
                start: 0,
                end: 15_000_000,
            },
        );
        m.record(
            &call,
            Times {
                start: 0,
                end: 15_000_000,
            },
        );
        let custom =
            event(r#"{"mcp.method.name":"x/y","error.type":"-32601","duration_ms":400000}"#);
        m.record(&custom, Times { start: 0, end: 1 });
        let third = event(r#"{"mcp.method.name":"ping","duration_ms":1}"#);
        m.record(&third, Times { start: 0, end: 1 });
        let stream = event(r#"{"http.request.method":"GET","duration_ms":1}"#);
        m.record(&stream, Times { start: 0, end: 1 });
        assert_eq!(m.operations.series(), 3, "two series and the overflow");
        let metrics = m.metrics(1, 2);
        let Some(Data::Histogram(h)) = &metrics[0].data else {
            panic!("histogram");
        };
        let echo = h
            .data_points
            .iter()
            .find(|p| p.count == 2)
            .expect("the echo series");
        assert_eq!(echo.bucket_counts[1], 2, "15 ms is in (0.01, 0.02]");
        assert_eq!(echo.explicit_bounds, BUCKETS.to_vec());
        let keys: Vec<&str> = echo.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "gen_ai.operation.name",
                "mcp.method.name",
                "gen_ai.tool.name",
                "mcp.protocol.version",
                "network.transport",
                "network.protocol.name"
            ]
        );
        let folded = h
            .data_points
            .iter()
            .find(|p| p.attributes.iter().any(|a| a.key == "error.type"))
            .expect("the custom method's series");
        assert_eq!(
            folded.bucket_counts[BUCKETS.len()],
            1,
            "400 s overflows the last bound"
        );
        assert!(folded
            .attributes
            .iter()
            .any(|a| a.key == "mcp.method.name" && format!("{:?}", a.value).contains("_other")));
    }

    #[test]
    fn sessions_run_from_first_exchange_to_delete() {
        let mut m = McpMetrics::new(10, 1);
        let init = event(
            r#"{"mcp.session.id":"s1","http.request.method":"POST","mcp.method.name":"initialize"}"#,
        );
        m.record(
            &init,
            Times {
                start: 1_000_000_000,
                end: 1_100_000_000,
            },
        );
        let call = event(r#"{"mcp.session.id":"s1","http.request.method":"POST"}"#);
        m.record(
            &call,
            Times {
                start: 2_000_000_000,
                end: 2_100_000_000,
            },
        );
        let delete = event(
            r#"{"mcp.session.id":"s1","http.request.method":"DELETE","mcp.protocol.version":"2025-06-18"}"#,
        );
        m.record(
            &delete,
            Times {
                start: 4_000_000_000,
                end: 4_500_000_000,
            },
        );
        assert_eq!(m.sessions.open(), 0);
        let metrics = m.metrics(0, 1);
        let Some(Data::Histogram(h)) = &metrics[1].data else {
            panic!("histogram");
        };
        assert_eq!(h.data_points.len(), 1);
        assert_eq!(h.data_points[0].sum, Some(3.5));
        // Over the cap the oldest open session is forgotten and counted.
        m.record(&init, Times { start: 0, end: 1 });
        let other = event(r#"{"mcp.session.id":"s2","http.request.method":"POST"}"#);
        m.record(&other, Times { start: 0, end: 1 });
        assert_eq!((m.sessions.open(), m.sessions.forgotten), (1, 1));
    }
}
