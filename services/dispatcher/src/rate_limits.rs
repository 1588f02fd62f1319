//! Endpoints' rate limits, kept by the dispatcher that owns each endpoint's partition (every
//! task of an endpoint is read there, so no other dispatcher needs to agree). One token bucket
//! (GCRA) per limited endpoint.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use hookstream_model::ids::EndpointId;
use hookstream_model::shaping::RateLimit;

/// Buckets idle for longer than they take to refill are forgotten this often (in checks), so
/// memory follows the endpoints being sent to.
const PRUNE_EVERY: u64 = 4096;

struct Bucket {
    limit: RateLimit,
    limiter: DefaultDirectRateLimiter,
    last_used: Instant,
}

impl Bucket {
    fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            limiter: RateLimiter::direct(quota(limit)),
            last_used: Instant::now(),
        }
    }

    /// Full again: a new bucket would behave the same.
    fn is_refilled(&self, now: Instant) -> bool {
        let refill = Duration::from_secs_f64(f64::from(self.limit.burst) / self.limit.per_second);
        now.saturating_duration_since(self.last_used) >= refill
    }
}

fn quota(limit: RateLimit) -> Quota {
    let period = Duration::from_secs_f64(1.0 / limit.per_second);
    // The store and the API keep the rate within bounds, so neither fallback is reached.
    let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
    quota.allow_burst(NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN))
}

#[derive(Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<EndpointId, Bucket>>,
    /// The limits seen, kept after a bucket is forgotten, so the consumer knows an endpoint's
    /// pace before its lane shows it. One entry per limited endpoint this dispatcher sent to.
    limits: Mutex<HashMap<EndpointId, RateLimit>>,
    /// Whether any endpoint has a limit: unlimited endpoints' tasks then take no lock.
    any: AtomicBool,
    checks: AtomicU64,
    clock: DefaultClock,
}

impl RateLimits {
    fn buckets(&self) -> MutexGuard<'_, HashMap<EndpointId, Bucket>> {
        // Buckets only; a panic elsewhere leaves nothing half-changed worth refusing.
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn limits(&self) -> MutexGuard<'_, HashMap<EndpointId, RateLimit>> {
        self.limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The least time between two of the endpoint's deliveries under its limit as last seen;
    /// zero for an endpoint without one.
    pub fn period(&self, endpoint: EndpointId) -> Duration {
        if !self.any.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        self.limits()
            .get(&endpoint)
            .map_or(Duration::ZERO, |limit| {
                Duration::from_secs_f64(1.0 / limit.per_second)
            })
    }

    /// Notes the endpoint's current limit (`None`: none).
    fn remember(&self, endpoint: EndpointId, limit: Option<RateLimit>) {
        let mut limits = self.limits();
        match limit {
            Some(limit) => {
                limits.insert(endpoint, limit);
            }
            None => {
                limits.remove(&endpoint);
            }
        }
        self.any.store(!limits.is_empty(), Ordering::Relaxed);
    }

    /// Takes one delivery's turn at `endpoint` under `limit` (its current setting; `None` for
    /// no limit), or says how long until the next turn. A changed limit starts a fresh bucket.
    pub fn take_turn(
        &self,
        endpoint: EndpointId,
        limit: Option<RateLimit>,
    ) -> Result<(), Duration> {
        if limit.is_none() && !self.any.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.remember(endpoint, limit);
        let now = Instant::now();
        let mut buckets = self.buckets();
        let checks = self.checks.fetch_add(1, Ordering::Relaxed);
        if checks % PRUNE_EVERY == PRUNE_EVERY - 1 {
            forget_refilled(&mut buckets, now);
        }
        let Some(limit) = limit else {
            buckets.remove(&endpoint);
            return Ok(());
        };
        let bucket = buckets
            .entry(endpoint)
            .and_modify(|bucket| {
                if bucket.limit != limit {
                    *bucket = Bucket::new(limit);
                }
            })
            .or_insert_with(|| Bucket::new(limit));
        bucket.last_used = now;
        bucket
            .limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// How many endpoints have a bucket now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets().len()
    }
}

fn forget_refilled(buckets: &mut HashMap<EndpointId, Bucket>, now: Instant) {
    buckets.retain(|_, bucket| !bucket.is_refilled(now));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: f64, burst: u32) -> Option<RateLimit> {
        Some(RateLimit::new(per_second, Some(burst), "rate_limit").unwrap())
    }

    #[test]
    fn an_endpoint_past_its_burst_waits_about_one_period_and_others_do_not() {
        let limits = RateLimits::default();
        let (slow, other) = (EndpointId::generate(), EndpointId::generate());
        assert!(limits.take_turn(slow, limit(2.0, 3)).is_ok());
        assert!(limits.take_turn(slow, limit(2.0, 3)).is_ok());
        assert!(limits.take_turn(slow, limit(2.0, 3)).is_ok());
        let wait = limits.take_turn(slow, limit(2.0, 3)).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limits.take_turn(other, limit(2.0, 1)).is_ok());
        assert!((0..1000).all(|_| limits.take_turn(other, None).is_ok()));
    }

    #[test]
    fn a_changed_limit_applies_at_once_and_no_limit_forgets_the_bucket() {
        let limits = RateLimits::default();
        let endpoint = EndpointId::generate();
        assert!(limits.take_turn(endpoint, limit(0.01, 1)).is_ok());
        let wait = limits.take_turn(endpoint, limit(0.01, 1)).unwrap_err();
        assert!(wait > Duration::from_secs(99), "{wait:?}");
        assert!(limits.take_turn(endpoint, limit(1000.0, 5)).is_ok());
        assert_eq!(limits.len(), 1);
        assert!(limits.take_turn(endpoint, None).is_ok());
        assert_eq!(limits.len(), 0);
        assert_eq!(limits.period(endpoint), Duration::ZERO);
    }

    #[test]
    fn an_endpoints_period_is_known_after_its_bucket_is_forgotten() {
        let limits = RateLimits::default();
        let (limited, other) = (EndpointId::generate(), EndpointId::generate());
        assert_eq!(limits.period(limited), Duration::ZERO);
        assert!(limits.take_turn(limited, limit(4.0, 1)).is_ok());
        forget_refilled(
            &mut limits.buckets(),
            Instant::now() + Duration::from_secs(1),
        );
        assert_eq!(limits.len(), 0);
        assert_eq!(limits.period(limited), Duration::from_millis(250));
        assert_eq!(limits.period(other), Duration::ZERO);
    }

    #[test]
    fn only_buckets_back_to_full_are_forgotten() {
        let limits = RateLimits::default();
        let (quick, slow) = (EndpointId::generate(), EndpointId::generate());
        // Full again 1 s and 100 s after their last turn.
        assert!(limits.take_turn(quick, limit(1.0, 1)).is_ok());
        assert!(limits.take_turn(slow, limit(0.01, 1)).is_ok());
        forget_refilled(
            &mut limits.buckets(),
            Instant::now() + Duration::from_secs(2),
        );
        assert_eq!(limits.len(), 1);
        assert!(limits.take_turn(slow, limit(0.01, 1)).is_err(), "kept");
    }
}
