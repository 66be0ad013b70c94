//! The one test harness of the workspace, a dev-dependency of the root package (filter,
//! end-to-end and reliability tests) and of host-collector. One module per job:
//!
//! | module | owns |
//! | --- | --- |
//! | [`paths`] | the workspace root, the target directory, built binaries, free ports, per-test directories |
//! | [`poll`] | waiting for a condition with a deadline (blocking and async) |
//! | [`process`] | child processes logging to files, stopped on drop |
//! | [`http`] | the HTTP/1.1 client every test uses |
//! | [`db`] | a MariaDB database per test, and a TCP proxy in front of MariaDB that cuts and restores connections |
//! | [`collector`] | host-collector as a process, in-process, and its NDJSON/metrics/ingest helpers |
//! | [`envoy`] | Envoy: its config with the filter, and a running instance |
//! | [`demo`] | the demo MCP server and client processes |
//! | [`pipeline`] | Envoy + filter shipping to the collector: load, counters, loss identity, figures |
//! | [`tls`] | certificates made with `openssl` for TLS tests |
//! | [`filter_vm`] | (feature `filter-vm`) the filter in the wasmtime proxy-wasm host |
// Harness code fails the test it serves by panicking: unwrap, expect and panic are how it
// reports (the workspace denies them in non-test code).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod collector;
pub mod db;
pub mod demo;
pub mod envoy;
#[cfg(feature = "filter-vm")]
pub mod filter_vm;
pub mod http;
pub mod paths;
pub mod pipeline;
pub mod poll;
pub mod process;
pub mod tls;
