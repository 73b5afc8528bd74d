//! Waits for an event, not for the clock: a condition looked at again and
//! again until it holds or a bound passes. A loaded machine only makes it
//! look more often; nothing guesses how long an event takes.

use std::time::{Duration, Instant};

/// How often [`eventually`] and [`wait_until`] look at their condition again.
pub const POLL: Duration = Duration::from_millis(20);

/// Waits until `cond` holds, looking every [`POLL`]; panics naming `what`
/// once `within` has passed.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// The blocking form of [`eventually`].
pub fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}
