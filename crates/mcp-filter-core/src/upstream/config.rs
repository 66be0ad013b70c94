//! Configuration of upstream health tracking and circuit breaking: the serde shape embedded in
//! the plugin config, its defaults, and `validate()`, whose errors name the offending field.
//! Like the rest of the plugin config it is checked once at configure time, so nothing here
//! can fail at request time.

use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most probes a half-open breaker can have in flight; the record has this many fixed slots.
pub const MAX_PROBES: u32 = 16;

/// Window used for the `window_calls`/`window_failures` figures when no `error_rate` is set.
const DEFAULT_WINDOW_SECS: u32 = 60;

/// How a call to the upstream ended, when it did not succeed. Whether a kind counts as a
/// failure (for the breaker and the healthy flag) is decided by `failure_kinds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The connection to the upstream could not be established.
    ConnectFailure,
    /// The upstream reset the connection or stream.
    Reset,
    /// No (complete) response in time.
    Timeout,
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// A 4xx other than 429 (429 is `http_429`, but listing `http_4xx` also covers it).
    #[serde(rename = "http_4xx")]
    Http4xx,
    #[serde(rename = "http_429")]
    Http429,
    /// A JSON-RPC error object in a 2xx response: the transport worked.
    JsonrpcError,
    /// A `tools/call` result with `isError: true`: the transport worked.
    ToolError,
}

impl FailureKind {
    pub const ALL: [FailureKind; 8] = [
        FailureKind::ConnectFailure,
        FailureKind::Reset,
        FailureKind::Timeout,
        FailureKind::Http5xx,
        FailureKind::Http4xx,
        FailureKind::Http429,
        FailureKind::JsonrpcError,
        FailureKind::ToolError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::ConnectFailure => "connect_failure",
            FailureKind::Reset => "reset",
            FailureKind::Timeout => "timeout",
            FailureKind::Http5xx => "http_5xx",
            FailureKind::Http4xx => "http_4xx",
            FailureKind::Http429 => "http_429",
            FailureKind::JsonrpcError => "jsonrpc_error",
            FailureKind::ToolError => "tool_error",
        }
    }

    /// The kind of an HTTP status that is not a success, if it is an error at all.
    pub fn from_http_status(status: u16) -> Option<FailureKind> {
        match status {
            429 => Some(FailureKind::Http429),
            400..=499 => Some(FailureKind::Http4xx),
            500..=599 => Some(FailureKind::Http5xx),
            _ => None,
        }
    }

    /// Stable one-byte code used by the record encoding (0 means "none").
    pub(crate) fn code(self) -> u8 {
        match self {
            FailureKind::ConnectFailure => 1,
            FailureKind::Reset => 2,
            FailureKind::Timeout => 3,
            FailureKind::Http5xx => 4,
            FailureKind::Http4xx => 5,
            FailureKind::Http429 => 6,
            FailureKind::JsonrpcError => 7,
            FailureKind::ToolError => 8,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// Open the breaker when, within a sliding window, at least `min_calls` calls were made and
/// the share of failures reached `threshold`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRateConfig {
    /// Failure share in (0, 1] at or above which the breaker opens.
    pub threshold: f64,
    pub window_secs: u32,
    /// Below this many calls in the window the rate is not trusted.
    pub min_calls: u32,
}

impl Default for ErrorRateConfig {
    fn default() -> Self {
        ErrorRateConfig {
            threshold: 0.5,
            window_secs: 60,
            min_calls: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// When false, every request is allowed; health is still tracked.
    pub enabled: bool,
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    pub error_rate: Option<ErrorRateConfig>,
    /// Time an open breaker waits before admitting probes.
    pub reset_timeout_ms: u64,
    /// When set, the wait doubles on every re-open (a failed probe) up to this cap.
    pub max_reset_timeout_ms: Option<u64>,
    /// Fraction in [0, 1): the wait is spread uniformly over ±`jitter` of itself so workers
    /// and gateways do not probe in lockstep.
    pub jitter: f64,
    /// Probes a half-open breaker lets through at the same time.
    pub half_open_max_probes: u32,
    /// A probe that has not reported back after this long frees its slot (its VM may be gone).
    pub probe_timeout_ms: u64,
    /// Successful probes that close a half-open breaker.
    pub success_threshold: u32,
    /// Outcomes that count as failures. JSON-RPC errors and `isError` results are not
    /// included by default: they prove the upstream is up and answering.
    pub failure_kinds: BTreeSet<FailureKind>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_threshold: 5,
            error_rate: None,
            reset_timeout_ms: 30_000,
            max_reset_timeout_ms: None,
            jitter: 0.0,
            half_open_max_probes: 1,
            // Envoy's default route timeout: a probe still running after it is unlikely to report.
            probe_timeout_ms: 15_000,
            success_threshold: 3,
            failure_kinds: [
                FailureKind::ConnectFailure,
                FailureKind::Reset,
                FailureKind::Timeout,
                FailureKind::Http5xx,
            ]
            .into_iter()
            .collect(),
        }
    }
}

impl BreakerConfig {
    /// Whether an outcome of this kind counts as a failure.
    pub fn counts(&self, kind: FailureKind) -> bool {
        self.failure_kinds.contains(&kind)
            || (kind == FailureKind::Http429 && self.failure_kinds.contains(&FailureKind::Http4xx))
    }

    /// Width of one of the error window's sub-buckets, in microseconds.
    pub(crate) fn window_bucket_us(&self) -> u64 {
        let secs = self
            .error_rate
            .as_ref()
            .map_or(DEFAULT_WINDOW_SECS, |e| e.window_secs);
        (u64::from(secs) * 1_000_000 / crate::upstream::window::WINDOW_BUCKETS as u64).max(1)
    }
}

/// Everything about upstreams: `{"unhealthy_after":3,"cas_max_retries":8,"breaker":{...}}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Consecutive failures after which an upstream is reported unhealthy; the first success
    /// makes it healthy again.
    pub unhealthy_after: u32,
    /// Compare-and-swap retries on a shared-data conflict before the update is counted lost.
    pub cas_max_retries: u32,
    /// Upstreams that get a shared-data record; ids beyond are served but not tracked, so
    /// client-chosen ids cannot create unbounded state.
    pub max_instances: usize,
    pub breaker: BreakerConfig,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            unhealthy_after: 3,
            cas_max_retries: 8,
            max_instances: 64,
            breaker: BreakerConfig::default(),
        }
    }
}

