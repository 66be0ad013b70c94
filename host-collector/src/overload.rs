//! Overload protection: a global cap on concurrent requests, a bounded wait for a slot, and
//! how long the cap has been continuously saturated (which health turns into a 503).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Limiter {
    slots: Arc<Semaphore>,
    max: usize,
    wait: Duration,
    saturated_since: Mutex<Option<Instant>>,
}

/// Holds one slot; releasing it may end a saturation period.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    limiter: Arc<Limiter>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.limiter.update_saturation();
    }
}

impl Limiter {
    pub fn new(max: usize, wait: Duration) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(Limiter {
            slots: Arc::new(Semaphore::new(max)),
            max,
            wait,
            saturated_since: Mutex::new(None),
        })
    }

    /// Waits up to the configured time for a slot; `None` means the caller should get a 503.
    pub async fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let slot = Slot {
            permit: Some(permit),
            limiter: self.clone(),
        };
        self.update_saturation();
        Some(slot)
    }

    fn update_saturation(&self) {
        let full = self.slots.available_permits() == 0;
        let mut since = self
            .saturated_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match (full, *since) {
            (true, None) => *since = Some(Instant::now()),
            (false, Some(_)) => *since = None,
            _ => {}
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn in_use(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// How long every slot has been busy without a break, if they are all busy now.
    pub fn saturated_for(&self) -> Option<Duration> {
        let since = *self
            .saturated_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        since.map(|s| s.elapsed())
    }
}

impl crate::internal_events::Probe for Limiter {
    fn read(&self, readings: &mut crate::internal_events::LiveReadings) {
        readings.in_flight_requests = self.in_use() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_after_the_wait_and_tracks_saturation() {
        let limiter = Limiter::new(1, Duration::from_millis(20));
        let held = limiter.acquire().await;
        assert!(held.is_some());
        assert!(limiter.saturated_for().is_some());
        assert!(limiter.acquire().await.is_none());
        drop(held);
        assert!(limiter.saturated_for().is_none());
        assert!(limiter.acquire().await.is_some());
    }
}
