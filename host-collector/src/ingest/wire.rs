//! Parsing and validation of one NDJSON line of the wire contract into an event row or a
//! status record. Pure: no state, no I/O.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDateTime, SubsecRound};
use mcp_contract::fields::{limits, name};
use mcp_contract::fingerprint::{self, is_fingerprint};
use serde::Deserialize;

use crate::event::{Level, Row};

/// A successfully parsed line.
// Events are the hot path and are moved straight into the queue; boxing them to shrink the
// rare status variant would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Line {
    Event {
        row: Row,
        /// The `token` field was not a fingerprint and has been replaced by one.
        refingerprinted: bool,
        /// Fields cut to their column's limit or, when invalid, kept out of their column
        /// (named in the stored line's `truncated`).
        truncated: usize,
        /// Outcome fields of a `response` event, for the RED metrics (never stored apart
        /// from `log`).
        response: Option<ResponseFields>,
    },
    Status(StatusRecord),
}

/// A filter's cumulative counters since that source started: drops by reason and, when the
/// filter reports it, `emitted` (the highest seq it has emitted).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRecord {
    pub source: String,
    pub dropped: BTreeMap<String, u64>,
    pub emitted: Option<u64>,
}

/// What a `response` event says about the operation, as sent (labels are folded later).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseFields {
    pub outcome: Option<String>,
    pub error_type: Option<String>,
    pub duration_ms: Option<f64>,
}

/// A field read leniently: these fields were never validated, so a wrong type must not turn
/// a line that used to be accepted into a rejected one; it just yields no value.
#[derive(Deserialize)]
#[serde(untagged)]
enum Loose<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Number(serde_json::Number),
    Other(serde::de::IgnoredAny),
}

impl Loose<'_> {
    /// Strings as they are, numbers in their JSON spelling (`-32602`).
    fn label(&self) -> Option<String> {
        match self {
            Loose::Text(t) => Some(t.to_string()),
            Loose::Number(n) => Some(n.to_string()),
            Loose::Other(_) => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Loose::Number(n) => n.as_f64(),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct WireLine<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ts: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    level: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    trace_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    span_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    instance_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "mcp.method.name")]
    mcp_method: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "gen_ai.tool.name")]
    tool_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    token_header: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    #[serde(default)]
    dropped: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    emitted: Option<u64>,
    #[serde(borrow, default, rename = "mcp.outcome")]
    outcome: Option<Loose<'a>>,
    #[serde(borrow, default, rename = "error.type")]
    error_type: Option<Loose<'a>>,
    #[serde(borrow, default)]
    duration_ms: Option<Loose<'a>>,
}

/// Parses one non-blank line. The error is the reason reported back to the sender.
pub fn parse_line(raw: &[u8], received_at: NaiveDateTime) -> Result<Line, String> {
    parse_line_keyed(raw, received_at, None)
}

/// `parse_line`, re-fingerprinting a raw credential under `key` (HMAC-SHA256, as filters with
/// the same `fingerprint_key` do) when one is configured.
pub fn parse_line_keyed(
    raw: &[u8],
    received_at: NaiveDateTime,
    key: Option<&[u8]>,
) -> Result<Line, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "line is not valid UTF-8".to_string())?;
    let text = text.trim();
    if !text.starts_with('{') {
        return Err("line is not a JSON object".into());
    }
    let wire: WireLine = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    match wire.kind.as_deref() {
        None => parse_event(&wire, text, received_at, key),
        Some("status") => parse_status(wire).map(Line::Status),
        Some(other) => Err(format!("unknown kind {other:?}")),
    }
}

