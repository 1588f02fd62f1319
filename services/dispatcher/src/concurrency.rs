//! How many requests each endpoint takes at once, as its settings said when this dispatcher
//! last read them (every delivery reads its endpoint). An endpoint's lane asks before it starts
//! a job, so a changed setting holds from the endpoint's next delivery on.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use hookstream_model::ids::EndpointId;

/// One entry per endpoint this dispatcher has read: a lane must know before its first job
/// whether it may start the next one beside it.
#[derive(Default)]
pub struct Concurrency {
    limits: Mutex<HashMap<EndpointId, usize>>,
}

impl Concurrency {
    fn limits(&self) -> MutexGuard<'_, HashMap<EndpointId, usize>> {
        // A map of numbers; a panic elsewhere leaves nothing half-changed worth refusing.
        self.limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many of the endpoint's requests may be out at once; `None` until its settings are
    /// read.
    pub fn limit(&self, endpoint: EndpointId) -> Option<usize> {
        self.limits().get(&endpoint).copied()
    }

    /// Notes the endpoint's setting as just read.
    pub fn remember(&self, endpoint: EndpointId, limit: u32) {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
        self.limits().insert(endpoint, limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_takes_what_its_setting_said_when_last_read() {
        let concurrency = Concurrency::default();
        let a = EndpointId::generate();
        let b = EndpointId::generate();
        assert_eq!(concurrency.limit(a), None);
        concurrency.remember(a, 8);
        assert_eq!(concurrency.limit(a), Some(8));
        assert_eq!(concurrency.limit(b), None);
        concurrency.remember(a, 1);
        assert_eq!(concurrency.limit(a), Some(1));
        concurrency.remember(b, 0);
        assert_eq!(concurrency.limit(b), Some(1), "never none at a time");
    }
}
