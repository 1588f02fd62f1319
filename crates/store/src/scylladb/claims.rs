//! Claiming an attempt, giving a claim back and recording what the attempt came to: each a
//! lightweight transaction on the delivery's row, so two copies of a task never both send.

use std::time::Duration;

use time::OffsetDateTime;

use hookstream_model::delivery::{Delivery, DeliveryStatus};
use hookstream_model::ids::DeliveryId;

use crate::claim::{ClaimDecision, RecordDecision, decide_claim, decide_record};
use crate::{AttemptClaim, ClaimOutcome, NewAttempt, RecordOutcome, StoreError};

use super::decode::applied;
use super::{CAS_ROUNDS, ScyllaStore, ts};

impl ScyllaStore {
    /// Claims the next attempt of a delivery, by a lightweight transaction (see [`decide_claim`]).
    pub(super) async fn claim(
        &self,
        id: DeliveryId,
        attempts_made: u32,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let text = id.to_string();
        // A lost compare-and-set means another copy changed the row since it was read: read it
        // again and decide again.
        for _ in 0..CAS_ROUNDS {
            let Some((delivery, stored)) = self.delivery_with_claim(&text).await? else {
                return Ok(ClaimOutcome::Missing);
            };
            let now = OffsetDateTime::now_utc();
            let number = match decide_claim(&delivery, &stored, attempts_made, now, lease) {
                ClaimDecision::Final => return Ok(ClaimOutcome::Final(delivery)),
                ClaimDecision::Stale => return Ok(ClaimOutcome::Stale(delivery)),
                ClaimDecision::Busy(until) => return Ok(ClaimOutcome::Busy { until }),
                ClaimDecision::Claim { number } => number,
            };
            let claim = AttemptClaim::new(id, number, now + lease);
            let taken = applied(
                self.run(
                    &self.statements.claim_attempt,
                    (
                        self.delivery_ttl(DeliveryStatus::Delivering),
                        ts(now),
                        claim.token.as_str(),
                        ts(claim.until),
                        &text,
                        delivery.status.as_str(),
                        i32::try_from(delivery.attempts).unwrap_or(i32::MAX),
                        stored.token.as_deref(),
                    ),
                )
                .await?,
            )?;
            if taken {
                let delivery = Delivery {
                    status: DeliveryStatus::Delivering,
                    updated_at: now,
                    ..delivery
                };
                return Ok(ClaimOutcome::Claimed { delivery, claim });
            }
        }
        Err(StoreError::Backend(format!(
            "scylla: delivery {text} changed under {CAS_ROUNDS} claims in a row"
        )))
    }

    /// Gives a claim back, if it is still the delivery's.
    pub(super) async fn release(&self, claim: &AttemptClaim) -> Result<(), StoreError> {
        // Not applied: the claim was lost or its attempt recorded; either way nothing to do.
        self.run(
            &self.statements.release_claim,
            (
                claim.delivery_id.to_string(),
                claim.token.as_str(),
                i32::try_from(claim.number.saturating_sub(1)).unwrap_or(i32::MAX),
            ),
        )
        .await?;
        Ok(())
    }

    /// Records an attempt made on a claim, unless the claim was lost or the attempt is counted
    /// already (see [`decide_record`]).
    pub(super) async fn record(
        &self,
        claim: &AttemptClaim,
        a: &NewAttempt,
        status: DeliveryStatus,
    ) -> Result<RecordOutcome, StoreError> {
        let text = claim.delivery_id.to_string();
        let ttl = self.ttl();
        let number = i32::try_from(claim.number).unwrap_or(i32::MAX);
        // The log row goes first and the count second, so an attempt that was counted always
        // has its row, whatever fails or crashes in between. The number is this claim's alone
        // (while its lease holds), so writing the row again on a retried call is harmless.
        let mut row_written = false;
        for _ in 0..CAS_ROUNDS {
            let (delivery, stored) = self
                .delivery_with_claim(&text)
                .await?
                .ok_or_else(|| StoreError::NotFound(text.clone()))?;
            let decision =
                decide_record(delivery.status, delivery.attempts, &stored, claim, status);
            if decision == RecordDecision::ClaimLost {
                return Ok(RecordOutcome::ClaimLost);
            }
            if !row_written {
                self.insert_attempt_row(&text, number, a, ttl).await?;
                row_written = true;
            }
            if decision == RecordDecision::AlreadyCounted {
                return Ok(RecordOutcome::Recorded);
            }
            let now = ts(OffsetDateTime::now_utc());
            let next_at = a.next_attempt_at.map(ts);
            let result = if status.is_final() {
                self.run(
                    &self.statements.finish_attempt,
                    (
                        ttl,
                        delivery.event_id.to_string(),
                        delivery.endpoint_id.to_string(),
                        delivery.tenant.as_str(),
                        delivery.event_type.as_str(),
                        ts(delivery.created_at),
                        number,
                        status.as_str(),
                        now,
                        next_at,
                        a.tier.as_deref(),
                        claim.token.as_str(),
                        &text,
                        claim.token.as_str(),
                        number - 1,
                    ),
                )
                .await?
            } else {
                self.run(
                    &self.statements.count_attempt,
                    (
                        self.delivery_ttl(status),
                        number,
                        status.as_str(),
                        now,
                        next_at,
                        a.tier.as_deref(),
                        &text,
                        claim.token.as_str(),
                        number - 1,
                    ),
                )
                .await?
            };
            let counted = applied(result)?;
            if counted {
                return Ok(RecordOutcome::Recorded);
            }
        }
        Err(StoreError::Backend(format!(
            "scylla: delivery {text} changed under {CAS_ROUNDS} records in a row"
        )))
    }
}
