//! Whether the dispatcher is moving. `/healthz` (restart me): the consume loop turns (a
//! heartbeat). `/readyz` (I cannot do my work): no job of a lane (from its start through the
//! store reads, the claim, the request, to its durable outcome) lasts longer than a claim's
//! lease, which a healthy one never does: the request has a timeout and the lease is at least
//! twice it. A job that old is wedged on a dependency (a store that hangs, a broker that does
//! not take writes); restarting the dispatcher would not mend that, so it is readiness.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// When the consume loop last turned.
#[derive(Debug)]
pub struct Heartbeat {
    since: Instant,
    /// Milliseconds from `since` to the last beat.
    last: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// The sends under way, each from its claim until its outcome is recorded.
#[derive(Debug, Default)]
pub struct Sends {
    next: AtomicU64,
    started: Mutex<HashMap<u64, Instant>>,
}

impl Sends {
    fn started(&self) -> MutexGuard<'_, HashMap<u64, Instant>> {
        // Start times only; nothing a panic could leave half-written.
        self.started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A send starts; it ends when the guard is dropped.
    pub fn start(self: &Arc<Self>) -> SendGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.started().insert(id, Instant::now());
        SendGuard {
            sends: Arc::clone(self),
            id,
        }
    }

    /// How long the oldest send under way has lasted.
    pub fn oldest(&self) -> Option<Duration> {
        self.started().values().min().map(Instant::elapsed)
    }
}

/// One send under way; dropping it ends it.
#[derive(Debug)]
pub struct SendGuard {
    sends: Arc<Sends>,
    id: u64,
}

impl Drop for SendGuard {
    fn drop(&mut self) {
        self.sends.started().remove(&self.id);
    }
}

/// The `/healthz` verdict: the consume loop turns.
pub fn loop_turns(silent_for: Duration, limit: Duration) -> Result<(), String> {
    if silent_for > limit {
        return Err(format!(
            "the consume loop has not turned for {} s",
            silent_for.as_secs()
        ));
    }
    Ok(())
}

/// The `/readyz` verdict: no job has outlasted a claim's lease.
pub fn sends_move(oldest_send: Option<Duration>, limit: Duration) -> Result<(), String> {
    match oldest_send {
        Some(age) if age > limit => Err(format!(
            "a send has been under way for {} s, longer than its claim lasts ({} s)",
            age.as_secs(),
            limit.as_secs()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_send_is_the_longest_running_one_still_under_way() {
        let sends = Arc::new(Sends::default());
        assert_eq!(sends.oldest(), None);
        let first = sends.start();
        let second = sends.start();
        let oldest = sends.oldest().expect("two sends");
        drop(first);
        assert!(sends.oldest().expect("one send") <= oldest + Duration::from_secs(1));
        drop(second);
        assert_eq!(sends.oldest(), None);
    }

    #[test]
    fn healthy_until_the_loop_stops_turning_ready_until_a_send_outlasts_its_claim() {
        let minute = Duration::from_secs(60);
        let second = Duration::from_secs(1);
        assert_eq!(loop_turns(second, minute), Ok(()));
        assert!(loop_turns(2 * minute, minute).is_err_and(|e| e.contains("consume loop")));
        assert_eq!(sends_move(None, minute), Ok(()));
        assert_eq!(sends_move(Some(second), minute), Ok(()));
        assert!(sends_move(Some(2 * minute), minute).is_err_and(|e| e.contains("send")));
        let beat = Heartbeat::default();
        beat.beat();
        assert!(beat.silent_for() < minute);
    }
}
