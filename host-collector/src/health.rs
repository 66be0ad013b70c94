//! Health: the checks behind `GET /health/ready` (database reachable and writable, queue
//! pressure, sustained overload, spool), the summary of them anyone may see, and the
//! background database pinger, whose outcomes it emits as `DbPinged` events. Ready is 200,
//! anything else 503.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::buffer::Buffer;
use crate::internal_events::{DbPinged, Telemetry};
use crate::overload::Limiter;
use crate::store::{Store, StoreError};

pub struct HealthConfig {
    /// Queue fill ratio (bytes / budget) at which the queue check fails.
    pub queue_threshold: f64,
    /// How long all concurrency slots must stay busy before health fails.
    pub overload_after: Duration,
}

pub struct Health {
    pub telemetry: Arc<Telemetry>,
    pub buffer: Arc<Buffer>,
    pub limiter: Arc<Limiter>,
    pub config: HealthConfig,
}

impl Health {
    /// Returns whether the service is healthy and the JSON body describing every check.
    pub fn check(&self) -> (bool, Value) {
        let checks = [
            ("database", self.database_check()),
            ("queue", self.queue_check()),
            ("overload", self.overload_check()),
            ("spool", self.spool_check()),
        ];
        let healthy = checks.iter().all(|(_, (ok, _))| *ok);
        let body: serde_json::Map<String, Value> = checks
            .into_iter()
            .map(|(name, (_, detail))| (name.to_string(), detail))
            .collect();
        let status = if healthy { "ok" } else { "unavailable" };
        (healthy, json!({ "status": status, "checks": body }))
    }

    fn database_check(&self) -> (bool, Value) {
        let state = self.telemetry.db_outcomes();
        let ok = state.up();
        let describe = |r: &Option<Result<(), String>>| match r {
            None => json!("unknown"),
            Some(Ok(())) => json!("ok"),
            Some(Err(e)) => json!(e),
        };
        (
            ok,
            json!({ "ok": ok, "ping": describe(&state.ping), "last_write": describe(&state.write) }),
        )
    }

    fn queue_check(&self) -> (bool, Value) {
        let snap = self.buffer.levels();
        let fill = snap.bytes as f64 / snap.budget.max(1) as f64;
        let ok = fill < self.config.queue_threshold;
        (
            ok,
            json!({
                "ok": ok,
                "bytes": snap.bytes,
                "budget": snap.budget,
                "fill": fill,
                "threshold": self.config.queue_threshold,
                "entries": snap.held(),
                "oldest_age_seconds": snap.oldest_age.map_or(0.0, |d| d.as_secs_f64()),
            }),
        )
    }

    fn spool_check(&self) -> (bool, Value) {
        let Some(snap) = self.buffer.spool_levels() else {
            return (true, json!({ "ok": true, "enabled": false }));
        };
        let ok = !snap.failing;
        (
            ok,
            json!({
                "ok": ok,
                "enabled": true,
                "bytes": snap.bytes,
                "segments": snap.segments,
                "write_errors": snap.write_errors,
            }),
        )
    }

    fn overload_check(&self) -> (bool, Value) {
        let saturated = self.limiter.saturated_for();
        let ok = saturated.is_none_or(|d| d < self.config.overload_after);
        (
            ok,
            json!({
                "ok": ok,
                "in_flight": self.limiter.in_use(),
                "max": self.limiter.max(),
                "saturated_for_seconds": saturated.map_or(0.0, |d| d.as_secs_f64()),
            }),
        )
    }
}

/// What anyone may see of a health body: the status and which checks pass, without the
/// details (error text from the database, sizes, paths).
pub fn summary(body: &Value) -> Value {
    let checks: serde_json::Map<String, Value> = body["checks"]
        .as_object()
        .map(|checks| {
            checks
                .iter()
                .map(|(name, check)| (name.clone(), json!({ "ok": check["ok"] })))
                .collect()
        })
        .unwrap_or_default();
    json!({ "status": body["status"], "checks": checks })
}

/// Pings the store every `interval` until shutdown.
pub async fn run_pinger(
    store: Arc<dyn Store>,
    telemetry: Arc<Telemetry>,
    interval: Duration,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_ok = None;
    loop {
        let result = match tokio::time::timeout(timeout, store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(StoreError::Timeout {
                operation: "ping",
                after: timeout,
            }
            .to_string()),
        };
        let ok = result.is_ok();
        if last_ok != Some(ok) {
            match &result {
                Ok(()) => tracing::info!(ev = "db", msg = "database reachable"),
                Err(e) => tracing::warn!(ev = "db", msg = "database unreachable", error = %e),
            }
        }
        last_ok = Some(ok);
        telemetry.emit(DbPinged { result });
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
