//! Logs on stdout in Cantabular's style: logfmt by default (`t`, `ns`, `lvl`, `ev`, `msg`,
//! then the event's own fields), JSON with the same keys when `LOG_FORMAT=json`.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Namespace written as `ns`: the executable's name.
pub const NAMESPACE: &str = "host-collector";

/// A field value, keeping numbers and booleans unquoted in JSON.
enum Value {
    Text(String),
    Raw(String),
}

#[derive(Default)]
struct Fields {
    ev: Option<String>,
    msg: Option<String>,
    rest: Vec<(&'static str, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        let text = match &value {
            Value::Text(s) | Value::Raw(s) => s,
        };
        match field.name() {
            "message" | "msg" => self.msg = Some(text.clone()),
            "ev" => self.ev = Some(text.clone()),
            name => self.rest.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Text(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::Raw(value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::Raw(value.to_string()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::Raw(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Raw(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::Text(format!("{value:?}")));
    }
}

pub struct StdoutLayer {
    format: LogFormat,
}

/// Formats one event as a line (without the newline).
fn format_line(format: LogFormat, level: &tracing::Level, fields: Fields) -> String {
    let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let lvl = level.as_str().to_ascii_lowercase();
    let head = [
        ("t", Value::Text(t)),
        ("ns", Value::Text(NAMESPACE.into())),
        ("lvl", Value::Text(lvl)),
        (
            "ev",
            Value::Text(fields.ev.unwrap_or_else(|| "message".into())),
        ),
    ];
    let msg = fields.msg.map(|m| ("msg", Value::Text(m)));
    let all = head.into_iter().chain(msg).chain(fields.rest);
    match format {
        LogFormat::Logfmt => all
            .map(|(k, v)| format!("{k}={}", logfmt_value(&v)))
            .collect::<Vec<_>>()
            .join(" "),
        LogFormat::Json => {
            let mut out = String::from("{");
            for (i, (k, v)) in all.enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(out, "{sep}{}:{}", json_string(k), json_value(&v));
            }
            out.push('}');
            out
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn json_value(v: &Value) -> String {
    match v {
        Value::Text(s) => json_string(s),
        // Non-finite floats are not JSON numbers.
        Value::Raw(s)
            if s.parse::<f64>().is_ok_and(f64::is_finite) || s == "true" || s == "false" =>
        {
            s.clone()
        }
        Value::Raw(s) => json_string(s),
    }
}

fn logfmt_value(v: &Value) -> String {
    let s = match v {
        Value::Text(s) | Value::Raw(s) => s,
    };
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if plain {
        return s.clone();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl<S: Subscriber> Layer<S> for StdoutLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = format_line(self.format, event.metadata().level(), fields);
        line.push('\n');
        // Nowhere to report a failing stdout; dropping the line is the only option.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// Installs the stdout logger; returns an error if a global logger is already set.
pub fn init(format: LogFormat, level: tracing::Level) -> Result<(), String> {
    let filter = tracing_subscriber::filter::LevelFilter::from_level(level);
    tracing_subscriber::registry()
        .with(StdoutLayer { format }.with_filter(filter))
        .try_init()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(rest: Vec<(&'static str, Value)>) -> Fields {
        Fields {
            ev: Some("http".into()),
            msg: Some("served request".into()),
            rest,
        }
    }

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let line = format_line(
            LogFormat::Logfmt,
            &tracing::Level::INFO,
            fields(vec![
                ("url", Value::Text("/v1/logs?a=b".into())),
                ("httpStatus", Value::Raw("200".into())),
                ("authUser", Value::Text(String::new())),
            ]),
        );
        assert!(line.starts_with("t="), "{line}");
        assert!(line.contains(" ns=host-collector lvl=info ev=http msg=\"served request\" url=\"/v1/logs?a=b\" httpStatus=200 authUser=\"\""), "{line}");
    }

    #[test]
    fn json_keeps_the_same_keys_and_types() {
        let line = format_line(
            LogFormat::Json,
            &tracing::Level::WARN,
            fields(vec![
                ("nBytes", Value::Raw("12".into())),
                ("path", Value::Text("a\"b".into())),
            ]),
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["lvl"], "warn");
        assert_eq!(v["ev"], "http");
        assert_eq!(v["nBytes"], 12);
        assert_eq!(v["path"], "a\"b");
    }
}
