//! Claiming an attempt before it is sent. A delivery's task can be read more than once (a
//! rebalance re-read, an outbox republish, a retry forwarded twice); the claim makes sure that
//! only one copy sends a given attempt, and none sends once a final outcome is recorded.
//!
//! A claim is a lease on the delivery's next attempt number, taken with a compare-and-set: the
//! store refuses it while the delivery is final, while the task is behind the store's attempt
//! count, or while another copy's lease holds. The attempt is recorded with the claim's token, so
//! a copy whose lease ran out and was taken over cannot overwrite what the newer claim recorded.
//! A claimer that dies leaves its lease to run out; a copy read after that claims and sends
//! (at-least-once).

use time::OffsetDateTime;
use ulid::Ulid;

use hookstream_model::delivery::{Delivery, DeliveryStatus};
use hookstream_model::ids::DeliveryId;

/// The right to send attempt `number` of a delivery, until the lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptClaim {
    pub delivery_id: DeliveryId,
    /// The number the attempt gets in the log.
    pub number: u32,
    /// Tells this claim from any other, also one a later copy takes on the same number.
    pub token: String,
    pub until: OffsetDateTime,
}

impl AttemptClaim {
    pub(crate) fn new(delivery_id: DeliveryId, number: u32, until: OffsetDateTime) -> Self {
        Self {
            delivery_id,
            number,
            token: Ulid::new().to_string(),
            until,
        }
    }
}

/// What [`crate::Store::claim_attempt`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// The attempt is this copy's to send. The delivery is returned as it now stands
    /// (`delivering`).
    Claimed {
        delivery: Delivery,
        claim: AttemptClaim,
    },
    /// The delivery is final: nothing more is sent.
    Final(Delivery),
    /// The store counted more attempts than the task made: a stale copy, whose successor (a
    /// retry task, a dead letter) is already written.
    Stale(Delivery),
    /// Another copy holds a claim on this attempt until `until`: look again later.
    Busy { until: OffsetDateTime },
    /// The store knows no such delivery.
    Missing,
}

/// What [`crate::Store::record_attempt`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The attempt is in the log under the claim's number and the delivery has its new status.
    /// Recording again with the same claim answers this too, without counting twice.
    Recorded,
    /// Nothing changed: the claim's lease ran out and another copy claimed the attempt since.
    ClaimLost,
}

/// The claim columns stored beside a delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoredClaim {
    pub token: Option<String>,
    pub until: Option<OffsetDateTime>,
}

/// What a claim request should do, decided from the stored row alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimDecision {
    Final,
    Stale,
    Busy(OffsetDateTime),
    /// Take attempt `number`.
    Claim {
        number: u32,
    },
}

/// Decides a claim. `lease` bounds how far ahead a held claim may run: one that ends more than
/// two leases from now was taken by a claimer whose clock runs far ahead of ours, and is treated
/// as run out rather than trusted for as long as that clock says. (Within that, a claimer a
/// little ahead keeps its claim.)
pub(crate) fn decide_claim(
    delivery: &Delivery,
    stored: &StoredClaim,
    attempts_made: u32,
    now: OffsetDateTime,
    lease: std::time::Duration,
) -> ClaimDecision {
    if delivery.status.is_final() {
        return ClaimDecision::Final;
    }
    if attempts_made < delivery.attempts {
        return ClaimDecision::Stale;
    }
    match stored.until {
        Some(until) if until > now && until <= now + lease * 2 => ClaimDecision::Busy(until),
        _ => ClaimDecision::Claim {
            number: delivery.attempts.saturating_add(1),
        },
    }
}

/// What recording an attempt under `claim` should do, decided from the stored row alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordDecision {
    /// Count the attempt and set the status.
    Record,
    /// This claim's attempt is counted already (a retried call): only the log row may be
    /// missing, and writing it again is harmless.
    AlreadyCounted,
    ClaimLost,
}

