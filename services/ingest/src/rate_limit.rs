//! Per-tenant rate limit on taking events in over HTTP: one tenant's burst cannot crowd out
//! the others. Off unless configured.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use hookstream_model::names::Tenant;
use hookstream_runtime::shutdown::CancellationToken;

/// Events per second per tenant, with a burst allowance.
pub struct TenantLimiter {
    limiter: Option<DefaultKeyedRateLimiter<Tenant>>,
    clock: DefaultClock,
}

impl TenantLimiter {
    /// `None`: no limit.
    pub fn new(per_second: Option<NonZeroU32>, burst: Option<NonZeroU32>) -> Self {
        Self {
            limiter: per_second.map(|rate| {
                RateLimiter::dashmap(Quota::per_second(rate).allow_burst(burst.unwrap_or(rate)))
            }),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one event of `tenant` if its rate allows; otherwise how long to wait.
    pub fn check(&self, tenant: &Tenant) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(tenant)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Every minute until shutdown, forgets tenants that have been quiet long enough to be back
    /// at full burst, so the limiter's memory follows the active tenants.
    pub async fn forget_quiet_tenants(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => limiter.retain_recent(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_over_its_burst_waits_and_others_do_not() {
        let limiter = TenantLimiter::new(NonZeroU32::new(1), NonZeroU32::new(2));
        let acme = Tenant::parse("acme", "tenant").unwrap();
        let other = Tenant::parse("other", "tenant").unwrap();
        assert!(limiter.check(&acme).is_ok());
        assert!(limiter.check(&acme).is_ok());
        let wait = limiter.check(&acme).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limiter.check(&other).is_ok());
        let unlimited = TenantLimiter::new(None, None);
        assert!((0..10_000).all(|_| unlimited.check(&acme).is_ok()));
    }
}
