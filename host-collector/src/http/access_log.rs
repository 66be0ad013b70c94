//! One `ev=http` log line per request, with Cantabular's field names.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::{AuthUser, HttpState};

pub async fn access_log(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let url = request.uri().to_string();
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(String::new, |c| c.0.ip().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state
        .telemetry
        .emit(crate::internal_events::HttpResponded { status });
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let auth_user = response.extensions().get::<AuthUser>().map_or("", |u| u.0);
    tracing::info!(
        ev = "http",
        msg = "request served",
        port = state.port,
        url = %url,
        method = %method,
        httpStatus = status,
        contentType = %content_type,
        remoteAddr = %remote,
        authUser = auth_user,
        nBytes = response.body().size_hint().exact().unwrap_or(0),
        timeTaken = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
    );
    response
}
