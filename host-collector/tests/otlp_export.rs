//! OTLP export end to end: the collector ingests filter events and exports spans and metrics
//! to an OTLP/HTTP receiver in this test, which decodes them with the official generated
//! protobuf types (`opentelemetry-proto`) and checks them field by field; then a dead and a
//! hanging endpoint, where export must drop (counted, by reason) while ingest and the
//! database path carry on untouched.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Metric};
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode as SpanStatus, Span,
};
use prost::Message;
use test_support::collector::*;
use test_support::poll::eventually;

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    resources: Vec<Vec<(String, String)>>,
    metrics: Vec<Vec<Metric>>,
    api_keys: Vec<String>,
}

type Shared = Arc<Mutex<Received>>;

fn kvs(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> Vec<(String, String)> {
    attrs
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

async fn traces(State(rx): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut rx = rx.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        rx.api_keys.push(key.to_string());
    }
    for rs in request.resource_spans {
        rx.resources
            .push(kvs(&rs.resource.map(|r| r.attributes).unwrap_or_default()));
        for ss in rs.scope_spans {
            assert_eq!(ss.scope.map(|s| s.name).as_deref(), Some("host-collector"));
            rx.spans.extend(ss.spans);
        }
    }
    StatusCode::OK
}

async fn metrics(State(rx): State<Shared>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportMetricsServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let metrics = request
        .resource_metrics
        .into_iter()
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .collect();
    rx.lock()
        .unwrap_or_else(|p| p.into_inner())
        .metrics
        .push(metrics);
    StatusCode::OK
}

async fn receiver() -> (SocketAddr, Shared) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/v1/traces", routing::post(traces))
        .route("/v1/metrics", routing::post(metrics))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shared)
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn response(seq: u64, span: &str, ts: &str, extra: &str) -> String {
    format!(
        r#"{{"ts":"{ts}","source":"vm-otlp","seq":{seq},"event":"response","level":"info","trace_id":"{TRACE}","span_id":"{span}","parent_span_id":"{CLIENT_SPAN}","trace.origin":"header","instance_id":"demo","http.request.method":"POST","url.path":"/mcp","mcp.transport":"streamable_http","mcp.protocol.version":"2025-06-18"{extra}}}"#
    )
}

