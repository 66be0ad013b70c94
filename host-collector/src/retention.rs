//! Optional retention: periodically deletes rows older than the configured age, in small
//! batches so deletes never hold long locks against the writer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::internal_events::{RowsExpired, Telemetry};
use crate::store::Store;

pub struct RetentionConfig {
    pub max_age: Duration,
    pub interval: Duration,
    pub batch: u32,
}

/// Deletes everything older than `max_age` now; returns the number of rows deleted.
pub async fn sweep(store: &dyn Store, config: &RetentionConfig) -> Result<u64, String> {
    let age = chrono::Duration::from_std(config.max_age).map_err(|e| e.to_string())?;
    let cutoff = (chrono::Utc::now() - age).naive_utc();
    let mut total = 0;
    loop {
        let n = store
            .delete_older_than(cutoff, config.batch)
            .await
            .map_err(|e| e.to_string())?;
        total += n;
        if n < u64::from(config.batch) {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

pub async fn run(
    store: Arc<dyn Store>,
    telemetry: Arc<Telemetry>,
    config: RetentionConfig,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match sweep(store.as_ref(), &config).await {
            Ok(n) => {
                telemetry.emit(RowsExpired { count: n });
                if n > 0 {
                    tracing::info!(ev = "retention", msg = "old rows deleted", rows = n);
                }
            }
            Err(e) => tracing::warn!(ev = "retention", msg = "retention sweep failed", error = %e),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