fn err(at: &str, name: &str, message: &str) -> ConfigError {
    let field = if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    };
    ConfigError {
        field,
        message: message.to_string(),
    }
}

fn fraction_in(value: f64, min_inclusive: bool, max_inclusive: bool) -> bool {
    let above = if min_inclusive {
        value >= 0.0
    } else {
        value > 0.0
    };
    let below = if max_inclusive {
        value <= 1.0
    } else {
        value < 1.0
    };
    value.is_finite() && above && below
}

impl UpstreamConfig {
    /// Checks ranges. `at` is where this object sits in the plugin config (e.g. "upstream"),
    /// so errors name the full path, e.g. `upstream.breaker.jitter`.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.unhealthy_after == 0 {
            return Err(err(at, "unhealthy_after", "must be at least 1"));
        }
        if self.max_instances == 0 || self.max_instances > 4096 {
            return Err(err(at, "max_instances", "must be between 1 and 4096"));
        }
        if self.cas_max_retries > 64 {
            return Err(err(at, "cas_max_retries", "must be at most 64"));
        }
        let breaker_at = if at.is_empty() {
            "breaker".to_string()
        } else {
            format!("{at}.breaker")
        };
        self.breaker.validate(&breaker_at)
    }
}

impl BreakerConfig {
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.failure_threshold == 0 {
            return Err(err(at, "failure_threshold", "must be at least 1"));
        }
        if let Some(rate) = &self.error_rate {
            if !fraction_in(rate.threshold, false, true) {
                return Err(err(at, "error_rate.threshold", "must be in (0, 1]"));
            }
            if rate.window_secs == 0 || rate.window_secs > 3600 {
                return Err(err(at, "error_rate.window_secs", "must be 1 to 3600"));
            }
            if rate.min_calls == 0 {
                return Err(err(at, "error_rate.min_calls", "must be at least 1"));
            }
        }
        if self.reset_timeout_ms == 0 {
            return Err(err(at, "reset_timeout_ms", "must be at least 1"));
        }
        if let Some(cap) = self.max_reset_timeout_ms {
            if cap < self.reset_timeout_ms {
                return Err(err(
                    at,
                    "max_reset_timeout_ms",
                    "must not be below reset_timeout_ms",
                ));
            }
        }
        if !fraction_in(self.jitter, true, false) {
            return Err(err(at, "jitter", "must be in [0, 1)"));
        }
        if self.half_open_max_probes == 0 || self.half_open_max_probes > MAX_PROBES {
            return Err(err(at, "half_open_max_probes", "must be 1 to 16"));
        }
        if self.probe_timeout_ms == 0 {
            return Err(err(at, "probe_timeout_ms", "must be at least 1"));
        }
        if self.success_threshold == 0 {
            return Err(err(at, "success_threshold", "must be at least 1"));
        }
        if self.failure_kinds.is_empty() {
            return Err(err(
                at,
                "failure_kinds",
                "must list at least one kind (set `enabled: false` to turn the breaker off)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<UpstreamConfig, ConfigError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let cfg: UpstreamConfig =
            serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigError {
                field: e.path().to_string(),
                message: e.into_inner().to_string(),
            })?;
        cfg.validate("upstream")?;
        Ok(cfg)
    }

    #[test]
    fn defaults_match_the_issue() {
        let c = parse("{}").expect("defaults are valid");
        assert_eq!(c.unhealthy_after, 3);
        assert_eq!(c.cas_max_retries, 8);
        assert_eq!(c.breaker.failure_threshold, 5);
        assert_eq!(c.breaker.reset_timeout_ms, 30_000);
        assert_eq!(c.breaker.half_open_max_probes, 1);
        assert_eq!(c.breaker.success_threshold, 3);
        assert!(c.breaker.counts(FailureKind::Timeout));
        assert!(c.breaker.counts(FailureKind::ConnectFailure));
        assert!(c.breaker.counts(FailureKind::Reset));
        assert!(c.breaker.counts(FailureKind::Http5xx));
        assert!(!c.breaker.counts(FailureKind::JsonrpcError));
        assert!(!c.breaker.counts(FailureKind::ToolError));
        assert!(!c.breaker.counts(FailureKind::Http4xx));
        assert!(!c.breaker.counts(FailureKind::Http429));
    }

    #[test]
    fn full_config_parses() {
        let c = parse(
            r#"{"unhealthy_after":2,"cas_max_retries":3,"breaker":{"failure_threshold":7,
                "error_rate":{"threshold":0.25,"window_secs":30,"min_calls":10},
                "reset_timeout_ms":1000,"max_reset_timeout_ms":8000,"jitter":0.2,
                "half_open_max_probes":2,"probe_timeout_ms":500,"success_threshold":1,
                "failure_kinds":["timeout","http_4xx","jsonrpc_error"]}}"#,
        )
        .expect("valid");
        assert_eq!(c.breaker.error_rate.as_ref().map(|e| e.min_calls), Some(10));
        assert!(
            c.breaker.counts(FailureKind::Http429),
            "http_4xx covers 429"
        );
        assert!(c.breaker.counts(FailureKind::JsonrpcError));
        assert!(!c.breaker.counts(FailureKind::Http5xx));
        assert_eq!(c.breaker.window_bucket_us(), 3_000_000);
    }

    fn error_field(json: &str) -> String {
        parse(json).expect_err("must be refused").field
    }

    #[test]
    fn errors_name_the_bad_field() {
        let cases = [
            (r#"{"unhealthy_after":0}"#, "upstream.unhealthy_after"),
            (r#"{"cas_max_retries":1000}"#, "upstream.cas_max_retries"),
            (
                r#"{"breaker":{"failure_threshold":0}}"#,
                "upstream.breaker.failure_threshold",
            ),
            (
                r#"{"breaker":{"error_rate":{"threshold":1.5}}}"#,
                "upstream.breaker.error_rate.threshold",
            ),
            (
                r#"{"breaker":{"error_rate":{"threshold":0}}}"#,
                "upstream.breaker.error_rate.threshold",
            ),
            (
                r#"{"breaker":{"error_rate":{"window_secs":0}}}"#,
                "upstream.breaker.error_rate.window_secs",
            ),
            (
                r#"{"breaker":{"error_rate":{"min_calls":0}}}"#,
                "upstream.breaker.error_rate.min_calls",
            ),
            (
                r#"{"breaker":{"reset_timeout_ms":0}}"#,
                "upstream.breaker.reset_timeout_ms",
            ),
            (
                r#"{"breaker":{"max_reset_timeout_ms":10}}"#,
                "upstream.breaker.max_reset_timeout_ms",
            ),
            (r#"{"breaker":{"jitter":1.0}}"#, "upstream.breaker.jitter"),
            (r#"{"breaker":{"jitter":-0.1}}"#, "upstream.breaker.jitter"),
            (
                r#"{"breaker":{"half_open_max_probes":0}}"#,
                "upstream.breaker.half_open_max_probes",
            ),
            (
                r#"{"breaker":{"half_open_max_probes":17}}"#,
                "upstream.breaker.half_open_max_probes",
            ),
            (
                r#"{"breaker":{"probe_timeout_ms":0}}"#,
                "upstream.breaker.probe_timeout_ms",
            ),
            (
                r#"{"breaker":{"success_threshold":0}}"#,
                "upstream.breaker.success_threshold",
            ),
            (
                r#"{"breaker":{"failure_kinds":[]}}"#,
                "upstream.breaker.failure_kinds",
            ),
            // Serde errors carry their own path (the caller prefixes it).
            (
                r#"{"breaker":{"failure_kinds":["oops"]}}"#,
                "breaker.failure_kinds[0]",
            ),
            (r#"{"breaker":{"treshold":1}}"#, "breaker.treshold"),
        ];
        for (json, field) in cases {
            assert_eq!(error_field(json), field, "{json}");
        }
    }

    #[test]
    fn validate_without_prefix() {
        let c = UpstreamConfig {
            unhealthy_after: 0,
            ..UpstreamConfig::default()
        };
        assert_eq!(
            c.validate("").expect_err("invalid").field,
            "unhealthy_after"
        );
    }

    #[test]
    fn kinds_from_http_status() {
        assert_eq!(FailureKind::from_http_status(200), None);
        assert_eq!(FailureKind::from_http_status(302), None);
        assert_eq!(
            FailureKind::from_http_status(404),
            Some(FailureKind::Http4xx)
        );
        assert_eq!(
            FailureKind::from_http_status(429),
            Some(FailureKind::Http429)
        );
        assert_eq!(
            FailureKind::from_http_status(503),
            Some(FailureKind::Http5xx)
        );
        for k in FailureKind::ALL {
            assert_eq!(FailureKind::from_code(k.code()), Some(k));
            let json = serde_json::to_string(&k).expect("serializes");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(FailureKind::from_code(0), None);
    }
}
