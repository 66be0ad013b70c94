//! host-collector: the filter's companion service. Data flows down the layers
//! `http` (auth, limits, routes) -> `ingest` (parse, dedupe, status) -> `buffer` (the in-memory
//! `queue` with its byte budget, plus in the disk variant the `spool` of acknowledged events)
//! -> `writer` (ordered batches, retry) -> `store` (MySQL/MariaDB or SQLite), and no module imports one above it
//! (`tools/module_cycles.py` checks). Each layer reports what happens to it as events
//! (`internal_events`) into one registry at the bottom, which `metrics` renders for
//! Prometheus and `otlp::pipeline` for OTLP. Beside the layers: `config`, `logging`,
//! `health`, `overload`, `query` and `retention`, the ingest observers `accounting`
//! (per-source loss) and `red` (MCP operation metrics), the optional `otlp` exporter (its
//! own tasks behind a bounded channel) and `ui` (the audit view); `app` wires them up.
//! `import` is the `host-collector import` command (events recovered from Envoy's log);
//! `shared_accounting` answers the loss accounting from the store, for several collectors.

pub mod accounting;
pub mod app;
pub mod buffer;
pub mod config;
pub mod event;
pub mod health;
pub mod http;
pub mod import;
pub mod ingest;
pub mod internal_events;
pub mod logging;
pub mod metrics;
pub mod otlp;
pub mod overload;
pub mod query;
pub mod red;
pub mod retention;
pub mod shared_accounting;
pub mod store;
pub mod ui;
pub mod writer;
