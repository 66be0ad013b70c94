//! Plugin configuration: the JSON given in envoy.yaml, parsed and validated once in
//! `on_configure`. Every error names the offending field so Envoy can refuse the config with a
//! useful message; nothing here can fail at request time.

use crate::shipping::ShipConfig;
use crate::upstream::UpstreamConfig;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;

/// A configuration error that names the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid plugin config at `{}`: {}",
            self.field, self.message
        )
    }
}

impl ConfigError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Where the MCP instance id of a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InstanceSource {
    /// A request header, e.g. `x-mcp-instance`.
    Header(String),
    /// The first path segment after a prefix, e.g. `/mcp/` makes `/mcp/{instance}/...`.
    PathPrefix(String),
    /// Envoy's route name (`xds.route_name`).
    RouteName,
    /// Envoy's upstream cluster name (`xds.cluster_name`).
    ClusterName,
}

/// What to do when a request's instance cannot be resolved or is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingInstancePolicy {
    /// Answer locally with 404 and a JSON-RPC error; the upstream is not touched.
    Reject,
    /// Let the request through; the event still records it.
    Pass,
}

/// What to do with a request that is not valid MCP (JSON-RPC 2.0 over HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationPolicy {
    /// Answer locally with 400 and a JSON-RPC error object.
    Reject,
    /// Let it through and log `request.validation.failed`.
    Observe,
}

/// When a POST's headers wait for its body before going upstream. Holding costs Envoy no
/// measurable CPU (`make bench`, same run: 58.7 vs 59.0 µs per request); what it costs is
/// latency on large or slow request bodies, which `when_needed` avoids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldPolicy {
    /// Only when the policy must see the body first: `validation: reject` (a 400 replaces
    /// the request). Otherwise the request goes upstream at once and its body is classified
    /// as it passes.
    WhenNeeded,
    /// Every POST without SEP-2243 headers, until its body is classified: `_meta.traceparent`
    /// (SEP-414) then becomes the parent when no `traceparent` header came.
    Always,
}

pub use mcp_contract::Level;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawInstance {
    source: InstanceSource,
    allowed: Vec<String>,
    pattern: Option<String>,
    on_missing: MissingInstancePolicy,
}

impl Default for RawInstance {
    fn default() -> Self {
        RawInstance {
            source: InstanceSource::ClusterName,
            allowed: Vec::new(),
            pattern: None,
            on_missing: MissingInstancePolicy::Pass,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawArguments {
    capture: bool,
    max_bytes: usize,
    redact_keys: Vec<String>,
    /// Replace string values that look like credentials (see `redact::looks_like_credential`)
    /// whatever their key.
    redact_credential_values: bool,
}

impl Default for RawArguments {
    fn default() -> Self {
        RawArguments {
            capture: false,
            max_bytes: 1024,
            redact_keys: DEFAULT_REDACT_KEYS.iter().map(|k| k.to_string()).collect(),
            redact_credential_values: true,
        }
    }
}

const DEFAULT_REDACT_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "authorization",
    "access_token",
    "refresh_token",
    "client_secret",
    "private_key",
    "cookie",
];

const DEFAULT_CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    instance: RawInstance,
    validation: ValidationPolicy,
    header_mismatch: ValidationPolicy,
    hold_request: HoldPolicy,
    max_body_bytes: usize,
    max_batch_elements: usize,
    /// Slots of the shared ring of parked legacy requests (`max_pending_per_vm` before it
    /// was shared by all workers).
    #[serde(alias = "max_pending_per_vm")]
    max_pending: usize,
    trace_response_header: Option<String>,
    credential_headers: Vec<String>,
    fingerprint_salt: String,
    /// Secret key of keyed (HMAC-SHA256) credential fingerprints.
    fingerprint_key: Option<String>,
    arguments: RawArguments,
    min_level: Level,
    filter_state: bool,
    sse_messages_path: String,
    collector: Option<ShipConfig>,
    upstream: Option<UpstreamConfig>,
    health_path: Option<String>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            instance: RawInstance::default(),
            validation: ValidationPolicy::Observe,
            header_mismatch: ValidationPolicy::Observe,
            hold_request: HoldPolicy::Always,
            max_body_bytes: 256 * 1024,
            max_batch_elements: 256,
            max_pending: 1024,
            trace_response_header: Some("x-mcp-trace-id".to_string()),
            credential_headers: DEFAULT_CREDENTIAL_HEADERS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            fingerprint_salt: String::new(),
            fingerprint_key: None,
            arguments: RawArguments::default(),
            min_level: Level::Info,
            filter_state: false,
            sse_messages_path: "/message".to_string(),
            collector: None,
            upstream: None,
            health_path: None,
        }
    }
}

