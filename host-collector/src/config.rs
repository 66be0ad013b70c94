//! Configuration: every flag with its environment variable, grouped per layer (`HttpArgs`,
//! `IngestArgs`, `BufferArgs`, `WriterArgs`, `StoreArgs`, `HealthArgs`, `RetentionArgs`,
//! `OtlpArgs`, `LogArgs`, flattened into `Config`; one `--help` heading each), value parsing
//! with clear errors, each group turned into its layer's typed config, and the redacted list
//! of effective settings logged at startup. The top of the crate: only `app` and `main` use it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::accounting::Accounting;
use crate::buffer::spool::SpoolConfig;
use crate::buffer::BufferConfig;
use crate::health::HealthConfig;
use crate::http::Auth;
use crate::ingest::IngestLimits;
pub use crate::logging::LogFormat;
use crate::otlp::sender::Endpoint;
use crate::otlp::OtlpSettings;
use crate::overload::Limiter;
use crate::red::RedMetrics;
use crate::retention::RetentionConfig;
use crate::store::{redact_url, StoreOptions};
use crate::writer::WriterConfig;

/// Shortest bearer token accepted: anything shorter is guessable.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "host-collector",
    version,
    about = "Collects MCP gateway events from the Envoy filter and stores them in MySQL/MariaDB or SQLite"
)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpArgs,

    #[command(flatten)]
    pub ingest: IngestArgs,

    #[command(flatten)]
    pub buffer: BufferArgs,

    #[command(flatten)]
    pub writer: WriterArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub health: HealthArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,

    #[command(flatten)]
    pub otlp: OtlpArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// The main listener and the metrics listener: addresses, auth, body size, concurrency.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpArgs {
    /// Ingest, query and health listener.
    #[arg(long, env = "COLLECTOR_LISTEN", default_value = "127.0.0.1:9400")]
    pub listen: SocketAddr,

    /// Prometheus metrics listener (kept apart from the ingest port).
    #[arg(
        long,
        env = "COLLECTOR_METRICS_LISTEN",
        default_value = "127.0.0.1:9401"
    )]
    pub metrics_listen: SocketAddr,

    /// Bearer token accepted for ingest and for queries (one token for both; or use the
    /// scoped tokens below). One of --token / --ingest-token is required unless
    /// --insecure-no-auth.
    #[arg(long, env = "COLLECTOR_TOKEN", hide_env_values = true, value_parser = parse_token,
          required_unless_present_any = ["insecure_no_auth", "ingest_token"])]
    pub token: Option<String>,

    /// A bearer token that may only send events (`POST /v1/logs`): the filters'. Repeat the
    /// flag (or comma-separate the env) to accept several while rotating.
    #[arg(long, env = "COLLECTOR_INGEST_TOKENS", hide_env_values = true, value_delimiter = ',',
          value_parser = parse_token)]
    pub ingest_token: Vec<String>,

    /// A bearer token that may only read: the query API, accounting, upstream health, the
    /// audit view and detailed `/health`. Repeatable, like --ingest-token.
    #[arg(long, env = "COLLECTOR_QUERY_TOKENS", hide_env_values = true, value_delimiter = ',',
          value_parser = parse_token)]
    pub query_token: Vec<String>,

    /// Serve the main listener over TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "COLLECTOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "COLLECTOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Accept requests without a token: for local experiments only.
    #[arg(long, env = "COLLECTOR_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Largest accepted request body (e.g. 4MiB).
    #[arg(long, env = "COLLECTOR_MAX_BODY_BYTES", default_value = "4MiB", value_parser = parse_bytes)]
    pub max_body_bytes: usize,

    /// Concurrent request cap (default: 4 x CPUs).
    #[arg(long, env = "COLLECTOR_MAX_CONCURRENT_REQUESTS",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_requests: Option<u32>,

    /// Longest wait for a request slot before answering 503.
    #[arg(long, env = "COLLECTOR_MAX_CONCURRENT_REQUESTS_WAIT_TIME", default_value = "1s", value_parser = parse_duration)]
    pub max_concurrent_requests_wait_time: Duration,

    /// The gateway's upstream health endpoint (the filter's `health_path` on Envoy, e.g.
    /// http://127.0.0.1:10000/.well-known/mcp-gateway/health), shown by the audit view
    /// through `GET /v1/upstreams`.
    #[arg(long, env = "COLLECTOR_GATEWAY_HEALTH_URL", value_parser = parse_health_url)]
    pub gateway_health_url: Option<String>,
}