fn attr(span: &Span, key: &str) -> Option<String> {
    kvs(&span.attributes)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn by_name<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_an_otlp_receiver_field_by_field() {
    let (addr, rx) = receiver().await;
    let db = TempSqlite::new();
    let endpoint = format!("http://{addr}");
    let running = start(
        &db.url(),
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-header",
            "x-api-key=otlp-key-0123",
            "--otlp-flush-interval",
            "50ms",
            "--otlp-metrics-interval",
            "100ms",
        ],
    )
    .await;

    let lines = [
        // A session opens with initialize ...
        response(1, "1111111111111111", "2026-11-22T10:00:00.000000Z",
            r#","mcp.session.id":"sess-1","mcp.method.name":"initialize","jsonrpc.request.id":"0","mcp.outcome":"ok","http.response.status_code":200,"duration_ms":4.0"#),
        // ... a failed tool call (JSON-RPC error) ...
        response(2, "b7ad6b7169203331", "2026-11-22T10:00:01.500000Z",
            r#","mcp.session.id":"sess-1","mcp.method.name":"tools/call","gen_ai.tool.name":"echo","jsonrpc.request.id":"7","mcp.outcome":"jsonrpc_error","error.type":"-32602","rpc.response.status_code":"-32602","http.response.status_code":200,"duration_ms":12.5"#),
        // ... a batch of two answered over SSE, one message each ...
        response(3, "2222222222222222", "2026-11-22T10:00:02.010000Z",
            r#","mcp.session.id":"sess-1","mcp.method.name":"resources/read","mcp.resource.uri":"demo://readme","jsonrpc.request.id":"8","jsonrpc.batch.size":2,"jsonrpc.batch.index":0,"mcp.outcome":"ok","duration_ms":10.0"#),
        response(4, "2222222222222222", "2026-11-22T10:00:02.030000Z",
            r#","mcp.session.id":"sess-1","mcp.method.name":"prompts/get","gen_ai.prompt.name":"greet","jsonrpc.request.id":"9","jsonrpc.batch.size":2,"jsonrpc.batch.index":1,"mcp.outcome":"tool_error","error.type":"tool_error","duration_ms":30.0"#),
        // ... and ends with DELETE, 6 s after initialize started.
        response(5, "3333333333333333", "2026-11-22T10:00:05.996000Z",
            r#","mcp.session.id":"sess-1","http.request.method":"DELETE","mcp.outcome":"accepted","duration_ms":1.0"#)
            .replace(r#""http.request.method":"POST","#, ""),
        // Not a response: no span.
        response(6, "4444444444444444", "2026-11-22T10:00:06.000000Z", r#","mcp.method.name":"ping""#)
            .replace(r#""event":"response""#, r#""event":"request""#),
    ];
    let body = (lines.join("\n") + "\n").into_bytes();
    let reply = post(running.addr, body).await;
    assert_eq!(reply.json()["accepted"], 6, "{:?}", reply.json());

    eventually("6 spans exported", Duration::from_secs(10), || async {
        rx.lock().expect("lock").spans.len() >= 6
    })
    .await;
    let (spans, api_keys, resources) = {
        let got = rx.lock().expect("lock");
        (
            got.spans.clone(),
            got.api_keys.clone(),
            got.resources.clone(),
        )
    };
    let spans = &spans;
    assert_eq!(
        spans.len(),
        6,
        "{:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert!(api_keys.iter().all(|k| k == "otlp-key-0123") && !api_keys.is_empty());
    assert!(resources[0].contains(&("service.name".into(), "mcp-gateway".into())));

    // The failed tool call: the wire ids, the client's span as remote parent, times, status.
    let call = by_name(spans, "tools/call echo");
    assert_eq!(call.len(), 1);
    let call = call[0];
    assert_eq!(hex(&call.trace_id), TRACE);
    assert_eq!(hex(&call.span_id), "b7ad6b7169203331");
    assert_eq!(hex(&call.parent_span_id), CLIENT_SPAN);
    assert_eq!(call.kind, SpanKind::Server as i32);
    assert_eq!(call.flags, 0x301, "sampled, parent known to be remote");
    let end = 1_795_341_601_500_000_000u64; // 2026-11-22T10:00:01.5Z
    assert_eq!(call.end_time_unix_nano, end);
    assert_eq!(call.start_time_unix_nano, end - 12_500_000);
    let status = call.status.as_ref().expect("status");
    assert_eq!(
        (status.code, status.message.as_str()),
        (SpanStatus::Error as i32, "-32602")
    );
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "echo"),
        ("gen_ai.operation.name", "execute_tool"),
        ("jsonrpc.request.id", "7"),
        ("mcp.session.id", "sess-1"),
        ("mcp.protocol.version", "2025-06-18"),
        ("rpc.response.status_code", "-32602"),
        ("error.type", "-32602"),
        ("network.transport", "tcp"),
        ("network.protocol.name", "http"),
        ("http.response.status_code", "200"),
        ("mcp.gateway.instance_id", "demo"),
    ] {
        assert_eq!(attr(call, key).as_deref(), Some(value), "{key}");
    }
    let ok = by_name(spans, "initialize")[0];
    assert!(ok.status.is_none(), "no status on success");
    assert_eq!(attr(ok, "error.type"), None);

    // The batch: one exchange span with the wire id, one child per element.
    let exchange = by_name(spans, "batch");
    assert_eq!(exchange.len(), 1);
    let exchange = exchange[0];
    assert_eq!(hex(&exchange.span_id), "2222222222222222");
    assert_eq!(hex(&exchange.parent_span_id), CLIENT_SPAN);
    assert_eq!(
        exchange.end_time_unix_nano - exchange.start_time_unix_nano,
        30_000_000
    );
    assert_eq!(
        exchange.status.as_ref().map(|s| s.code),
        Some(SpanStatus::Error as i32)
    );
    let read = by_name(spans, "resources/read")[0];
    let prompt = by_name(spans, "prompts/get greet")[0];
    for element in [read, prompt] {
        assert_eq!(hex(&element.parent_span_id), "2222222222222222");
        assert_ne!(hex(&element.span_id), "2222222222222222");
        assert_eq!(element.flags, 0x101, "local parent");
    }
    assert_ne!(read.span_id, prompt.span_id);
    assert_eq!(
        attr(read, "mcp.resource.uri").as_deref(),
        Some("demo://readme")
    );
    assert_eq!(attr(read, "jsonrpc.batch.index").as_deref(), Some("0"));
    assert_eq!(attr(prompt, "error.type").as_deref(), Some("tool_error"));
    assert_eq!(by_name(spans, "DELETE").len(), 1);

    // Metrics: the MCP histograms with the conventions' buckets, and the pipeline counters.
    eventually("metrics with the session ended", Duration::from_secs(10), || async {
        rx.lock().expect("lock").metrics.iter().any(|m| {
            m.iter().any(|metric| {
                metric.name == "mcp.server.session.duration"
                    && matches!(&metric.data, Some(Data::Histogram(h)) if h.data_points.iter().any(|p| p.count == 1))
            })
        })
    })
    .await;
    let last = rx
        .lock()
        .expect("lock")
        .metrics
        .last()
        .cloned()
        .expect("a metrics export");
    let find = |name: &str| {
        last.iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let Some(Data::Histogram(ops)) = &find("mcp.server.operation.duration").data else {
        panic!("histogram");
    };
    assert_eq!(find("mcp.server.operation.duration").unit, "s");
    assert_eq!(ops.aggregation_temporality, 2, "cumulative");
    assert_eq!(
        ops.data_points.iter().map(|p| p.count).sum::<u64>(),
        4,
        "DELETE has no method"
    );
    let echo = ops
        .data_points
        .iter()
        .find(|p| kvs(&p.attributes).contains(&("gen_ai.tool.name".into(), "echo".into())))
        .expect("the echo series");
    assert_eq!(
        echo.explicit_bounds,
        [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0]
    );
    assert_eq!(echo.bucket_counts[1], 1, "12.5 ms");
    assert!(kvs(&echo.attributes).contains(&("error.type".into(), "-32602".into())));
    let Some(Data::Histogram(sessions)) = &find("mcp.server.session.duration").data else {
        panic!("histogram");
    };
    assert_eq!(
        sessions.data_points[0].sum,
        Some(6.0),
        "10:00:00 - 4 ms to 10:00:05.996"
    );
    let Some(Data::Sum(accepted)) = &find("collector.events.accepted").data else {
        panic!("sum");
    };
    assert!(accepted.is_monotonic);
    assert!(matches!(
        accepted.data_points[0].value,
        Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(6))
    ));
    assert_eq!(
        metric(&running, r#"collector_otlp_exported_total{signal="spans"}"#).await,
        Some(6.0)
    );
    assert_eq!(
        metric(
            &running,
            r#"collector_otlp_events_total{result="enqueued"}"#
        )
        .await,
        Some(5.0)
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_thins_spans_but_not_metrics() {
    let (addr, rx) = receiver().await;
    let db = TempSqlite::new();
    let endpoint = format!("http://{addr}");
    let running = start(
        &db.url(),
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-sampling-ratio",
            "0",
            "--otlp-metrics-interval",
            "100ms",
        ],
    )
    .await;
    let body = (1..=20)
        .map(|seq| {
            response(
                seq,
                "b7ad6b7169203331",
                "2026-11-22T10:00:01.000000Z",
                r#","mcp.method.name":"ping","mcp.outcome":"ok","duration_ms":1.0"#,
            ) + "\n"
        })
        .collect::<String>();
    assert_eq!(
        post(running.addr, body.into_bytes()).await.json()["accepted"],
        20
    );
    eventually("20 operations in the exported histogram", Duration::from_secs(10), || async {
        rx.lock().expect("lock").metrics.iter().flatten().any(|m| {
            m.name == "mcp.server.operation.duration"
                && matches!(&m.data, Some(Data::Histogram(h)) if h.data_points.iter().map(|p| p.count).sum::<u64>() == 20)
        })
    })
    .await;
    assert!(rx.lock().expect("lock").spans.is_empty());
    assert_eq!(
        metric(
            &running,
            r#"collector_otlp_events_total{result="sampled_out"}"#
        )
        .await,
        Some(20.0)
    );
    running.shutdown().await;
}

/// Accepts connections and never answers: every export request times out.
async fn hanging_endpoint() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_hanging_endpoint_drops_counted_and_ingest_carries_on() {
    // Hanging: requests time out, the sender's queue (1 batch) fills, batches are dropped.
    let hanging = hanging_endpoint().await;
    let db = TempSqlite::new();
    let endpoint = format!("http://{hanging}");
    let running = start(
        &db.url(),
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-export-timeout",
            "300ms",
            "--otlp-max-pending-batches",
            "1",
            "--otlp-max-batch-spans",
            "100",
            "--otlp-queue-events",
            "2000",
            "--otlp-metrics-interval",
            "1h",
        ],
    )
    .await;
    let requests = 20u64;
    let per_request = 500u64;
    for r in 0..requests {
        let body = (1..=per_request)
            .map(|i| {
                let seq = r * per_request + i;
                response(seq, "b7ad6b7169203331", "2026-11-22T10:00:01.000000Z",
                    r#","mcp.method.name":"tools/call","gen_ai.tool.name":"echo","mcp.outcome":"ok","duration_ms":2.0"#) + "\n"
            })
            .collect::<String>();
        let reply = post(running.addr, body.into_bytes()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["accepted"], per_request);
    }
    let total = requests * per_request;
    wait_persisted(&running, total).await;

    let sample = |s: &'static str| {
        let running = &running;
        async move { metric(running, s).await.unwrap_or(0.0) as u64 }
    };
    // Every offered event is either enqueued or dropped at the channel; every enqueued one
    // became a span that is, once the last request has timed out, exported or dropped.
    let enqueued = sample(r#"collector_otlp_events_total{result="enqueued"}"#).await;
    let event_drops =
        sample(r#"collector_otlp_dropped_total{signal="events",reason="queue_full"}"#).await;
    assert_eq!(enqueued + event_drops, total);
    let spans = || async {
        (
            sample(r#"collector_otlp_dropped_total{signal="spans",reason="queue_full"}"#).await,
            sample(r#"collector_otlp_dropped_total{signal="spans",reason="timeout"}"#).await,
            sample(r#"collector_otlp_exported_total{signal="spans"}"#).await,
        )
    };
    eventually(
        "span accounting settles",
        Duration::from_secs(10),
        || async {
            let (queue_full, timeout, exported) = spans().await;
            queue_full + timeout + exported == enqueued
        },
    )
    .await;
    let settled = spans().await;
    let (queue_full, timeout, exported) = settled;
    assert_eq!(exported, 0);
    assert!(timeout >= 100, "at least one batch timed out: {settled:?}");
    assert!(
        queue_full > 0,
        "the bounded sender queue overflowed: {settled:?}"
    );
    assert_eq!(
        metric(&running, "collector_events_persisted_total").await,
        Some(total as f64),
        "the database path is untouched"
    );
    running.shutdown().await;

    // Dead: nothing listens; requests fail at once as unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let db = TempSqlite::new();
    let endpoint = format!("http://{closed}");
    let running = start(
        &db.url(),
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-flush-interval",
            "20ms",
        ],
    )
    .await;
    let body = response(
        1,
        "b7ad6b7169203331",
        "2026-11-22T10:00:01.000000Z",
        r#","mcp.method.name":"ping","mcp.outcome":"ok","duration_ms":1.0"#,
    ) + "\n";
    assert_eq!(post(running.addr, body.into_bytes()).await.status, 200);
    eventually("unreachable counted", Duration::from_secs(10), || async {
        metric(
            &running,
            r#"collector_otlp_dropped_total{signal="spans",reason="unreachable"}"#,
        )
        .await
            == Some(1.0)
    })
    .await;
    wait_persisted(&running, 1).await;
    running.shutdown().await;
}