/// How instance ids are recognised as legitimate.
#[derive(Debug, Clone)]
pub enum InstanceRule {
    /// Only these ids exist.
    Allowed(BTreeSet<String>),
    /// Ids must match this anchored pattern.
    Pattern(regex_lite::Regex),
    /// Operator-controlled sources (route/cluster names) need no rule.
    Any,
}

#[derive(Debug, Clone)]
pub struct InstanceConfig {
    pub source: InstanceSource,
    pub rule: InstanceRule,
    pub on_missing: MissingInstancePolicy,
}

/// How credentials become fingerprints (see `mcp_contract::fingerprint`).
#[derive(Clone, PartialEq, Eq)]
pub enum Fingerprinting {
    /// HMAC-SHA256 under a secret key: `hmac-sha256:` + 12 hex.
    Keyed(Box<[u8]>),
    /// SHA-256 over a salt (possibly empty) and the credential: `sha256:` + 12 hex, which
    /// anyone can compute for a guess. The filter warns at start.
    Unkeyed { salt: String },
}

impl fmt::Debug for Fingerprinting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        match self {
            Fingerprinting::Keyed(_) => f.write_str("Keyed(..)"),
            Fingerprinting::Unkeyed { salt } => {
                write!(f, "Unkeyed {{ salt: {} chars }}", salt.len())
            }
        }
    }
}

fn fingerprinting(key: Option<String>, salt: String) -> Result<Fingerprinting, ConfigError> {
    match key {
        None => Ok(Fingerprinting::Unkeyed { salt }),
        Some(_) if !salt.is_empty() => Err(ConfigError::new(
            "fingerprint_key",
            "set fingerprint_key or fingerprint_salt, not both (the key replaces the salt)",
        )),
        Some(key) if key.len() < mcp_contract::fingerprint::MIN_KEY_LEN => Err(ConfigError::new(
            "fingerprint_key",
            "must be at least 16 characters (a random secret, e.g. `openssl rand -hex 32`)",
        )),
        Some(key) => Ok(Fingerprinting::Keyed(key.into_bytes().into_boxed_slice())),
    }
}

#[derive(Debug, Clone)]
pub struct ArgumentCapture {
    pub enabled: bool,
    pub max_bytes: usize,
    /// Lower-cased keys whose values are replaced by `[REDACTED]`.
    pub redact_keys: BTreeSet<String>,
    /// Also replace string values that look like credentials, whatever their key.
    pub redact_credential_values: bool,
}

/// The validated plugin configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub instance: InstanceConfig,
    pub validation: ValidationPolicy,
    /// SEP-2243 `Mcp-Method` / `Mcp-Name` that disagree with the body: `observe` (an event;
    /// such requests go upstream before their body) or `reject` (they wait for their body,
    /// and a mismatch is answered 400 with the 2026-07-28 HeaderMismatch error, `-32020`).
    pub header_mismatch: ValidationPolicy,
    pub hold_request: HoldPolicy,
    /// Request and response bodies are inspected up to this many bytes.
    pub max_body_bytes: usize,
    /// Batch elements beyond this many are counted, not itemised.
    pub max_batch_elements: usize,
    /// Requests awaiting a response on another stream (legacy SSE), per VM.
    pub max_pending: usize,
    pub trace_response_header: Option<String>,
    /// Lower-cased header names that carry credentials, in priority order.
    pub credential_headers: Vec<String>,
    /// Bit `n` set when a credential header name is `n` bytes long (63: longer): a header
    /// whose length is not here is not a credential, without comparing names.
    pub credential_lengths: u64,
    pub fingerprinting: Fingerprinting,
    pub arguments: ArgumentCapture,
    pub min_level: Level,
    /// Mirror the classification into Envoy filter state (`wasm.mcp_*`), for access logs
    /// and RBAC: a few host calls per request, so only when asked for.
    pub filter_state: bool,
    /// Path suffix of the legacy HTTP+SSE transport's POST endpoint.
    pub sse_messages_path: String,
    /// Shipping to host-collector; without it events go to Envoy's log only.
    pub collector: Option<ShipConfig>,
    /// Per-upstream health and circuit breaker; off when absent.
    pub upstream: Option<UpstreamConfig>,
    /// Path of the filter's own health endpoint (needs `upstream`).
    pub health_path: Option<String>,
}