/// Dedupe, status records and the ingest observers' label bounds.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Ingest")]
pub struct IngestArgs {
    /// Secret key of keyed credential fingerprints (HMAC-SHA256, `hmac-sha256:`), for raw
    /// credentials found in lines: the same as the filters' `fingerprint_key` so both give a
    /// credential one fingerprint. Without it such fingerprints are unkeyed (a loud warning).
    #[arg(long, env = "COLLECTOR_FINGERPRINT_KEY", hide_env_values = true,
          value_parser = parse_fingerprint_key)]
    pub fingerprint_key: Option<String>,

    /// How often this collector merges its filters' status (emitted, drops) into the store,
    /// for `GET /v1/accounting?from=store` (right across several collectors).
    #[arg(long, env = "COLLECTOR_STATUS_FLUSH_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub status_flush_interval: Duration,

    /// Sequence numbers remembered per source for dedupe before the queue.
    #[arg(long, env = "COLLECTOR_DEDUPE_WINDOW", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    pub dedupe_window: u64,

    /// Sources tracked for dedupe and status records (least recently seen forgotten) and for
    /// loss accounting (the first ones kept, later ones folded into "_other").
    #[arg(long, env = "COLLECTOR_MAX_SOURCES", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_sources: u64,

    /// Distinct filter drop reasons exposed as labels (extras fold into "other").
    #[arg(long, env = "COLLECTOR_MAX_DROP_REASONS", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max_drop_reasons: u64,

    /// Distinct `instance` label values of the MCP operation metrics (extras fold into "_other").
    #[arg(long, env = "COLLECTOR_MAX_INSTANCE_LABELS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_instance_labels: u64,

    /// Distinct `tool` label values per instance (extras fold into "_other").
    #[arg(long, env = "COLLECTOR_MAX_TOOL_LABELS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_tool_labels: u64,
}

/// The in-memory queue and the optional disk spool.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Buffer")]
pub struct BufferArgs {
    /// Memory budget of the queue (event bytes plus a fixed per-entry overhead).
    #[arg(long, env = "COLLECTOR_QUEUE_BUDGET", default_value = "200MiB", value_parser = parse_bytes)]
    pub queue_budget: usize,

    /// Directory of the on-disk spool: accepted events are appended there before the reply,
    /// so a collector killed before writing them replays them at its next start. Off when
    /// unset (a crash then loses what was acknowledged but not yet written).
    #[arg(long, env = "COLLECTOR_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Size at which a spool segment file is sealed and a new one started.
    #[arg(long, env = "COLLECTOR_SPOOL_SEGMENT_BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    pub spool_segment_bytes: usize,

    /// fdatasync the spool on every ingest request: survives power loss, costs a disk flush
    /// per request. Without it the spool survives the process dying, not the machine.
    #[arg(long, env = "COLLECTOR_SPOOL_FSYNC")]
    pub spool_fsync: bool,
}

/// Batches, retries and the shutdown drain.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Writer")]
pub struct WriterArgs {
    /// Most rows per write transaction.
    #[arg(long, env = "COLLECTOR_BATCH_MAX_ROWS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_max_rows: u32,

    /// Most bytes per write transaction (at least one row is always written).
    #[arg(long, env = "COLLECTOR_BATCH_MAX_BYTES", default_value = "4MiB", value_parser = parse_bytes)]
    pub batch_max_bytes: usize,

    /// First retry delay after a failed write (doubles up to --retry-max-backoff, with jitter).
    #[arg(long, env = "COLLECTOR_RETRY_INITIAL_BACKOFF", default_value = "100ms", value_parser = parse_duration)]
    pub retry_initial_backoff: Duration,

