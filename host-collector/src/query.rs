//! The `GET /v1/logs` query API: request parameters to a store filter, stored rows to JSON.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, SecondsFormat};
use serde_json::{json, Value};

use crate::store::{LogQuery, StoredRow};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

const KNOWN: [&str; 10] = [
    "trace_id",
    "instance_id",
    "event",
    "tool",
    "source",
    "outcome",
    "since",
    "until",
    "cursor",
    "limit",
];

/// Parses query-string parameters; unknown names are errors so typos do not silently widen
/// a search.
pub fn parse_params(params: &HashMap<String, String>) -> Result<LogQuery, String> {
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "unknown parameter {unknown:?}; use {}",
            KNOWN.join(", ")
        ));
    }
    let text = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| format!("limit: expected 1..{MAX_LIMIT}"))?,
    };
    let before_id = params
        .get("cursor")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| "cursor: not a cursor from next_cursor")
        })
        .transpose()?;
    Ok(LogQuery {
        trace_id: text("trace_id"),
        instance_id: text("instance_id"),
        event: text("event"),
        tool_name: text("tool"),
        source: text("source"),
        outcome: text("outcome"),
        since: time_param(params, "since")?,
        until: time_param(params, "until")?,
        before_id,
        limit,
    })
}

fn time_param(
    params: &HashMap<String, String>,
    key: &str,
) -> Result<Option<NaiveDateTime>, String> {
    params
        .get(key)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.naive_utc())
                .map_err(|e| format!("{key}: not an RFC 3339 timestamp ({e})"))
        })
        .transpose()
}

fn time_text(t: NaiveDateTime) -> String {
    t.and_utc().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Newest first; `next_cursor` is set when a full page came back.
pub fn render(rows: &[StoredRow], limit: u32) -> Value {
    let items: Vec<Value> = rows.iter().map(render_row).collect();
    let next_cursor = (rows.len() as u32 >= limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    json!({ "items": items, "next_cursor": next_cursor })
}

fn render_row(stored: &StoredRow) -> Value {
    let r = &stored.row;
    // Stored JSON is collector-validated; fall back to text if it was edited by hand.
    let log = serde_json::from_str::<Value>(&r.log).unwrap_or_else(|_| Value::from(r.log.clone()));
    json!({
        "id": stored.id,
        "trace_id": r.trace_id,
        "span_id": r.span_id,
        "instance_id": r.instance_id,
        "mcp_method": r.mcp_method,
        "tool_name": r.tool_name,
        "token_header": r.token_header,
        "token": r.token,
        "event": r.event,
        "level": r.level.as_str(),
        "log": log,
        "source": r.source,
        "seq": r.seq,
        "created_at": time_text(r.created_at),
        "received_at": time_text(r.received_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_filters_and_rejects_bad_values() {
        let q = parse_params(&params(&[
            ("tool", "echo"),
            ("since", "2026-01-01T00:00:00Z"),
            ("limit", "5"),
            ("cursor", "42"),
        ]))
        .expect("valid");
        assert_eq!(q.tool_name.as_deref(), Some("echo"));
        assert_eq!(q.limit, 5);
        assert_eq!(q.before_id, Some(42));
        assert!(q.since.is_some());
        for bad in [
            ("limit", "0"),
            ("limit", "5000"),
            ("since", "yesterday"),
            ("tools", "x"),
        ] {
            assert!(parse_params(&params(&[bad])).is_err(), "{bad:?}");
        }
    }
}
