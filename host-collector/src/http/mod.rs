//! HTTP: the main listener's routes (`POST`/`GET /v1/logs`, `GET /v1/accounting`,
//! `GET /v1/upstreams`, `GET /health/live`, `GET /health/ready` (and `/health`), the audit
//! view under `/ui/`), bearer auth by scope (ingest or query), content-type and body-size
//! checks, the concurrency cap and the access log; plus the separate metrics listener.

mod access_log;
mod auth;
pub mod tls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::SubsecRound;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prometheus_client::registry::Registry;
use serde_json::json;

pub use auth::{Auth, Scope};

use crate::accounting::Accounting;
use crate::health::Health;
use crate::ingest::Ingestor;
use crate::internal_events::{RequestOverloaded, Telemetry};
use crate::overload::Limiter;
use crate::store::Store;

pub const NDJSON: &str = "application/x-ndjson";

pub struct HttpState {
    pub ingestor: Arc<Ingestor>,
    pub accounting: Arc<Accounting>,
    pub store: Arc<dyn Store>,
    pub health: Arc<Health>,
    pub limiter: Arc<Limiter>,
    pub telemetry: Arc<Telemetry>,
    pub auth: Auth,
    pub max_body_bytes: usize,
    pub query_timeout: Duration,
    /// Port of the listener, for the access log.
    pub port: u16,
    /// The gateway's health endpoint, proxied by `GET /v1/upstreams`.
    pub gateway_health_url: Option<String>,
}

type Shared = State<Arc<HttpState>>;

/// Who made the request, recorded on the response for the access log.
#[derive(Clone)]
pub struct AuthUser(pub &'static str);

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/v1/logs", post(ingest).get(query))
        .route("/v1/accounting", get(accounting))
        .route("/v1/upstreams", get(upstreams))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit))
        .route("/health", get(ready))
        .route("/health/ready", get(ready))
        .route("/health/live", get(live))
        .merge(crate::ui::router())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access_log::access_log,
        ))
        .with_state(state)
}

pub fn metrics_router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(registry)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn retry_later(message: &str) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn limit(State(state): Shared, request: Request, next: Next) -> Response {
    let Some(slot) = state.limiter.acquire().await else {
        state.telemetry.emit(RequestOverloaded);
        return retry_later("overloaded: too many concurrent requests");
    };
    let response = next.run(request).await;
    drop(slot);
    response
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(NDJSON))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn read_body(body: Body, max: usize) -> Result<Bytes, Response> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(max)),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("cannot read body: {e}"),
        )),
    }
}

fn too_large(max: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body larger than {max} bytes"),
    )
}

fn with_user(mut response: Response, user: Option<&'static str>) -> Response {
    if let Some(u) = user {
        response.extensions_mut().insert(AuthUser(u));
    }
    response
}

async fn ingest(State(state): Shared, headers: HeaderMap, body: Body) -> Response {
    let Some(user) = state.auth.check(&headers, Scope::Ingest) else {
        return auth::unauthorized();
    };
    let result = ingest_authorized(&state, &headers, body).await;
    with_user(result.unwrap_or_else(|r| r), Some(user))
}

async fn ingest_authorized(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    if !is_ndjson(headers) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be {NDJSON}"),
        ));
    }
    if declared_length(headers).is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(too_large(state.max_body_bytes));
    }
    let body = read_body(body, state.max_body_bytes).await?;
    let received_at = chrono::Utc::now().naive_utc().trunc_subsecs(6);
    match state.ingestor.ingest(&body, received_at) {
        Ok(report) => Ok(Json(report).into_response()),
        // The detail (a path, an OS error) goes to the log, not to the sender.
        Err(_) => Err(retry_later(
            "events could not be spooled; nothing was kept, retry",
        )),
    }
}

async fn query(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(user) = state.auth.check(&headers, Scope::Query) else {
        return auth::unauthorized();
    };
    let response = match crate::query::parse_params(&params) {
        Err(e) => error(StatusCode::BAD_REQUEST, e),
        Ok(q) => match tokio::time::timeout(state.query_timeout, state.store.query(&q)).await {
            Ok(Ok(rows)) => Json(crate::query::render(&rows, q.limit)).into_response(),
            Ok(Err(e)) => {
                tracing::warn!(ev = "query", msg = "query failed", error = %e, error_kind = e.kind());
                retry_later("database unavailable")
            }
            Err(_) => retry_later("query timed out"),
        },
    };
    with_user(response, Some(user))
}

/// This collector's accounting, or with `?from=store` the store's (right across several
/// collectors; see `shared_accounting`).
async fn accounting(
    State(state): Shared,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(user) = state.auth.check(&headers, Scope::Query) else {
        return auth::unauthorized();
    };
    let unknown = params.keys().find(|k| k.as_str() != "from");
    let response = match (params.get("from").map(String::as_str), unknown) {
        (_, Some(key)) => error(
            StatusCode::BAD_REQUEST,
            format!("unknown parameter {key:?}"),
        ),
        (None | Some("collector"), None) => Json(state.accounting.report()).into_response(),
        (Some("store"), None) => {
            let report = crate::shared_accounting::report(state.store.as_ref());
            match tokio::time::timeout(state.query_timeout, report).await {
                Ok(Ok(report)) => Json(report).into_response(),
                Ok(Err(e)) => {
                    tracing::warn!(ev = "query", msg = "accounting from the store failed", error = %e);
                    retry_later("database unavailable")
                }
                Err(_) => retry_later("accounting query timed out"),
            }
        }
        (Some(other), None) => error(
            StatusCode::BAD_REQUEST,
            format!("from must be collector or store, not {other:?}"),
        ),
    };
    with_user(response, Some(user))
}

/// How long the audit view waits for the gateway's health answer.
const UPSTREAMS_TIMEOUT: Duration = Duration::from_secs(2);

async fn upstreams(State(state): Shared, headers: HeaderMap) -> Response {
    let Some(user) = state.auth.check(&headers, Scope::Query) else {
        return auth::unauthorized();
    };
    let response = match &state.gateway_health_url {
        None => error(
            StatusCode::NOT_FOUND,
            "no gateway health endpoint configured (--gateway-health-url)",
        ),
        Some(url) => match crate::ui::upstreams::fetch(url, UPSTREAMS_TIMEOUT).await {
            Ok((status, health)) => {
                Json(json!({ "url": url, "status": status, "health": health })).into_response()
            }
            Err(e) => error(
                StatusCode::BAD_GATEWAY,
                format!("gateway health unavailable: {e}"),
            ),
        },
    };
    with_user(response, Some(user))
}

/// Readiness (`/health/ready`, and `/health` as before): 200 when every check passes, 503
/// otherwise. Without a query token the body says which checks fail and nothing else (no
/// error text, no sizes); with one it has every detail.
async fn ready(State(state): Shared, headers: HeaderMap) -> Response {
    let (healthy, body) = state.health.check();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Without auth (--insecure-no-auth) everyone may read everything anyway.
    let user = state.auth.check(&headers, Scope::Query);
    let body = if user.is_some() {
        body
    } else {
        crate::health::summary(&body)
    };
    with_user((status, Json(body)).into_response(), user)
}

/// Liveness: the process serves requests. Nothing it depends on is checked (a down database
/// is readiness's business; restarting the collector would not bring it back).
async fn live() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn serve_metrics(State(registry): State<Arc<Registry>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics"),
    }
}
