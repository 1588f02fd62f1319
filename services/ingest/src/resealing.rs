//! Re-sealing: the signing secrets sealed under an older key of the ring are re-sealed under
//! the sealing key (see `hookstream_store::SecretSealer`), at start and then every
//! `HOOKSTREAM_RESEAL_EVERY`, so an old key can be removed once no ingest's
//! `hookstream_sealed_secrets_by_key` shows a secret under it. Every ingest replica runs it:
//! each secret is replaced only where it is still as read, so passes side by side (or a
//! rotation meanwhile) lose nothing; replicas given different rings (during a rollout) move
//! secrets to their own sealing key until they agree.

use std::sync::Arc;
use std::time::Duration;

use hookstream_runtime::shutdown::CancellationToken;
use hookstream_store::{SealingCensus, Store};

use crate::metrics;

/// Runs a pass at start and then every `every` until shutdown.
pub async fn run(store: Arc<dyn Store>, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match store.reseal_secrets().await {
            Ok(census) => {
                metrics::RESEAL_PASSES.with_label_values(&["done"]).inc();
                report(&census);
            }
            Err(err) => {
                metrics::RESEAL_PASSES.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %err, "re-sealing signing secrets failed; trying again at the next pass");
            }
        }
    }
}

fn report(census: &SealingCensus) {
    for (state, count) in [
        ("current", census.current),
        ("older_key", census.older_key),
        ("plain", census.plain),
        ("unopenable", census.unopenable),
    ] {
        metrics::SEALED_SECRETS
            .with_label_values(&[state])
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    // Only the keys this pass found: a key that holds nothing any more has no series.
    metrics::SEALED_SECRETS_BY_KEY.reset();
    for (key, count) in &census.by_key {
        metrics::SEALED_SECRETS_BY_KEY
            .with_label_values(&[key])
            .set(i64::try_from(*count).unwrap_or(i64::MAX));
    }
    metrics::SECRETS_RESEALED.inc_by(census.resealed);
    if census.resealed > 0 {
        tracing::info!(
            resealed = census.resealed,
            older_key = census.older_key,
            "signing secrets re-sealed under the sealing key"
        );
    }
    if census.plain + census.unopenable > 0 {
        tracing::warn!(
            plain = census.plain,
            unopenable = census.unopenable,
            "stored signing secrets that no configured key opens: their endpoints' deliveries \
             wait until the key is configured again or the secret is rotated"
        );
    }
}