pub(crate) fn decide_record(
    status: DeliveryStatus,
    attempts: u32,
    stored: &StoredClaim,
    claim: &AttemptClaim,
    recording: DeliveryStatus,
) -> RecordDecision {
    if stored.token.as_deref() != Some(claim.token.as_str()) {
        return RecordDecision::ClaimLost;
    }
    // Counted under this claim, with the status this call sets: an earlier try landed. (A count
    // by someone else, such as a dispatcher of a version that took no claims, shows another
    // status, or none of this claim's.)
    if attempts == claim.number && status == recording {
        return RecordDecision::AlreadyCounted;
    }
    if attempts.saturating_add(1) == claim.number && !status.is_final() {
        return RecordDecision::Record;
    }
    RecordDecision::ClaimLost
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookstream_model::ids::{EndpointId, EventId};
    use hookstream_model::names::{EventType, Tenant};
    use time::Duration;

    const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

    fn delivery(status: DeliveryStatus, attempts: u32) -> Delivery {
        let now = OffsetDateTime::now_utc();
        Delivery {
            id: DeliveryId::generate(),
            event_id: EventId::generate(),
            endpoint_id: EndpointId::generate(),
            tenant: Tenant::parse("acme", "tenant").unwrap(),
            event_type: EventType::parse("order.created", "event_type").unwrap(),
            status,
            attempts,
            next_attempt_at: None,
            next_tier: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_claim_takes_the_next_number_unless_final_stale_or_held() {
        let now = OffsetDateTime::now_utc();
        let free = StoredClaim::default();
        let d = delivery(DeliveryStatus::Retrying, 2);
        assert_eq!(
            decide_claim(&d, &free, 2, now, LEASE),
            ClaimDecision::Claim { number: 3 }
        );
        // A task ahead of the store (its predecessor's record was lost) still claims the
        // store's next number.
        assert_eq!(
            decide_claim(&d, &free, 3, now, LEASE),
            ClaimDecision::Claim { number: 3 }
        );
        assert_eq!(decide_claim(&d, &free, 1, now, LEASE), ClaimDecision::Stale);
        for status in [DeliveryStatus::Delivered, DeliveryStatus::DeadLettered] {
            assert_eq!(
                decide_claim(&delivery(status, 2), &free, 2, now, LEASE),
                ClaimDecision::Final
            );
        }
        let until = now + Duration::seconds(90);
        let held = StoredClaim {
            token: Some("other".into()),
            until: Some(until),
        };
        assert_eq!(
            decide_claim(&d, &held, 2, now, LEASE),
            ClaimDecision::Busy(until)
        );
        let expired = StoredClaim {
            until: Some(now - Duration::seconds(1)),
            ..held
        };
        assert_eq!(
            decide_claim(&d, &expired, 2, now, LEASE),
            ClaimDecision::Claim { number: 3 }
        );
        // Taken by a claimer whose clock is an hour ahead: not trusted for that hour.
        let from_the_future = StoredClaim {
            token: Some("skewed".into()),
            until: Some(now + Duration::hours(1)),
        };
        assert_eq!(
            decide_claim(&d, &from_the_future, 2, now, LEASE),
            ClaimDecision::Claim { number: 3 }
        );
    }

    #[test]
    fn only_the_claim_holder_records_and_only_once() {
        let claim = AttemptClaim::new(
            DeliveryId::generate(),
            3,
            OffsetDateTime::now_utc() + Duration::seconds(30),
        );
        let mine = StoredClaim {
            token: Some(claim.token.clone()),
            until: Some(claim.until),
        };
        let delivering = DeliveryStatus::Delivering;
        let delivered = DeliveryStatus::Delivered;
        assert_eq!(
            decide_record(delivering, 2, &mine, &claim, delivered),
            RecordDecision::Record
        );
        assert_eq!(
            decide_record(delivered, 3, &mine, &claim, delivered),
            RecordDecision::AlreadyCounted
        );
        assert_eq!(
            decide_record(DeliveryStatus::Retrying, 3, &mine, &claim, delivered),
            RecordDecision::ClaimLost,
            "counted by someone else, with another outcome"
        );
        let theirs = StoredClaim {
            token: Some("a later claim".into()),
            ..mine.clone()
        };
        assert_eq!(
            decide_record(delivering, 2, &theirs, &claim, delivered),
            RecordDecision::ClaimLost
        );
        assert_eq!(
            decide_record(delivering, 2, &StoredClaim::default(), &claim, delivered),
            RecordDecision::ClaimLost
        );
        assert_eq!(
            decide_record(delivered, 2, &mine, &claim, delivered),
            RecordDecision::ClaimLost,
            "a final status is never changed"
        );
    }
}
