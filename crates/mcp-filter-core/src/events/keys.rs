//! Event field names as they are written: pre-escaped, with the separating comma and the
//! colon (`,"trace_id":`), so writing a field is two copies. Defined once in the wire contract
//! (`mcp_contract::fields`), which the collector reads with.

pub use mcp_contract::fields::key::*;
