//! The kill switch as the dispatcher sees it: the store's `sending_paused` flag, polled.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use hookstream_runtime::shutdown::CancellationToken;
use hookstream_store::Store;

use crate::metrics;

/// How often the store is asked; a pause or resume takes effect within this plus a request.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// Watches the kill switch; the receiver holds `true` while all sending is paused. A store that
/// cannot be read keeps the last known state.
pub fn watch(store: Arc<dyn Store>, shutdown: CancellationToken) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(POLL_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match store.sending_paused().await {
                Ok(paused) => {
                    tx.send_if_modified(|current| {
                        let changed = *current != paused;
                        if changed {
                            tracing::warn!(paused, "kill switch changed");
                        }
                        *current = paused;
                        changed
                    });
                    // After the workers' view, so the gauge never claims more than they know.
                    metrics::SENDING_PAUSED.set(i64::from(paused));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the kill switch; keeping its last state")
                }
            }
        }
    });
    rx
}
