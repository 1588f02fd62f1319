//! How many requests each endpoint takes at once, as its settings said when this dispatcher
//! last read them (every delivery reads its endpoint). An endpoint's lane asks before it starts
//! a job, so a changed setting holds from the endpoint's next delivery on.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use hookstream_model::ids::EndpointId;
use hookstream_model::shaping::{Ordering, Shaping};

/// One entry per endpoint this dispatcher has read: a lane must know before its first job
/// whether it may start the next one beside it.
#[derive(Default)]
pub struct Concurrency {
    limits: Mutex<HashMap<EndpointId, Setting>>,
}

/// What this dispatcher last read of an endpoint's ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setting {
    limit: usize,
    strict: bool,
}

impl Concurrency {
    fn limits(&self) -> MutexGuard<'_, HashMap<EndpointId, Setting>> {
        // A map of numbers; a panic elsewhere leaves nothing half-changed worth refusing.
        self.limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many of the endpoint's requests may be out at once; `None` until its settings are
    /// read.
    pub fn limit(&self, endpoint: EndpointId) -> Option<usize> {
        self.limits().get(&endpoint).map(|s| s.limit)
    }

    /// Whether the endpoint keeps strict order, as last read: its lane only queues its tasks
    /// in the store, so its backlog in memory never fills. False until its settings are read.
    pub fn known_strict(&self, endpoint: EndpointId) -> bool {
        self.limits().get(&endpoint).is_some_and(|s| s.strict)
    }

    /// Notes the endpoint's settings as just read.
    pub fn remember(&self, endpoint: EndpointId, shaping: &Shaping) {
        self.remember_limit(
            endpoint,
            shaping.concurrency(),
            shaping.ordering == Ordering::Strict,
        );
    }

    /// Notes an endpoint's limit, and whether it keeps strict order.
    pub fn remember_limit(&self, endpoint: EndpointId, limit: u32, strict: bool) {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
        self.limits().insert(endpoint, Setting { limit, strict });
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
        let unordered = Shaping {
            ordering: Ordering::None,
            max_in_flight: Some(8),
            ..Shaping::default()
        };
        concurrency.remember(a, &unordered);
        assert_eq!(concurrency.limit(a), Some(8));
        assert!(!concurrency.known_strict(a));
        assert_eq!(concurrency.limit(b), None);
        assert!(
            !concurrency.known_strict(b),
            "not before its settings are read"
        );
        let strict = Shaping {
            ordering: Ordering::Strict,
            ..unordered
        };
        concurrency.remember(a, &strict);
        assert_eq!(concurrency.limit(a), Some(1));
        assert!(concurrency.known_strict(a));
        concurrency.remember_limit(b, 0, false);
        assert_eq!(concurrency.limit(b), Some(1), "never none at a time");
    }
}
