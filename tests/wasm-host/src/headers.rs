//! Helpers to build header lists for `Vm::request_headers` and friends.

/// Owned header list; every delivery method accepts `&[(K, V)]` with string-like
/// keys and values, so `&list` works as well as `&[("a", "b")]`.
pub type Headers = Vec<(String, String)>;

/// Request pseudo-headers for `method path`, with `:authority: example.com` and
/// `:scheme: https`; append more with [`with`].
pub fn request(method: &str, path: &str) -> Headers {
    let pseudo = [
        (":method", method),
        (":path", path),
        (":authority", "example.com"),
        (":scheme", "https"),
    ];
    pseudo
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Response headers with just `:status`.
pub fn response(status: u16) -> Headers {
    vec![(":status".to_string(), status.to_string())]
}

/// Returns `headers` with `(key, value)` appended.
pub fn with(mut headers: Headers, key: &str, value: &str) -> Headers {
    headers.push((key.to_string(), value.to_string()));
    headers
}
