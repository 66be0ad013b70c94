//! host-collector: the filter's companion service. Layers, top to bottom:
//! `http` (auth, limits, routes) -> `ingest` (parse, dedupe, status) -> `queue` (byte budget;
//! beside it the optional on-disk `spool` of acknowledged events) -> `writer` (ordered
//! batches, retry) -> `store` (MySQL/MariaDB or SQLite); beside them `config`, `logging`,
//! `metrics`, `health`, `overload`, `query` and `retention`, and the ingest observers
//! `accounting` (per-source loss) and `red` (MCP operation metrics), and the optional `otlp`
//! exporter (its own tasks behind a bounded channel); `ui` serves the audit view; `app` wires
//! them up.

pub mod accounting;
pub mod app;
pub mod config;
pub mod event;
pub mod health;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod otlp;
pub mod overload;
pub mod query;
pub mod queue;
pub mod red;
pub mod retention;
pub mod spool;
pub mod store;
pub mod ui;
pub mod writer;
