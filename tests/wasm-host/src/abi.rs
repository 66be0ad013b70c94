//! Numeric constants and wire formats of the proxy-wasm ABI 0.2.1, as spoken by the
//! Rust SDK (`proxy-wasm` 0.2.x `hostcalls.rs` / `types.rs`).

/// `WasmResult` status codes returned by every host call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

/// Result type of host-call bodies: `Err` carries the status returned to the guest.
pub type HostResult<T = ()> = Result<T, Status>;

/// Converts a host-call body's outcome into the i32 the guest receives.
pub fn status_code(result: HostResult) -> i32 {
    match result {
        Ok(()) => Status::Ok as i32,
        Err(status) => status as i32,
    }
}

/// Log levels, numbered as in the ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LogLevel {
    #[default]
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub(crate) fn from_raw(raw: i32) -> HostResult<LogLevel> {
        Ok(match raw {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return Err(Status::BadArgument),
        })
    }
}

/// What a stream callback asked the host to do next (`FilterHeadersStatus` /
/// `FilterDataStatus` / `FilterTrailersStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// 0: continue iteration; buffered body bytes are released.
    Continue,
    /// 1: stop iteration (`StopIteration` / `StopIterationAndBuffer`).
    Pause,
    /// 2: `StopIterationAndWatermark`; bodies are buffered like `Pause`.
    StopIterationAndWatermark,
    /// 3: `StopIterationNoBuffer`; this host buffers like `Pause` (see README).
    StopIterationNoBuffer,
}

impl Action {
    pub(crate) fn from_raw(raw: i32) -> anyhow::Result<Action> {
        Ok(match raw {
            0 => Action::Continue,
            1 => Action::Pause,
            2 => Action::StopIterationAndWatermark,
            3 => Action::StopIterationNoBuffer,
            other => anyhow::bail!("filter returned unknown action {other}"),
        })
    }
}

pub(crate) mod buffer {
    pub const HTTP_REQUEST_BODY: i32 = 0;
    pub const HTTP_RESPONSE_BODY: i32 = 1;
    pub const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    pub const VM_CONFIGURATION: i32 = 6;
    pub const PLUGIN_CONFIGURATION: i32 = 7;
}

pub(crate) mod map {
    pub const HTTP_REQUEST_HEADERS: i32 = 0;
    pub const HTTP_REQUEST_TRAILERS: i32 = 1;
    pub const HTTP_RESPONSE_HEADERS: i32 = 2;
    pub const HTTP_RESPONSE_TRAILERS: i32 = 3;
    pub const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
}

pub(crate) mod stream_type {
    pub const HTTP_REQUEST: i32 = 0;
    pub const HTTP_RESPONSE: i32 = 1;
    pub const DOWNSTREAM: i32 = 2;
    pub const UPSTREAM: i32 = 3;
}

/// Kind of a metric, numbered as in `proxy_define_metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub(crate) fn from_raw(raw: i32) -> HostResult<MetricKind> {
        match raw {
            0 => Ok(MetricKind::Counter),
            1 => Ok(MetricKind::Gauge),
            2 => Ok(MetricKind::Histogram),
            _ => Err(Status::BadArgument),
        }
    }
}

/// A header (or trailer/metadata) list, in order, keys as stored by the host.
pub type HeaderPairs = Vec<(String, String)>;

/// Serializes pairs as the SDK expects: u32 count, (u32 key_len, u32 value_len) per pair,
/// then each key and value followed by a NUL byte.
pub fn serialize_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (key, value) in pairs {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        for part in [key, value] {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
    }
    out
}

/// Parses the format written by [`serialize_pairs`]; malformed input is a `ParseFailure`
/// rather than a panic, because it comes from the guest. Non-UTF-8 bytes are replaced.
pub fn deserialize_pairs(bytes: &[u8]) -> HostResult<HeaderPairs> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let word = |at: usize| -> HostResult<usize> {
        let raw = bytes.get(at..at + 4).ok_or(Status::ParseFailure)?;
        Ok(u32::from_le_bytes(raw.try_into().unwrap()) as usize)
    };
    let count = word(0)?;
    let mut data = 4 + count.checked_mul(8).ok_or(Status::ParseFailure)?;
    let mut pairs = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let (key_len, value_len) = (word(4 + i * 8)?, word(8 + i * 8)?);
        let mut take = |len: usize| -> HostResult<String> {
            let text = bytes.get(data..data + len).ok_or(Status::ParseFailure)?;
            data += len + 1; // skip the NUL terminator
            Ok(String::from_utf8_lossy(text).into_owned())
        };
        let key = take(key_len)?;
        let value = take(value_len)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Splits a property path (segments joined by NUL) into its segments.
pub fn parse_path(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .map(|segment| String::from_utf8_lossy(segment).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let pairs = vec![
            (":path".to_string(), "/a".to_string()),
            ("k".into(), "".into()),
        ];
        let bytes = serialize_pairs(&pairs);
        assert_eq!(&bytes[..4], &2u32.to_le_bytes());
        assert_eq!(deserialize_pairs(&bytes), Ok(pairs));
    }

    #[test]
    fn truncated_pairs_are_a_parse_failure() {
        let bytes = serialize_pairs(&[("key".into(), "value".into())]);
        assert_eq!(
            deserialize_pairs(&bytes[..bytes.len() - 4]),
            Err(Status::ParseFailure)
        );
    }

    #[test]
    fn paths_split_on_nul() {
        assert_eq!(parse_path(b"xds\0route_name"), vec!["xds", "route_name"]);
    }
}