    #[arg(long, env = "COLLECTOR_RETRY_MAX_BACKOFF", default_value = "10s", value_parser = parse_duration)]
    pub retry_max_backoff: Duration,

    /// Bound on one batch write; a hung connection becomes a retry.
    #[arg(long, env = "COLLECTOR_DB_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub db_write_timeout: Duration,

    /// At SIGTERM/SIGINT, time allowed to write out the queue; the rest counts as dropped.
    #[arg(long, env = "COLLECTOR_DRAIN_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Consecutive refusals (the database answered and rejected the batch: a constraint, a
    /// trigger, the schema) after which the batch is split to find the rows it refuses;
    /// those go to `mcp_dead_letters`, the rest is written in order.
    #[arg(long, env = "COLLECTOR_ISOLATE_AFTER_REFUSALS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub isolate_after_refusals: u32,
}

/// The database and its connection pool.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Store")]
pub struct StoreArgs {
    /// mysql://user:pass@host:port/db or sqlite://path (file created if missing).
    #[arg(
        long,
        env = "COLLECTOR_DATABASE_URL",
        default_value = "sqlite://host-collector.db"
    )]
    pub database_url: String,

    /// Database connections (the writer uses one; queries, pings and retention share the rest).
    #[arg(long, env = "COLLECTOR_DB_MAX_CONNECTIONS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(2..=100))]
    pub db_max_connections: u32,

    /// Time to wait for a database connection before the operation counts as failed.
    #[arg(long, env = "COLLECTOR_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_acquire_timeout: Duration,
}

/// When `/health` turns 503, and the database ping.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Health")]
pub struct HealthArgs {
    /// Queue fill ratio at which /health reports 503.
    #[arg(long, env = "COLLECTOR_HEALTH_QUEUE_THRESHOLD", default_value_t = 0.9, value_parser = parse_ratio)]
    pub health_queue_threshold: f64,

    /// Interval of the background database ping.
    #[arg(long, env = "COLLECTOR_HEALTH_CHECK_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub health_check_interval: Duration,

    /// Saturation lasting this long turns /health into 503.
    #[arg(long, env = "COLLECTOR_MAX_CONCURRENT_REQUESTS_HEALTH_WAIT_TIME", default_value = "5s", value_parser = parse_duration)]
    pub max_concurrent_requests_health_wait_time: Duration,
}

/// Deleting old rows.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Retention")]
pub struct RetentionArgs {
    /// Delete rows older than this (e.g. 30d); off when absent.
    #[arg(long, env = "COLLECTOR_RETENTION", value_parser = parse_duration)]
    pub retention: Option<Duration>,

    #[arg(long, env = "COLLECTOR_RETENTION_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub retention_interval: Duration,

    /// Rows per retention DELETE, so deletes never hold long locks.
    #[arg(long, env = "COLLECTOR_RETENTION_BATCH", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub retention_batch: u32,
}

/// Spans and metrics to an OTLP/HTTP endpoint.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "OTLP export")]
pub struct OtlpArgs {
    /// OTLP/HTTP endpoint (base URL, `http://host:port[/path]`): spans go to `/v1/traces`,
    /// metrics to `/v1/metrics`, as protobuf. Export is off when unset.
    #[arg(long, env = "COLLECTOR_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,

