//! Per-tenant limit on requests handled at once: one tenant's flood of slow requests (large
//! batches, a store that is slow for everyone) cannot take every place the server has.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use hookstream_model::names::Tenant;

/// How many requests of each tenant are in progress, up to `limit`.
pub struct TenantConcurrency {
    limit: usize,
    in_progress: Mutex<HashMap<Tenant, usize>>,
}

/// One request of a tenant in progress; its place is given back when dropped.
pub struct TenantPermit {
    owner: Arc<TenantConcurrency>,
    tenant: Tenant,
}

impl TenantConcurrency {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            in_progress: Mutex::new(HashMap::new()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<Tenant, usize>> {
        // Counters only: a panic elsewhere leaves nothing half-changed worth refusing.
        self.in_progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for one more request of `tenant`, or `None` if it has `limit` in progress.
    pub fn try_enter(self: &Arc<Self>, tenant: &Tenant) -> Option<TenantPermit> {
        let mut counts = self.counts();
        let count = counts.entry(tenant.clone()).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(TenantPermit {
            owner: Arc::clone(self),
            tenant: tenant.clone(),
        })
    }
}

impl Drop for TenantPermit {
    fn drop(&mut self) {
        let mut counts = self.owner.counts();
        if let Some(count) = counts.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            // Only tenants with requests in progress are remembered.
            if *count == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> Tenant {
        Tenant::parse(name, "tenant").unwrap()
    }

    #[test]
    fn a_tenant_at_its_limit_waits_and_the_others_do_not() {
        let limits = TenantConcurrency::new(2);
        let first = limits.try_enter(&tenant("acme")).unwrap();
        let _second = limits.try_enter(&tenant("acme")).unwrap();
        assert!(limits.try_enter(&tenant("acme")).is_none());
        assert!(limits.try_enter(&tenant("beta")).is_some());
        drop(first);
        assert!(limits.try_enter(&tenant("acme")).is_some());
    }

    #[test]
    fn tenants_without_requests_are_forgotten() {
        let limits = TenantConcurrency::new(1);
        drop(limits.try_enter(&tenant("acme")).unwrap());
        assert!(limits.counts().is_empty());
    }
}
