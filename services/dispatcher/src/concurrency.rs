//! How each endpoint takes its requests (how many at once, and whether in batches), as its
//! settings said when this dispatcher last read them (every delivery reads its endpoint). An
//! endpoint's lane asks before it starts a job, so a changed setting holds from the endpoint's
//! next delivery on.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use hookstream_model::ids::EndpointId;
use hookstream_model::shaping::{Batching, Ordering, Shaping};

/// What a lane needs to know of its endpoint's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneSettings {
    /// Requests out at once (at least one).
    pub limit: usize,
    /// Deliveries sent together, if the endpoint takes them so.
    pub batch: Option<Batching>,
    /// Whether the lane may claim the attempts of its queued jobs ahead, in one go (see
    /// `crate::claims_ahead::ClaimsAhead`): only in partition order with no rate limit, where the
    /// jobs go out one after another as fast as the endpoint answers.
    pub claims_ahead: bool,
    /// Whether the endpoint keeps strict order: its backlog waits in the store, not in memory.
    pub strict: bool,
}

impl LaneSettings {
    /// One request at a time, one delivery each: always safe.
    pub const ONE_BY_ONE: Self = Self {
        limit: 1,
        batch: None,
        claims_ahead: false,
        strict: false,
    };

    /// One request at a time, one delivery each (claims taken ahead or not).
    pub fn is_one_by_one(&self) -> bool {
        self.limit == 1 && self.batch.is_none()
    }

    pub fn of(shaping: &Shaping) -> Self {
        Self {
            limit: usize::try_from(shaping.concurrency())
                .unwrap_or(usize::MAX)
                .max(1),
            batch: shaping.batching(),
            claims_ahead: shaping.ordering == Ordering::Partition
                && shaping.rate_limit.is_none()
                && shaping.batching().is_none(),
            strict: shaping.ordering == Ordering::Strict,
        }
    }
}

/// One entry per endpoint this dispatcher has read: a lane must know before its first job
/// whether it may start the next one beside it, or gather a batch.
#[derive(Default)]
pub struct Concurrency {
    settings: Mutex<HashMap<EndpointId, LaneSettings>>,
}

impl Concurrency {
    fn settings(&self) -> MutexGuard<'_, HashMap<EndpointId, LaneSettings>> {
        // A map of numbers; a panic elsewhere leaves nothing half-changed worth refusing.
        self.settings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The endpoint's settings as last read; `None` until they are.
    pub fn of(&self, endpoint: EndpointId) -> Option<LaneSettings> {
        self.settings().get(&endpoint).copied()
    }

    /// Notes the endpoint's settings as just read.
    pub fn remember(&self, endpoint: EndpointId, shaping: &Shaping) {
        self.settings().insert(endpoint, LaneSettings::of(shaping));
    }
}

#[cfg(test)]
mod tests {
    use hookstream_model::shaping::Ordering;

    use super::*;

    #[test]
    fn an_endpoint_takes_what_its_settings_said_when_last_read() {
        let concurrency = Concurrency::default();
        let a = EndpointId::generate();
        let b = EndpointId::generate();
        assert_eq!(concurrency.of(a), None);
        let unordered = Shaping {
            ordering: Ordering::None,
            max_in_flight: Some(8),
            ..Shaping::default()
        };
        concurrency.remember(a, &unordered);
        assert_eq!(concurrency.of(a).map(|s| s.limit), Some(8));
        assert_eq!(concurrency.of(b), None);
        concurrency.remember(a, &Shaping::default());
        let partition = concurrency.of(a).unwrap();
        assert!(partition.is_one_by_one() && partition.claims_ahead);
        let limited = Shaping {
            rate_limit: Some(hookstream_model::shaping::RateLimit {
                per_second: 10.0,
                burst: 1,
            }),
            ..Shaping::default()
        };
        concurrency.remember(a, &limited);
        assert!(
            !concurrency.of(a).unwrap().claims_ahead,
            "a rate limit paces each claim"
        );

        let batch = Batching {
            max_events: 20,
            max_wait_ms: 500,
        };
        let batched = Shaping {
            batch: Some(batch),
            ..Shaping::default()
        };
        concurrency.remember(b, &batched);
        assert_eq!(concurrency.of(b).and_then(|s| s.batch), Some(batch));
        let strict = Shaping {
            ordering: Ordering::Strict,
            ..batched
        };
        concurrency.remember(b, &strict);
        assert_eq!(
            concurrency.of(b).and_then(|s| s.batch),
            None,
            "strict order sends one by one"
        );
        assert!(concurrency.of(b).is_some_and(|s| s.strict));
        assert!(
            !concurrency.of(b).unwrap().claims_ahead,
            "a strict task is queued, not sent"
        );
    }
}