    /// Header sent with every export request, `name=value` (repeatable; the env variable takes
    /// a comma-separated list). Values are never logged.
    #[arg(long = "otlp-header", env = "COLLECTOR_OTLP_HEADERS", hide_env_values = true,
          value_delimiter = ',', value_parser = parse_header)]
    pub otlp_headers: Vec<(String, String)>,

    /// Share of traces exported as spans, 0..1, decided by trace id (metrics see everything).
    #[arg(long, env = "COLLECTOR_OTLP_SAMPLING_RATIO", default_value_t = 1.0, value_parser = parse_sampling_ratio)]
    pub otlp_sampling_ratio: f64,

    /// `service.name` of the exported resource.
    #[arg(
        long,
        env = "COLLECTOR_OTLP_SERVICE_NAME",
        default_value = "mcp-gateway"
    )]
    pub otlp_service_name: String,

    /// Events the channel from ingest to the exporter holds; beyond it they are dropped and
    /// counted (ingest never waits).
    #[arg(long, env = "COLLECTOR_OTLP_QUEUE_EVENTS", default_value_t = 16_384,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub otlp_queue_events: u32,

    /// Most spans per export request.
    #[arg(long, env = "COLLECTOR_OTLP_MAX_BATCH_SPANS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub otlp_max_batch_spans: u32,

    /// Encoded requests waiting for the sender; a batch that finds it full is dropped.
    #[arg(long, env = "COLLECTOR_OTLP_MAX_PENDING_BATCHES", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub otlp_max_pending_batches: u32,

    /// A non-empty span batch is sent at least this often.
    #[arg(long, env = "COLLECTOR_OTLP_FLUSH_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub otlp_flush_interval: Duration,

    /// Bound on one export request (connect included); then it is dropped as `timeout`.
    #[arg(long, env = "COLLECTOR_OTLP_EXPORT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub otlp_export_timeout: Duration,

    /// Interval of the metrics export.
    #[arg(long, env = "COLLECTOR_OTLP_METRICS_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub otlp_metrics_interval: Duration,

    /// Attribute sets per OTLP histogram; later ones share one overflow series.
    #[arg(long, env = "COLLECTOR_OTLP_MAX_SERIES", default_value_t = 2000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub otlp_max_series: u32,

    /// Open MCP sessions tracked for `mcp.server.session.duration` (the oldest is forgotten).
    #[arg(long, env = "COLLECTOR_OTLP_MAX_SESSIONS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub otlp_max_sessions: u32,
}

/// Log lines on stdout.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log format on stdout.
    #[arg(
        long,
        env = "LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value = "logfmt"
    )]
    pub log_format: LogFormat,

    /// Minimum level logged: error, warn, info, debug or trace.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: tracing::Level,
}

impl HttpArgs {
    /// The concurrency cap: the flag, or 4 x CPUs.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent_requests.map_or_else(
            || 4 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n as usize,
        )
    }

    pub fn limiter(&self) -> Arc<Limiter> {
        Limiter::new(
            self.max_concurrent(),
            self.max_concurrent_requests_wait_time,
        )
    }

    pub fn auth(&self) -> Auth {
        if self.insecure_no_auth {
            return Auth::Insecure;
        }
        Auth::new(self.token.as_ref(), &self.ingest_token, &self.query_token)
    }
}

impl IngestArgs {
    pub fn limits(&self) -> IngestLimits {
        IngestLimits {
            dedupe_window: self.dedupe_window,
            dedupe_max_sources: self.max_sources as usize,
            status_max_sources: self.max_sources as usize,
            status_max_reasons: self.max_drop_reasons as usize,
            fingerprint_key: self
                .fingerprint_key
                .as_ref()
                .map(|k| k.as_bytes().to_vec().into_boxed_slice()),
        }
    }

    /// The per-source loss accounting, bounded like the status tracker.
    pub fn accounting(&self) -> Accounting {
        Accounting::new(self.max_sources as usize, self.max_drop_reasons as usize)
    }

    pub fn red_metrics(&self) -> RedMetrics {
        RedMetrics::new(
            self.max_instance_labels as usize,
            self.max_tool_labels as usize,
        )
    }
}

impl BufferArgs {
    pub fn config(&self) -> BufferConfig {
        BufferConfig {
            budget: self.queue_budget,
            spool: self.spool_dir.as_ref().map(|dir| SpoolConfig {
                dir: dir.clone(),
                segment_bytes: self.spool_segment_bytes as u64,
                fsync: self.spool_fsync,
            }),
        }
    }
}

impl WriterArgs {
    pub fn config(&self) -> WriterConfig {
        WriterConfig {
            batch_max_rows: self.batch_max_rows as usize,
            batch_max_bytes: self.batch_max_bytes,
            initial_backoff: self.retry_initial_backoff,
            max_backoff: self.retry_max_backoff,
            write_timeout: self.db_write_timeout,
            drain_timeout: self.drain_timeout,
            isolate_after_refusals: self.isolate_after_refusals,
        }
    }
}

