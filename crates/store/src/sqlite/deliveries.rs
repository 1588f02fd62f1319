//! Deliveries and their attempts: claiming an attempt, giving a claim back, recording what it
//! came to.

use std::time::Duration;

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use hookstream_model::delivery::{Delivery, DeliveryStatus};
use hookstream_model::ids::DeliveryId;

use crate::claim::{ClaimDecision, RecordDecision, StoredClaim, decide_claim, decide_record};
use crate::{AttemptClaim, ClaimOutcome, NewAttempt, RecordOutcome, StoreError};

use super::queries::query_one;
use super::rows::{self, millis};

/// A delivery and its claim columns, read inside a write transaction.
pub(super) fn delivery_with_claim(
    conn: &Connection,
    id: DeliveryId,
) -> Result<Option<(Delivery, StoredClaim)>, StoreError> {
    query_one(
        conn,
        &format!(
            "SELECT {}, claim_token, claim_until FROM deliveries WHERE id = ?1",
            rows::DELIVERY_COLUMNS
        ),
        [id.to_string()],
        rows::delivery_with_claim,
    )
}

/// Claims attempt `attempts_made + 1` of a delivery for `lease`, unless its claim decides otherwise
/// (see [`decide_claim`]).
pub(super) fn claim(
    conn: &Connection,
    id: DeliveryId,
    attempts_made: u32,
    lease: Duration,
) -> Result<ClaimOutcome, StoreError> {
    let Some((delivery, stored)) = delivery_with_claim(conn, id)? else {
        return Ok(ClaimOutcome::Missing);
    };
    let now = OffsetDateTime::now_utc();
    Ok(
        match decide_claim(&delivery, &stored, attempts_made, now, lease) {
            ClaimDecision::Final => ClaimOutcome::Final(delivery),
            ClaimDecision::Stale => ClaimOutcome::Stale(delivery),
            ClaimDecision::Busy(until) => ClaimOutcome::Busy { until },
            ClaimDecision::Claim { number } => {
                let claim = AttemptClaim::new(id, number, now + lease);
                conn.prepare_cached(
                    "UPDATE deliveries SET status = 'delivering', updated_at = ?2,
                                claim_token = ?3, claim_until = ?4
                         WHERE id = ?1",
                )?
                .execute(params![
                    id.to_string(),
                    millis(now),
                    claim.token,
                    millis(claim.until)
                ])?;
                ClaimOutcome::Claimed {
                    delivery: Delivery {
                        status: DeliveryStatus::Delivering,
                        updated_at: now,
                        ..delivery
                    },
                    claim,
                }
            }
        },
    )
}

/// Gives a claim back, if it is still the delivery's.
pub(super) fn release(conn: &Connection, claim: &AttemptClaim) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET claim_until = NULL
                 WHERE id = ?1 AND claim_token = ?2 AND attempts = ?3",
    )?
    .execute(params![
        claim.delivery_id.to_string(),
        claim.token,
        claim.number.saturating_sub(1)
    ])?;
    Ok(())
}

/// Records an attempt made on `claim` and the delivery's new `status`, unless the claim was lost
/// or the attempt is counted already (see [`decide_record`]).
pub(super) fn record(
    conn: &Connection,
    claim: &AttemptClaim,
    a: &NewAttempt,
    status: DeliveryStatus,
) -> Result<RecordOutcome, StoreError> {
    let id = claim.delivery_id;
    let Some((delivery, stored)) = delivery_with_claim(conn, id)? else {
        return Err(StoreError::NotFound(id.to_string()));
    };
    match decide_record(delivery.status, delivery.attempts, &stored, claim, status) {
        RecordDecision::ClaimLost => return Ok(RecordOutcome::ClaimLost),
        // One transaction wrote both rows, so the log row is there too.
        RecordDecision::AlreadyCounted => return Ok(RecordOutcome::Recorded),
        RecordDecision::Record => {}
    }
    let now = millis(OffsetDateTime::now_utc());
    conn.prepare_cached(
        "UPDATE deliveries SET attempts = ?2, status = ?3, updated_at = ?4,
                        next_attempt_at = ?5, next_tier = ?6, claim_until = NULL
                 WHERE id = ?1",
    )?
    .execute(params![
        id.to_string(),
        claim.number,
        status.as_str(),
        now,
        a.next_attempt_at.map(millis),
        a.tier,
    ])?;
    conn.prepare_cached(&format!(
        "INSERT INTO attempts ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        rows::ATTEMPT_COLUMNS
    ))?
    .execute(params![
        id.to_string(),
        claim.number,
        millis(a.started_at),
        i64::try_from(a.latency_ms).unwrap_or(i64::MAX),
        a.status_code,
        a.class.as_str(),
        a.response_snippet,
        a.error,
        a.next_attempt_at.map(millis),
        a.tier,
    ])?;
    Ok(RecordOutcome::Recorded)
}