impl Config {
    /// Parses the plugin configuration; empty input means all defaults.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let trimmed = bytes.iter().all(|b| b.is_ascii_whitespace());
        if trimmed {
            return Config::from_raw(RawConfig::default());
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." || path == "?" {
                "(root)".to_string()
            } else {
                path
            };
            ConfigError::new(&field, e.into_inner().to_string())
        })?;
        Config::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        if raw.max_body_bytes == 0 || raw.max_body_bytes > 16 * 1024 * 1024 {
            return Err(ConfigError::new(
                "max_body_bytes",
                "must be between 1 and 16777216",
            ));
        }
        if raw.max_batch_elements == 0 {
            return Err(ConfigError::new("max_batch_elements", "must be at least 1"));
        }
        if !(1..=65_536).contains(&raw.max_pending) {
            return Err(ConfigError::new(
                "max_pending",
                "must be between 1 and 65536",
            ));
        }
        let trace_response_header = match raw.trace_response_header {
            Some(h) if h.is_empty() => None,
            Some(h) => Some(header_name("trace_response_header", &h)?),
            None => None,
        };
        let credential_headers = raw
            .credential_headers
            .iter()
            .enumerate()
            .map(|(i, h)| header_name(&format!("credential_headers[{i}]"), h))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(collector) = &raw.collector {
            collector.validate().map_err(|(field, message)| {
                ConfigError::new(&format!("collector.{field}"), message)
            })?;
        }
        if let Some(upstream) = &raw.upstream {
            upstream.validate("upstream")?;
        }
        match (&raw.health_path, &raw.upstream) {
            (Some(path), _) if !path.starts_with('/') => {
                return Err(ConfigError::new("health_path", "must start with '/'"))
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "health_path",
                    "needs `upstream` (health is tracked per upstream)",
                ))
            }
            _ => {}
        }
        if !raw.sse_messages_path.starts_with('/') {
            return Err(ConfigError::new("sse_messages_path", "must start with '/'"));
        }
        Ok(Config {
            instance: instance_config(raw.instance)?,
            validation: raw.validation,
            header_mismatch: raw.header_mismatch,
            hold_request: raw.hold_request,
            max_body_bytes: raw.max_body_bytes,
            max_batch_elements: raw.max_batch_elements,
            max_pending: raw.max_pending,
            trace_response_header,
            credential_lengths: credential_headers
                .iter()
                .fold(0, |mask, h| mask | 1u64 << h.len().min(63)),
            credential_headers,
            fingerprinting: fingerprinting(raw.fingerprint_key, raw.fingerprint_salt)?,
            arguments: ArgumentCapture {
                enabled: raw.arguments.capture,
                max_bytes: raw.arguments.max_bytes,
                redact_keys: raw
                    .arguments
                    .redact_keys
                    .iter()
                    .map(|k| k.to_ascii_lowercase())
                    .collect(),
                redact_credential_values: raw.arguments.redact_credential_values,
            },
            min_level: raw.min_level,
            filter_state: raw.filter_state,
            sse_messages_path: raw.sse_messages_path,
            collector: raw.collector,
            upstream: raw.upstream,
            health_path: raw.health_path,
        })
    }
}

fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(ConfigError::new(
            field,
            format!("`{name}` is not a valid HTTP header name"),
        ))
    }
}

fn instance_config(raw: RawInstance) -> Result<InstanceConfig, ConfigError> {
    match &raw.source {
        InstanceSource::Header(h) => {
            header_name("instance.source.header", h)?;
        }
        InstanceSource::PathPrefix(p) if !p.starts_with('/') || !p.ends_with('/') => {
            return Err(ConfigError::new(
                "instance.source.path_prefix",
                "must start and end with '/', e.g. \"/mcp/\"",
            ));
        }
        _ => {}
    }
    let client_controlled = matches!(
        raw.source,
        InstanceSource::Header(_) | InstanceSource::PathPrefix(_)
    );
    let rule = match (raw.allowed.is_empty(), raw.pattern) {
        (false, Some(_)) => {
            return Err(ConfigError::new(
                "instance.pattern",
                "give either `allowed` or `pattern`, not both",
            ))
        }
        (false, None) => InstanceRule::Allowed(raw.allowed.into_iter().collect()),
        (true, Some(p)) => InstanceRule::Pattern(anchored_pattern(&p)?),
        (true, None) if client_controlled => {
            // Ids chosen by clients must be bounded, or an attacker could mint endless ones.
            return Err(ConfigError::new(
                "instance.allowed",
                "a header or path source needs `allowed` or `pattern`",
            ));
        }
        (true, None) => InstanceRule::Any,
    };
    Ok(InstanceConfig {
        source: raw.source,
        rule,
        on_missing: raw.on_missing,
    })
}