impl StoreArgs {
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
        }
    }
}

impl HealthArgs {
    pub fn config(&self) -> HealthConfig {
        HealthConfig {
            queue_threshold: self.health_queue_threshold,
            overload_after: self.max_concurrent_requests_health_wait_time,
        }
    }
}

impl RetentionArgs {
    /// `None` when retention is off.
    pub fn config(&self) -> Option<RetentionConfig> {
        self.retention.map(|max_age| RetentionConfig {
            max_age,
            interval: self.retention_interval,
            batch: self.retention_batch,
        })
    }
}

impl OtlpArgs {
    /// The export settings, when an endpoint is configured.
    pub fn settings(&self) -> Result<Option<OtlpSettings>, String> {
        let Some(url) = &self.otlp_endpoint else {
            return Ok(None);
        };
        Ok(Some(OtlpSettings {
            endpoint: Endpoint::parse(url, &self.otlp_headers)?,
            service_name: self.otlp_service_name.clone(),
            sampling_ratio: self.otlp_sampling_ratio,
            queue_events: self.otlp_queue_events as usize,
            max_batch_spans: self.otlp_max_batch_spans as usize,
            max_pending_batches: self.otlp_max_pending_batches as usize,
            flush_interval: self.otlp_flush_interval,
            export_timeout: self.otlp_export_timeout,
            metrics_interval: self.otlp_metrics_interval,
            max_series: self.otlp_max_series as usize,
            max_sessions: self.otlp_max_sessions as usize,
        }))
    }
}

