//! Delivery: POSTs encoded OTLP requests (`application/x-protobuf`) to the endpoint, one at a
//! time over one kept-alive HTTP/1.1 connection, each bounded by the export timeout. A failed
//! request is dropped and counted by reason, never retried: a dead or slow endpoint costs one
//! bounded attempt per batch, and the bounded queue in front of this task absorbs the rest.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::stats::{Drop, OtlpStats, Signal};

/// Where exports go: `http://host:port[/prefix]`, spans to `{prefix}/v1/traces` and metrics
/// to `{prefix}/v1/metrics`, as OTLP/HTTP defines for a base endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub authority: String,
    pub prefix: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Endpoint {
    pub fn parse(url: &str, headers: &[(String, String)]) -> Result<Endpoint, String> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(
                    "https OTLP endpoints are not supported: point --otlp-endpoint at an \
                     OpenTelemetry Collector over http (e.g. a local agent that forwards with TLS)"
                        .into(),
                )
            }
            _ => return Err(format!("{url:?} is not an http://host:port URL")),
        };
        let (authority, prefix) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: expected http://host:port[/path]"));
        }
        let headers = headers
            .iter()
            .map(|(k, v)| {
                Ok((
                    HeaderName::try_from(k.as_str())
                        .map_err(|_| format!("bad header name {k:?}"))?,
                    HeaderValue::try_from(v.as_str())
                        .map_err(|_| format!("bad value for header {k:?}"))?,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Endpoint {
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            headers,
        })
    }
}

/// One encoded export request.
pub enum Job {
    Spans { body: Vec<u8>, spans: u64 },
    Metrics { body: Vec<u8>, points: u64 },
}

pub struct Sender {
    pub endpoint: Endpoint,
    pub timeout: Duration,
    pub stats: Arc<OtlpStats>,
    conn: Option<SendRequest<Full<Bytes>>>,
    failing: bool,
}

impl Sender {
    pub fn new(endpoint: Endpoint, timeout: Duration, stats: Arc<OtlpStats>) -> Self {
        Sender {
            endpoint,
            timeout,
            stats,
            conn: None,
            failing: false,
        }
    }

    /// Delivers jobs until the batcher closes the channel.
    pub async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.recv().await {
            self.deliver(job).await;
        }
    }

    async fn deliver(&mut self, job: Job) {
        let (signal, path, body, n) = match job {
            Job::Spans { body, spans } => (Signal::Spans, "/v1/traces", body, spans),
            Job::Metrics { body, points } => (Signal::Metrics, "/v1/metrics", body, points),
        };
        let result = match tokio::time::timeout(self.timeout, self.post(signal, path, body)).await {
            Ok(r) => r,
            Err(_) => Err((Drop::Timeout, "timed out".to_string())),
        };
        if signal == Signal::Spans {
            self.stats.spans_pending.fetch_sub(n, Ordering::Relaxed);
        }
        match result {
            Ok(rejected) => {
                let rejected = rejected.min(n);
                self.stats.exported(signal, n - rejected);
                if rejected > 0 {
                    self.stats.dropped(signal, Drop::Rejected, rejected);
                }
                if self.failing {
                    self.failing = false;
                    tracing::info!(ev = "otlp", msg = "export endpoint reachable again");
                }
            }
            Err((reason, detail)) => {
                // A broken or timed-out exchange leaves the connection in an unknown state.
                self.conn = None;
                self.stats.failed_request(signal);
                self.stats.dropped(signal, reason, n);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(
                        ev = "otlp",
                        msg = "export failed; dropping until the endpoint recovers",
                        error = %detail
                    );
                }
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, (Drop, String)> {
        let stream = tokio::net::TcpStream::connect(&self.endpoint.authority)
            .await
            .map_err(|e| (Drop::Unreachable, format!("connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| (Drop::Unreachable, format!("handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Returns how many items the endpoint reported as rejected (OTLP partial success).
    async fn post(
        &mut self,
        signal: Signal,
        path: &str,
        body: Vec<u8>,
    ) -> Result<u64, (Drop, String)> {
        let mut conn = match self.conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => self.connect().await?,
        };
        let mut request = hyper::Request::builder()
            .method("POST")
            .uri(format!("{}{path}", self.endpoint.prefix))
            .header(HOST, self.endpoint.authority.as_str())
            .header(CONTENT_TYPE, "application/x-protobuf");
        for (name, value) in &self.endpoint.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| (Drop::Rejected, format!("request: {e}")))?;
        conn.ready()
            .await
            .map_err(|e| (Drop::Unreachable, format!("connection: {e}")))?;
        let response = conn
            .send_request(request)
            .await
            .map_err(|e| (Drop::Unreachable, format!("request: {e}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| (Drop::Unreachable, format!("response: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err((Drop::Rejected, format!("HTTP {status}")));
        }
        self.conn = Some(conn);
        Ok(match signal {
            Signal::Spans => ExportTraceServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .map_or(0, |p| p.rejected_spans.max(0) as u64),
            Signal::Metrics => ExportMetricsServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .map_or(0, |p| p.rejected_data_points.max(0) as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_base_urls() {
        let e = Endpoint::parse("http://127.0.0.1:4318", &[]).expect("valid");
        assert_eq!(
            (e.authority.as_str(), e.prefix.as_str()),
            ("127.0.0.1:4318", "")
        );
        let e = Endpoint::parse(
            "http://otel:4318/otlp/",
            &[("x-api-key".into(), "k".into())],
        )
        .expect("valid");
        assert_eq!(
            (e.authority.as_str(), e.prefix.as_str()),
            ("otel:4318", "/otlp")
        );
        assert_eq!(e.headers.len(), 1);
        assert!(Endpoint::parse("https://otel:4318", &[])
            .expect_err("no TLS")
            .contains("not supported"));
        assert!(Endpoint::parse("otel:4318", &[]).is_err());
        assert!(Endpoint::parse("http://u:p@otel:4318", &[]).is_err());
        assert!(Endpoint::parse("http://otel:4318", &[("bad name".into(), "v".into())]).is_err());
    }
}
