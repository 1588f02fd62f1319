//! One shutdown mechanism for the whole process.
//!
//! Every long-running loop takes a clone of the [`CancellationToken`] and stops taking new work
//! when it is cancelled; `main` cancels it on SIGINT or SIGTERM and then waits for the loops.

pub use tokio_util::sync::CancellationToken;

/// A token cancelled when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing work in flight");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the process");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs `operation` until it succeeds, backing off between tries (100 ms doubling to 10 s), or
/// until `shutdown` is cancelled (`None`). For work whose outcome must become durable before
/// its Kafka offset may be committed: an outage holds the work instead of dropping it.
pub async fn retry_until_ok<T, E, F, Fut>(
    shutdown: &CancellationToken,
    what: &str,
    mut operation: F,
) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = std::time::Duration::from_millis(100);
    loop {
        match operation().await {
            Ok(value) => return Some(value),
            Err(err) => {
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "{what} failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn it_retries_until_the_operation_succeeds() {
        let shutdown = CancellationToken::new();
        let tries = AtomicU32::new(0);
        let result = retry_until_ok(&shutdown, "flaky", || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0..=2 => Err("not yet"),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result, Some(3));
    }

    #[tokio::test]
    async fn shutdown_ends_the_retries() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let result: Option<()> =
            retry_until_ok(&shutdown, "broken", || async { Err("down") }).await;
        assert_eq!(result, None);
    }
}