impl Config {
    /// Every effective setting, secrets redacted, for the startup log.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let d = |v: Duration| format!("{v:?}");
        let token = match &self.http.token {
            Some(t) => format!("set ({} chars)", t.len()),
            None => "none (insecure, no auth)".into(),
        };
        vec![
            ("listen", self.http.listen.to_string()),
            ("metrics_listen", self.http.metrics_listen.to_string()),
            ("database_url", redact_url(&self.store.database_url)),
            ("token", token),
            (
                "ingest_tokens",
                format!("{} set", self.http.ingest_token.len()),
            ),
            (
                "query_tokens",
                format!("{} set", self.http.query_token.len()),
            ),
            (
                "fingerprint_key",
                if self.ingest.fingerprint_key.is_some() {
                    "set".into()
                } else {
                    "none (unkeyed fingerprints)".into()
                },
            ),
            ("insecure_no_auth", self.http.insecure_no_auth.to_string()),
            (
                "tls",
                self.http
                    .tls_cert
                    .as_ref()
                    .map_or("off".into(), |c| format!("on ({})", c.display())),
            ),
            ("max_body_bytes", self.http.max_body_bytes.to_string()),
            ("queue_budget", self.buffer.queue_budget.to_string()),
            (
                "spool_dir",
                self.buffer
                    .spool_dir
                    .as_ref()
                    .map_or_else(|| "off".into(), |d| d.display().to_string()),
            ),
            (
                "spool_segment_bytes",
                self.buffer.spool_segment_bytes.to_string(),
            ),
            ("spool_fsync", self.buffer.spool_fsync.to_string()),
            ("batch_max_rows", self.writer.batch_max_rows.to_string()),
            ("batch_max_bytes", self.writer.batch_max_bytes.to_string()),
            (
                "retry_initial_backoff",
                d(self.writer.retry_initial_backoff),
            ),
            ("retry_max_backoff", d(self.writer.retry_max_backoff)),
            ("db_write_timeout", d(self.writer.db_write_timeout)),
            (
                "db_max_connections",
                self.store.db_max_connections.to_string(),
            ),
            ("db_acquire_timeout", d(self.store.db_acquire_timeout)),
            ("drain_timeout", d(self.writer.drain_timeout)),
            (
                "max_concurrent_requests",
                self.http.max_concurrent().to_string(),
            ),
            (
                "max_concurrent_requests_wait_time",
                d(self.http.max_concurrent_requests_wait_time),
            ),
            (
                "max_concurrent_requests_health_wait_time",
                d(self.health.max_concurrent_requests_health_wait_time),
            ),
            (
                "health_queue_threshold",
                self.health.health_queue_threshold.to_string(),
            ),
            (
                "health_check_interval",
                d(self.health.health_check_interval),
            ),
            ("dedupe_window", self.ingest.dedupe_window.to_string()),
            ("max_sources", self.ingest.max_sources.to_string()),
            ("max_drop_reasons", self.ingest.max_drop_reasons.to_string()),
            (
                "max_instance_labels",
                self.ingest.max_instance_labels.to_string(),
            ),
            ("max_tool_labels", self.ingest.max_tool_labels.to_string()),
            (
                "retention",
                self.retention.retention.map_or_else(|| "off".into(), d),
            ),
            (
                "gateway_health_url",
                self.http
                    .gateway_health_url
                    .clone()
                    .unwrap_or_else(|| "off".into()),
            ),
            (
                "otlp_endpoint",
                self.otlp
                    .otlp_endpoint
                    .clone()
                    .unwrap_or_else(|| "off".into()),
            ),
            (
                "otlp_headers",
                self.otlp
                    .otlp_headers
                    .iter()
                    .map(|(name, _)| format!("{name}=***"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "otlp_sampling_ratio",
                self.otlp.otlp_sampling_ratio.to_string(),
            ),
            ("otlp_service_name", self.otlp.otlp_service_name.clone()),
            ("otlp_queue_events", self.otlp.otlp_queue_events.to_string()),
            (
                "otlp_max_batch_spans",
                self.otlp.otlp_max_batch_spans.to_string(),
            ),
            (
                "otlp_max_pending_batches",
                self.otlp.otlp_max_pending_batches.to_string(),
            ),
            ("otlp_flush_interval", d(self.otlp.otlp_flush_interval)),
            ("otlp_export_timeout", d(self.otlp.otlp_export_timeout)),
            ("otlp_metrics_interval", d(self.otlp.otlp_metrics_interval)),
            ("otlp_max_series", self.otlp.otlp_max_series.to_string()),
            ("otlp_max_sessions", self.otlp.otlp_max_sessions.to_string()),
            ("retention_interval", d(self.retention.retention_interval)),
            (
                "retention_batch",
                self.retention.retention_batch.to_string(),
            ),
            (
                "log_format",
                format!("{:?}", self.log.log_format).to_lowercase(),
            ),
            ("log_level", self.log.log_level.to_string().to_lowercase()),
        ]
    }
}

fn parse_fingerprint_key(s: &str) -> Result<String, String> {
    if s.len() < mcp_contract::fingerprint::MIN_KEY_LEN {
        return Err(format!(
            "the fingerprint key must be at least {} characters (a random secret)",
            mcp_contract::fingerprint::MIN_KEY_LEN
        ));
    }
    Ok(s.to_string())
}

fn parse_token(s: &str) -> Result<String, String> {
    if s.chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "the token must be at least {MIN_TOKEN_LEN} characters"
        ));
    }
    Ok(s.to_string())
}

fn parse_health_url(s: &str) -> Result<String, String> {
    crate::ui::upstreams::parse(s).map(|_| s.to_string())
}

fn parse_otlp_endpoint(s: &str) -> Result<String, String> {
    Endpoint::parse(s, &[]).map(|_| s.to_string())
}

/// `name=value`, both valid in an HTTP header.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| "expected name=value".to_string())?;
    let (name, value) = (name.trim().to_string(), value.trim().to_string());
    Endpoint::parse("http://x:1", &[(name.clone(), value.clone())])
        .map_err(|_| format!("header {name:?}: not a valid HTTP header name and value"))?;
    Ok((name, value))
}

fn parse_sampling_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a ratio in [0, 1]")),
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("{s:?} is not a ratio in (0, 1]")),
    }
}

/// Splits "200MiB" into (200, "MiB").
fn split_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..at], s[at..].trim())
}

