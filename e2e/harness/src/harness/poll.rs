//! Waiting for the cluster: `eventually` and `always_for`, polls with a deadline (never a bare sleep).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

// Polling

/// The answer of one poll: the value, or why not yet (reported on timeout).
pub type Check<T> = Result<T, String>;

/// Polls `f` every 500 ms until it returns `Ok`, or fails after `timeout` with the last reason. API errors
/// count as "not yet".
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Check<T>>>,
{
    let start = Instant::now();
    loop {
        let last = match f().await {
            Ok(Ok(v)) => {
                eprintln!("  ok after {:>5.1}s: {what}", start.elapsed().as_secs_f64());
                return Ok(v);
            }
            Ok(Err(why)) => why,
            Err(e) => format!("error: {e:#}"),
        };
        if start.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for: {what}\n  last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Checks that `f` holds at every poll for `period` (an invariant under observation, e.g. "no second
/// migration appears"). Fails at the first poll where it does not.
pub async fn always_for<F, Fut>(what: &str, period: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Check<()>>>,
{
    let start = Instant::now();
    while start.elapsed() < period {
        if let Err(why) = f().await? {
            bail!("{what} stopped holding after {:.1}s: {why}", start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("  held for {:>5.1}s: {what}", period.as_secs_f64());
    Ok(())
}
