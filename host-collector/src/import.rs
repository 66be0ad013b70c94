//! `host-collector import`: recovers the events a retiring filter VM could not ship. Envoy
//! stopped with SIGTERM exits before its filters finish draining; each VM first writes what it
//! holds to Envoy's log as `mcp_unshipped` lines (`mcp_contract::recovery`). This reads such
//! logs, parses every marked line with the collector's own wire parser and writes the events
//! to the store in batches. The store's `(source, seq)` key makes it idempotent: events that
//! were shipped after all, or imported before, are skipped.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

use crate::event::Row;
use crate::ingest::wire::{parse_line_keyed, Line};
use crate::store::{self, Store, StoreOptions};

/// Rows per write.
const BATCH_ROWS: usize = 1000;

#[derive(Debug, Parser)]
#[command(
    name = "host-collector import",
    about = "Store the events a stopped Envoy's filter wrote to its log as mcp_unshipped lines"
)]
pub struct ImportArgs {
    /// The same database the collectors write.
    #[arg(
        long,
        env = "COLLECTOR_DATABASE_URL",
        default_value = "sqlite://host-collector.db"
    )]
    pub database_url: String,

    /// The collectors' --fingerprint-key, for a raw credential found in a line.
    #[arg(long, env = "COLLECTOR_FINGERPRINT_KEY", hide_env_values = true)]
    pub fingerprint_key: Option<String>,

    /// Envoy log files (`-` for standard input).
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
}

/// What an import did, per source and in total.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    /// Marked lines found.
    pub marked_lines: u64,
    pub events: u64,
    /// Events newly stored (the rest were there already).
    pub inserted: u64,
    pub status_records: u64,
    /// Marked lines the wire parser refused (with the first reasons).
    pub rejected: u64,
    pub rejections: Vec<String>,
    /// Per source: events found, and the highest `emitted` its status records report.
    pub sources: BTreeMap<String, SourceImport>,
}

#[derive(Debug, Default, Serialize)]
pub struct SourceImport {
    pub events: u64,
    pub emitted: Option<u64>,
}

pub async fn run(args: &ImportArgs) -> Result<ImportReport, String> {
    let options = StoreOptions {
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(10),
    };
    let store = store::open(&args.database_url, &options).map_err(|e| e.to_string())?;
    store.prepare().await.map_err(|e| e.to_string())?;
    let key = args.fingerprint_key.as_deref().map(str::as_bytes);
    let mut report = ImportReport::default();
    let mut rows = Vec::with_capacity(BATCH_ROWS);
    for path in &args.logs {
        for line in read_lines(path)? {
            let line = line?;
            let Some(payload) = mcp_contract::recovery::payload(&line) else {
                continue;
            };
            report.marked_lines += 1;
            let now = chrono::Utc::now().naive_utc();
            match parse_line_keyed(payload.as_bytes(), now, key) {
                Ok(Line::Event { row, .. }) => {
                    report.events += 1;
                    report.sources.entry(row.source.clone()).or_default().events += 1;
                    rows.push(row);
                }
                Ok(Line::Status(status)) => {
                    report.status_records += 1;
                    let source = report.sources.entry(status.source.clone()).or_default();
                    source.emitted = source.emitted.max(status.emitted);
                }
                Err(e) => {
                    report.rejected += 1;
                    if report.rejections.len() < 10 {
                        report.rejections.push(e);
                    }
                }
            }
            if rows.len() == BATCH_ROWS {
                report.inserted += write(store.as_ref(), &mut rows).await?;
            }
        }
    }
    report.inserted += write(store.as_ref(), &mut rows).await?;
    Ok(report)
}

async fn write(store: &dyn Store, rows: &mut Vec<Row>) -> Result<u64, String> {
    if rows.is_empty() {
        return Ok(0);
    }
    let inserted = store.insert_batch(rows).await.map_err(|e| e.to_string())?;
    rows.clear();
    Ok(inserted)
}

/// A log's lines as they are read (a log can be large), lossily decoded (a log may hold
/// other processes' bytes).
fn read_lines(path: &PathBuf) -> Result<impl Iterator<Item = Result<String, String>> + '_, String> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    Ok(reader.split(b'\n').map(move |line| {
        line.map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }))
}