/// Sizes like `4096`, `512KiB`, `200MiB`, `1GiB` (also KB/MB/GB as powers of 1000).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let (number, unit) = split_unit(s);
    if number.is_empty() {
        return Err(format!("{s:?} is not a size such as 4096 or 200MiB"));
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{s:?}: unknown size unit (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 4096 or 200MiB"))?;
    let bytes = n
        .checked_mul(multiplier)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{s:?}: size must be positive and fit in memory"))?;
    usize::try_from(bytes).map_err(|_| format!("{s:?} is too large"))
}

/// Durations like `250ms`, `5s`, `2m`, `1h`, `30d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = split_unit(s);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 500ms, 5s, 2m, 1h or 30d"))?;
    let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => {
            return Err(format!(
                "{s:?}: unknown duration unit (use ms, s, m, h or d)"
            ))
        }
    };
    if d.is_zero() {
        return Err(format!("{s:?}: duration must be positive"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_durations() {
        assert_eq!(parse_bytes("200MiB"), Ok(200 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1KB"), Ok(1000));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("0").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn groups_keep_every_flag_and_map_to_layer_configs() {
        use clap::CommandFactory;
        Config::command().debug_assert();
        let c = Config::try_parse_from([
            "host-collector",
            "--insecure-no-auth",
            "--spool-dir",
            "/tmp/spool",
            "--batch-max-rows",
            "7",
            "--retention",
            "30d",
        ])
        .expect("valid flags");
        let buffer = c.buffer.config();
        assert_eq!(buffer.budget, 200 << 20);
        assert!(buffer.spool.is_some_and(|s| s.segment_bytes == 16 << 20));
        assert_eq!(c.writer.config().batch_max_rows, 7);
        assert!(c.retention.config().is_some());
        assert!(c.otlp.settings().expect("no endpoint").is_none());
    }

    #[test]
    fn token_is_required_unless_insecure() {
        let err = Config::try_parse_from(["host-collector"]).expect_err("no token");
        assert!(err.to_string().contains("--token"), "{err}");
        let short = Config::try_parse_from(["host-collector", "--token", "short"]);
        assert!(short.is_err());
        let ok = Config::try_parse_from(["host-collector", "--insecure-no-auth"]);
        assert!(ok.is_ok());
        let scoped = Config::try_parse_from([
            "host-collector",
            "--ingest-token",
            "ingest-0123456789ab",
            "--query-token",
            "query-0123456789abc",
        ]);
        assert!(scoped.is_ok(), "an ingest token is enough");
        let query_only =
            Config::try_parse_from(["host-collector", "--query-token", "query-0123456789abc"]);
        assert!(query_only.is_err(), "nobody could send events");
    }

    #[test]
    fn describe_never_shows_the_token() {
        let c = Config::try_parse_from([
            "host-collector",
            "--token",
            "0123456789abcdef-secret",
            "--database-url",
            "mysql://u:pw@h/db",
        ])
        .expect("valid flags");
        let text = format!("{:?}", c.describe());
        assert!(!text.contains("secret"));
        assert!(!text.contains("pw@"));
    }

    #[test]
    fn otlp_flags_are_checked_and_header_values_never_described() {
        let c = Config::try_parse_from([
            "host-collector",
            "--insecure-no-auth",
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
            "--otlp-header",
            "x-api-key=otlp-secret-value",
            "--otlp-sampling-ratio",
            "0.25",
        ])
        .expect("valid flags");
        assert_eq!(
            c.otlp.otlp_headers,
            [("x-api-key".into(), "otlp-secret-value".into())]
        );
        let text = format!("{:?}", c.describe());
        assert!(text.contains("x-api-key=***"), "{text}");
        assert!(!text.contains("otlp-secret-value"));
        for bad in [
            ["--otlp-endpoint", "https://otel:4318"],
            ["--otlp-header", "no-equals-sign"],
            ["--otlp-sampling-ratio", "1.5"],
        ] {
            let args = ["host-collector", "--insecure-no-auth", bad[0], bad[1]];
            assert!(Config::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_have_clear_errors() {
        let err = Config::try_parse_from([
            "host-collector",
            "--insecure-no-auth",
            "--queue-budget",
            "lots",
        ])
        .expect_err("bad size");
        assert!(err.to_string().contains("not a size"), "{err}");
    }
}
