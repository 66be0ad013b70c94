//! `GET /v1/upstreams`: the gateway's upstream health (the filter's `health_path` answer,
//! fetched server-side from `--gateway-health-url`), so the audit view can show it without
//! the browser talking to Envoy across origins.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// Bound on the health answer: it is a few hundred bytes per upstream.
const MAX_BODY: usize = 1 << 20;

/// `http://host:port/path` split into authority and path.
pub fn parse(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: expected http://host:port/path"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url:?}: expected http://host:port/path"));
    }
    Ok((authority.to_string(), path.to_string()))
}

/// Fetches the health document. `Ok` carries the HTTP status (the filter answers 503 when an
/// upstream is unhealthy) and the parsed body.
pub async fn fetch(url: &str, timeout: Duration) -> Result<(u16, Value), String> {
    let (authority, path) = parse(url)?;
    let work = async {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, authority.as_str())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("response: {e}"))?
            .to_bytes();
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(&body).to_string()));
        Ok((status, value))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_http_urls_only() {
        assert_eq!(
            super::parse("http://127.0.0.1:10000/.well-known/mcp-gateway/health"),
            Ok((
                "127.0.0.1:10000".into(),
                "/.well-known/mcp-gateway/health".into()
            ))
        );
        assert!(super::parse("https://x/health").is_err());
        assert!(super::parse("http://u:p@x/health").is_err());
    }
}
