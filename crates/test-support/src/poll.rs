//! Waiting for something to become true within a deadline: [`wait_until`] for blocking
//! tests, [`eventually`] for async ones.

use std::future::Future;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// Default deadline for things that should happen "soon" (startup, readiness).
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// Default polling interval for [`wait_until`].
pub const POLL: Duration = Duration::from_millis(50);

/// Something a polled closure can return: `bool` or `Option<T>`.
pub trait Ready {
    type Output;
    fn into_ready(self) -> Option<Self::Output>;
}

impl Ready for bool {
    type Output = ();
    fn into_ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn into_ready(self) -> Option<T> {
        self
    }
}

/// Calls `check` every `poll` until it is ready or `deadline` has passed.
/// Returns the ready value, or `None` on timeout (the closure runs at least once).
pub fn wait_until<R: Ready>(
    deadline: Duration,
    poll: Duration,
    mut check: impl FnMut() -> R,
) -> Option<R::Output> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().into_ready() {
            return Some(value);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(poll);
    }
}

/// True once something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_tcp(port: u16, deadline: Duration) -> bool {
    let addr = ("127.0.0.1", port);
    wait_until(deadline, POLL, || TcpStream::connect(addr).is_ok()).is_some()
}

/// Polls the async `check` until it holds or `timeout` passes (then panics with `what`).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