fn anchored_pattern(pattern: &str) -> Result<regex_lite::Regex, ConfigError> {
    regex_lite::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| ConfigError::new("instance.pattern", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_defaults() {
        let c = Config::parse(b"  ").expect("defaults are valid");
        assert_eq!(c.max_body_bytes, 256 * 1024);
        assert_eq!(c.validation, ValidationPolicy::Observe);
        assert!(matches!(c.instance.rule, InstanceRule::Any));
        assert_eq!(c.credential_headers[0], "authorization");
        assert!(c.arguments.redact_keys.contains("password"));
        assert!(c.arguments.redact_keys.contains("x-api-key"));
        assert!(c.arguments.redact_keys.contains("api-key"));
        assert!(c.arguments.redact_credential_values, "on unless opted out");
        assert_eq!(
            c.min_level,
            Level::Info,
            "director.* (debug) events are opt-in"
        );
        assert!(!c.filter_state);
    }

    #[test]
    fn full_config_parses() {
        let c = Config::parse(
            br#"{"instance":{"source":{"path_prefix":"/mcp/"},"allowed":["a","b"],"on_missing":"reject"},
                "validation":"reject","max_body_bytes":1000,"trace_response_header":"X-Trace",
                "credential_headers":["Authorization"],"arguments":{"capture":true,"max_bytes":10,"redact_keys":["PIN"],"redact_credential_values":false},
                "min_level":"info"}"#,
        )
        .expect("valid");
        assert_eq!(
            c.instance.source,
            InstanceSource::PathPrefix("/mcp/".into())
        );
        assert_eq!(c.instance.on_missing, MissingInstancePolicy::Reject);
        assert_eq!(c.trace_response_header.as_deref(), Some("x-trace"));
        assert_eq!(c.credential_headers, vec!["authorization"]);
        assert!(c.arguments.redact_keys.contains("pin"));
        assert!(!c.arguments.redact_credential_values);
        assert_eq!(c.min_level, Level::Info);
    }

    #[test]
    fn a_fingerprint_key_replaces_the_salt_and_must_be_long() {
        let keyed = Config::parse(br#"{"fingerprint_key":"0123456789abcdef0123"}"#).expect("valid");
        assert!(matches!(keyed.fingerprinting, Fingerprinting::Keyed(_)));
        assert!(!format!("{keyed:?}").contains("0123456789abcdef0123"));
        let unkeyed = Config::parse(b"{}").expect("valid");
        assert_eq!(
            unkeyed.fingerprinting,
            Fingerprinting::Unkeyed {
                salt: String::new()
            }
        );
        assert_eq!(
            error_field(r#"{"fingerprint_key":"short"}"#),
            "fingerprint_key"
        );
        assert_eq!(
            error_field(r#"{"fingerprint_key":"0123456789abcdef0123","fingerprint_salt":"s"}"#),
            "fingerprint_key"
        );
    }

    fn error_field(json: &str) -> String {
        Config::parse(json.as_bytes())
            .expect_err("must be refused")
            .field
    }

    #[test]
    fn errors_name_the_bad_field() {
        assert_eq!(error_field(r#"{"validation":"rejct"}"#), "validation");
        assert_eq!(
            error_field(r#"{"instance":{"on_missing":"drop"}}"#),
            "instance.on_missing"
        );
        assert_eq!(error_field(r#"{"max_body_bytes":"big"}"#), "max_body_bytes");
        assert_eq!(error_field(r#"{"max_body_bytes":0}"#), "max_body_bytes");
        assert_eq!(
            error_field(r#"{"instance":{"source":{"header":"x-i"}}}"#),
            "instance.allowed"
        );
        assert_eq!(
            error_field(r#"{"instance":{"source":{"path_prefix":"mcp"},"allowed":["a"]}}"#),
            "instance.source.path_prefix"
        );
        assert_eq!(
            error_field(r#"{"instance":{"pattern":"(unclosed"}}"#),
            "instance.pattern"
        );
        assert_eq!(
            error_field(r#"{"credential_headers":["ok","bad header"]}"#),
            "credential_headers[1]"
        );
        assert_eq!(
            error_field(r#"{"trace_response_header":"a b"}"#),
            "trace_response_header"
        );
        assert_eq!(
            error_field(r#"{"sse_messages_path":"message"}"#),
            "sse_messages_path"
        );
        assert_eq!(error_field("{not json"), "(root)");
        assert_eq!(
            error_field(r#"{"collector":{"max_batch_events":0}}"#),
            "collector.max_batch_events"
        );
        assert_eq!(
            error_field(r#"{"collector":{"tokn":"x"}}"#),
            "collector.tokn"
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = Config::parse(br#"{"instance":{"sourse":"route_name"}}"#).expect_err("unknown");
        assert_eq!(err.field, "instance.sourse");
        assert!(err.message.contains("sourse"), "{}", err.message);
    }

    #[test]
    fn pattern_is_anchored() {
        let c = Config::parse(br#"{"instance":{"source":{"header":"x-i"},"pattern":"[a-z]+"}}"#)
            .expect("valid");
        let InstanceRule::Pattern(re) = &c.instance.rule else {
            panic!("pattern rule expected")
        };
        assert!(re.is_match("abc"));
        assert!(!re.is_match("abc1"));
        assert!(!re.is_match("1abc"));
    }
}