fn parse_event(
    wire: &WireLine,
    text: &str,
    received_at: NaiveDateTime,
    key: Option<&[u8]>,
) -> Result<Line, String> {
    let ts = required(&wire.ts, "ts")?;
    let created_at = DateTime::parse_from_rfc3339(ts)
        .map_err(|e| format!("ts: not an RFC 3339 timestamp ({e})"))?
        .naive_utc()
        .trunc_subsecs(6);
    // DATETIME's range: outside it a strict server would refuse the whole batch.
    if !(1000..=9999).contains(&created_at.year()) {
        return Err("ts: year must be between 1000 and 9999".into());
    }
    let source = valid_source(required(&wire.source, "source")?)?;
    let seq = wire.seq.ok_or("missing required field \"seq\"")?;
    if seq > i64::MAX as u64 {
        return Err("seq: must be at most 2^63-1".into());
    }
    let event = required(&wire.event, "event")?;
    check_name(event, "event", |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_'
    })?;
    let level_name = required(&wire.level, "level")?;
    let level = Level::parse(level_name)
        .ok_or_else(|| format!("level: {level_name:?} is not one of debug, info, warn, error"))?;
    let (token, refingerprinted) = match wire.token.as_deref() {
        Some(t) if !is_fingerprint(t) => (Some(refingerprint(t, key)), true),
        other => (other.map(str::to_string), false),
    };
    let mut truncated = Vec::new();
    let mut text_column = |value: &Option<Cow<'_, str>>, name: &'static str, max: usize| {
        let value = value.as_deref()?;
        match value.char_indices().nth(max) {
            Some((cut, _)) => {
                truncated.push(name);
                Some(value[..cut].to_string())
            }
            None => Some(value.to_string()),
        }
    };
    let instance_id = text_column(&wire.instance_id, name::INSTANCE_ID, limits::INSTANCE_ID);
    let mcp_method = text_column(&wire.mcp_method, name::METHOD, limits::METHOD);
    let tool_name = text_column(&wire.tool_name, name::TOOL_NAME, limits::TOOL_NAME);
    let token_header = text_column(&wire.token_header, name::TOKEN_HEADER, limits::TOKEN_HEADER);
    let trace_id = hex_column(&wire.trace_id, name::TRACE_ID, 32, &mut truncated);
    let span_id = hex_column(&wire.span_id, name::SPAN_ID, 16, &mut truncated);
    let log = if refingerprinted || !truncated.is_empty() {
        rewrite_log(
            text,
            refingerprinted.then_some(token.as_deref()).flatten(),
            &truncated,
        )?
    } else {
        text.to_string()
    };
    let row = Row {
        trace_id,
        span_id,
        instance_id,
        mcp_method,
        tool_name,
        token_header,
        token,
        event: event.to_string(),
        level,
        log,
        source,
        seq,
        created_at,
        received_at,
    };
    Ok(Line::Event {
        response: (event == "response").then(|| response_fields(wire)),
        row,
        refingerprinted,
        truncated: truncated.len(),
    })
}

fn response_fields(wire: &WireLine) -> ResponseFields {
    ResponseFields {
        outcome: wire.outcome.as_ref().and_then(Loose::label),
        error_type: wire.error_type.as_ref().and_then(Loose::label),
        duration_ms: wire.duration_ms.as_ref().and_then(Loose::number),
    }
}

fn parse_status(wire: WireLine) -> Result<StatusRecord, String> {
    let source = valid_source(required(&wire.source, "source")?)?;
    let dropped = wire.dropped.ok_or("missing required field \"dropped\"")?;
    for reason in dropped.keys() {
        check_name(reason, "dropped reason", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_'
        })?;
    }
    Ok(StatusRecord {
        source,
        dropped,
        emitted: wire.emitted,
    })
}

fn required<'w>(field: &'w Option<Cow<'_, str>>, name: &str) -> Result<&'w str, String> {
    field
        .as_deref()
        .ok_or_else(|| format!("missing required field {name:?}"))
}

fn valid_source(source: &str) -> Result<String, String> {
    check_name(source, "source", |c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
    })?;
    Ok(source.to_string())
}

/// 1..=64 characters, all allowed by `allowed`.
fn check_name(value: &str, name: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if value.is_empty() || value.len() > 64 || !value.chars().all(allowed) {
        return Err(format!(
            "{name}: {value:?} must be 1..64 characters of the allowed set"
        ));
    }
    Ok(())
}

