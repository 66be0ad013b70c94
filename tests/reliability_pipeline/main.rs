//! Reliability and security through the whole pipeline: rmcp demo server <- real Envoy (2
//! workers) with the filter -> host-collector (a real process) -> MariaDB (a database of the
//! test's own on the shared server, optionally behind a TCP proxy the test cuts).
//!
//! - secrets: known credentials and redacted argument values never reach the database,
//!   Envoy's log or the collector's log;
//! - hostile requests through Envoy: clear errors, no trap, the VM keeps serving, bounded
//!   state, nothing valid lost;
//! - faults under steady load: collector SIGTERM, collector SIGKILL, MCP upstream killed
//!   mid-SSE, MariaDB down for 5 s (60 s with RELIABILITY_LONG=1), Envoy restarted.
//!
//! For each fault the test prints a `RELIABILITY {json}` line: requests served, errors seen by
//! clients, events emitted / stored / dropped by reason, and events lost
//! (`emitted - stored - dropped`), which must be 0 wherever no budget was exceeded (a
//! SIGKILLed collector replays what it acknowledged from its spool). Losses the design cannot
//! prevent (a stopped Envoy's unshipped buffer) are measured and reported, not hidden.
//! docs/reliability.md.
//!
//! One module per suite: [`secrets`], [`hostile`], and the faults [`collector_faults`],
//! [`mariadb_outage`], [`upstream_sse`], [`envoy_restart`], [`flood`]; the harness is the
//! `test-support` crate.
//!
//! Run: `make test-reliability` (builds the filter, the collector and the demo peers first).
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod collector_faults;
mod envoy_restart;
mod flood;
mod hostile;
mod mariadb_outage;
mod poison;
mod scale_out;
mod secrets;
mod upstream_sse;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use test_support::collector::Collector;
use test_support::db::{DbProxy, TestDb};
use test_support::demo::{DemoKind, DemoServer};
use test_support::envoy::Envoy;
use test_support::pipeline::{per_source, start_envoy, EnvoyOptions};

/// Load: client threads, and the pause between one client's requests.
const CLIENTS: usize = 2;
const PAUSE: Duration = Duration::from_millis(10);
/// How long the load runs before a fault is injected, and again once the pipeline is back,
/// so every fault happens mid-traffic and the recovery carries traffic too (a few hundred
/// requests each way at this load).
const STEADY: Duration = Duration::from_secs(2);

fn json_server() -> DemoServer {
    DemoServer::start(DemoKind::Streamable {
        json_response: true,
        stateless: true,
    })
}

fn assert_no_duplicate_seqs(db: &TestDb) {
    for (source, rows, distinct, _) in per_source(db) {
        assert_eq!(rows, distinct, "source {source}: a seq stored twice");
    }
}

/// The whole pipeline for a fault test: its own database behind a proxy the test can cut,
/// the collector, the demo server, Envoy with the filter, and the URL the load posts to
/// (switchable to another Envoy).
struct Pipeline {
    db: TestDb,
    proxy: DbProxy,
    collector: Collector,
    server: DemoServer,
    envoy: Envoy,
    url: Arc<Mutex<String>>,
}

fn pipeline(label: &str, collector_extra: &[&str]) -> Pipeline {
    let db = TestDb::create(label);
    let proxy = DbProxy::mariadb();
    let collector = Collector::start_pipeline(&db.url_via(proxy.port), collector_extra);
    let server = json_server();
    let envoy = start_envoy(server.port, collector.port, &EnvoyOptions::default());
    let url = Arc::new(Mutex::new(envoy.url("/mcp/demo/mcp")));
    Pipeline {
        db,
        proxy,
        collector,
        server,
        envoy,
        url,
    }
}
