//! The validated event row: the one shape shared by ingest, queue, writer and store.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

/// Fixed per-entry cost added to an event's serialized size when charging the queue budget.
/// It stands for the row struct, its heap allocations' headers and the queue slot, so that
/// many tiny events cannot hold much more memory than the budget says.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<Row>() + 160;

/// Severity, stored in the `level` column as its code (MCPCAN's integer levels): the wire
/// contract's.
pub use mcp_contract::Level;

/// One event ready to be written: column values plus the whole event as JSON text.
/// Serde is for the spool's on-disk records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub instance_id: Option<String>,
    pub mcp_method: Option<String>,
    pub tool_name: Option<String>,
    pub token_header: Option<String>,
    pub token: Option<String>,
    pub event: String,
    pub level: Level,
    pub log: String,
    pub source: String,
    /// Kept within `i64` range by ingest so every store can hold it.
    pub seq: u64,
    /// Event time (UTC).
    pub created_at: NaiveDateTime,
    /// Ingest time (UTC).
    pub received_at: NaiveDateTime,
}

impl Row {
    /// Bytes charged to the queue budget for this row.
    pub fn queued_bytes(&self) -> usize {
        let optional = [
            &self.trace_id,
            &self.span_id,
            &self.instance_id,
            &self.mcp_method,
            &self.tool_name,
            &self.token_header,
            &self.token,
        ]
        .into_iter()
        .map(|s| s.as_ref().map_or(0, String::len))
        .sum::<usize>();
        ENTRY_OVERHEAD + optional + self.event.len() + self.log.len() + self.source.len()
    }
}