/// An id column: `len` lowercase hex characters, or none (the line keeps what was sent, and
/// the field is named in `truncated`). A line is never refused for what it carries here.
fn hex_column(
    field: &Option<Cow<'_, str>>,
    name: &'static str,
    len: usize,
    truncated: &mut Vec<&'static str>,
) -> Option<String> {
    let value = field.as_deref()?;
    if value.len() == len && is_lower_hex(value) {
        Some(value.to_string())
    } else {
        truncated.push(name);
        None
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A `token` that is not a fingerprint (a filter that sent the credential itself) is
/// replaced by the contract's fingerprint of it: keyed under the collector's
/// `--fingerprint-key` (the same as keyed filters write, when the keys match), else unsalted
/// (this collector does not know a filter's salt, so it identifies the credential but does
/// not match salted fingerprints of it).
pub fn refingerprint(token: &str, key: Option<&[u8]>) -> String {
    match key {
        Some(key) => {
            String::from_utf8_lossy(&fingerprint::keyed_of_header_value(key, token.as_bytes()))
                .into_owned()
        }
        None => String::from_utf8_lossy(&fingerprint::of_header_value(b"", token.as_bytes()))
            .into_owned(),
    }
}

/// The stored line, rewritten: a raw credential replaced by its fingerprint, and the fields
/// cut or kept out of their columns named in `truncated` (key order may change). Column values
/// over their limit are cut in the columns only; the line keeps them whole, as sent.
fn rewrite_log(
    text: &str,
    fingerprint: Option<&str>,
    truncated: &[&'static str],
) -> Result<String, String> {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    if let Some(fingerprint) = fingerprint {
        object.insert(name::TOKEN.into(), fingerprint.into());
    }
    if !truncated.is_empty() {
        object.insert(name::TRUNCATED.into(), truncated.into());
    }
    serde_json::to_string(&object).map_err(|e| format!("cannot re-encode event: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> NaiveDateTime {
        chrono::Utc::now().naive_utc()
    }

    fn event(extra: &str) -> String {
        format!(
            r#"{{"ts":"2026-11-22T02:53:34.123456Z","source":"vm-1","seq":7,"event":"request","level":"info"{extra}}}"#
        )
    }

    fn parse_row(line: &str) -> Row {
        match parse_line(line.as_bytes(), now()) {
            Ok(Line::Event { row, .. }) => row,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn maps_fields_to_columns() {
        let row = parse_row(&event(
            r#","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","instance_id":"i1","mcp.method.name":"tools/call","gen_ai.tool.name":"echo","token_header":"Authorization","token":"sha256:0123456789ab","x":{"y":1}"#,
        ));
        assert_eq!(row.mcp_method.as_deref(), Some("tools/call"));
        assert_eq!(row.tool_name.as_deref(), Some("echo"));
        assert_eq!(row.token.as_deref(), Some("sha256:0123456789ab"));
        assert_eq!(row.level, Level::Info);
        assert_eq!(row.seq, 7);
        assert_eq!(
            row.created_at.and_utc().to_rfc3339(),
            "2026-11-22T02:53:34.123456+00:00"
        );
        assert!(row.log.contains(r#""x":{"y":1}"#), "log kept verbatim");
    }

    #[test]
    fn raw_token_is_fingerprinted_in_column_and_log() {
        let line = event(r#","token":"Bearer super-secret""#);
        let Ok(Line::Event {
            row,
            refingerprinted,
            ..
        }) = parse_line(line.as_bytes(), now())
        else {
            panic!("expected an event");
        };
        assert!(refingerprinted);
        let expected = refingerprint("Bearer super-secret", None);
        assert_eq!(row.token.as_deref(), Some(expected.as_str()));
        assert!(!row.log.contains("super-secret"));
        assert!(row.log.contains(&expected));
        assert!(is_fingerprint(&expected));
    }

    #[test]
    fn rejects_with_reasons() {
        let cases = [
            ("[1,2]", "not a JSON object"),
            ("{\"ts\":", "invalid JSON"),
            (
                r#"{"source":"a","seq":1,"event":"request","level":"info"}"#,
                "\"ts\"",
            ),
            (
                &event("").replace("\"info\"", "\"fatal\""),
                "level: \"fatal\"",
            ),
            (&event("").replace("vm-1", "vm 1"), "source"),
            (&event("").replace("request", "Request"), "event"),
            (
                &event("").replace("\"seq\":7", "\"seq\":-1"),
                "invalid JSON",
            ),
            (r#"{"kind":"other"}"#, "unknown kind"),
            (&event("").replace("2026-", "0999-"), "year"),
        ];
        for (line, reason) in cases {
            let err = parse_line(line.as_bytes(), now()).expect_err(line);
            assert!(err.contains(reason), "{line}: {err}");
        }
    }

    #[test]
    fn long_or_invalid_fields_are_cut_and_named_never_rejected() {
        let long_tool = "ü".repeat(300);
        let line = event(&format!(
            r#","gen_ai.tool.name":"{long_tool}","mcp.method.name":"tools/call","trace_id":"ABC","token":"Bearer raw-secret""#
        ));
        let Ok(Line::Event { row, truncated, .. }) = parse_line(line.as_bytes(), now()) else {
            panic!("stored, not rejected");
        };
        assert_eq!(truncated, 2);
        let tool = row.tool_name.expect("kept");
        assert_eq!(tool.chars().count(), 256, "cut at a character boundary");
        assert!(long_tool.starts_with(&tool));
        assert_eq!(row.mcp_method.as_deref(), Some("tools/call"), "untouched");
        assert_eq!(row.trace_id, None, "an invalid id stays out of its column");
        let log: serde_json::Value = serde_json::from_str(&row.log).expect("JSON");
        assert_eq!(
            log["truncated"],
            serde_json::json!(["gen_ai.tool.name", "trace_id"])
        );
        assert_eq!(
            log["gen_ai.tool.name"],
            long_tool.as_str(),
            "the line keeps it whole"
        );
        assert!(!row.log.contains("raw-secret"), "and still no credential");
        for (field, limit) in [
            ("instance_id", limits::INSTANCE_ID),
            ("mcp.method.name", limits::METHOD),
            ("token_header", limits::TOKEN_HEADER),
        ] {
            let line = event(&format!(r#","{field}":"{}""#, "x".repeat(limit + 1)));
            let Ok(Line::Event { truncated, row, .. }) = parse_line(line.as_bytes(), now()) else {
                panic!("{field}: stored");
            };
            assert_eq!(truncated, 1, "{field}");
            assert!(
                row.log.contains(&format!(r#""truncated":["{field}"]"#)),
                "{field}"
            );
        }
        let at_limit = event(&format!(r#","gen_ai.tool.name":"{}""#, "t".repeat(256)));
        let Ok(Line::Event { truncated, row, .. }) = parse_line(at_limit.as_bytes(), now()) else {
            panic!("stored");
        };
        assert_eq!(
            (truncated, row.log),
            (0, at_limit),
            "at the limit: verbatim"
        );
    }

    #[test]
    fn parses_status_records() {
        let line = r#"{"kind":"status","source":"vm-1","ts":"2026-11-22T02:53:34.123456Z","dropped":{"buffer_full":3}}"#;
        let Ok(Line::Status(status)) = parse_line(line.as_bytes(), now()) else {
            panic!("expected a status record");
        };
        assert_eq!(status.dropped.get("buffer_full"), Some(&3));
        assert_eq!(status.emitted, None, "emitted is optional");
        let with_emitted = line.replace("}}", r#"},"emitted":42}"#);
        let Ok(Line::Status(status)) = parse_line(with_emitted.as_bytes(), now()) else {
            panic!("expected a status record");
        };
        assert_eq!(status.emitted, Some(42));
    }

    fn response_of(line: &str) -> Option<ResponseFields> {
        match parse_line(line.as_bytes(), now()) {
            Ok(Line::Event { response, .. }) => response,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn response_fields_are_read_leniently() {
        let response =
            event(r#","mcp.outcome":"jsonrpc_error","error.type":"-32602","duration_ms":12.5"#)
                .replace("\"request\"", "\"response\"");
        assert_eq!(
            response_of(&response),
            Some(ResponseFields {
                outcome: Some("jsonrpc_error".into()),
                error_type: Some("-32602".into()),
                duration_ms: Some(12.5),
            })
        );
        let numeric = event(r#","error.type":-32601,"duration_ms":"slow","mcp.outcome":[1]"#)
            .replace("\"request\"", "\"response\"");
        assert_eq!(
            response_of(&numeric),
            Some(ResponseFields {
                outcome: None,
                error_type: Some("-32601".into()),
                duration_ms: None,
            }),
            "wrong types yield no value instead of rejecting the line"
        );
        assert_eq!(
            response_of(&event(r#","duration_ms":3"#)),
            None,
            "only response events carry them"
        );
    }
}
