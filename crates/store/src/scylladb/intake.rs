//! Creating a request's events all or none; the outbox those events wait in is [`super::outbox`].
//!
//! ScyllaDB has no transaction across partitions, so a request's events are first *staged*:
//! each gets its outbox row (first, so the sweep can always find what was written), its event
//! row in state `pending` naming the request, its deliveries and its idempotency key. Then the
//! request is decided once, by a lightweight transaction on `intake_requests`:
//!
//! - `committed`, by the request itself once every event is staged: its events are real;
//! - `abandoned`, by whoever gives up on it: the request after an error, the outbox sweep when it
//!   stayed undecided too long (a crash), or a later request that needs its idempotency key.
//!   The sweep removes an abandoned request's rows.
//!
//! Exactly one verdict applies, so a request that answers an error stored nothing, and a key is
//! never held by an event that will not be published.
//!
//! The outbox is bucketed by hour; the sweep ([`super::outbox`]) starts from the oldest hour that
//! may still hold a row (kept in `control`), so it does not read through days of deleted rows.

use std::time::Duration;

use scylla::value::CqlTimestamp;

use hookstream_model::event::{
    Event, IdempotencyVerdict, IdempotencyWindow, PriorRequest, PublishState,
};
use hookstream_model::ids::EventId;
use hookstream_model::names::IdempotencyKey;

use super::cql::{hour_of, outbox_shard, ttl_seconds};
use super::{ScyllaStore, applied, first_row, ts};
use crate::raw::from_millis;
use crate::{CreateEventOutcome, NewEvent, StoreError};

/// The state of an event staged and not yet committed.
pub(super) const PENDING: &str = "pending";
const COMMITTED: &str = "committed";
const ABANDONED: &str = "abandoned";

/// How long a request may stay undecided before the sweep abandons it: far longer than any
/// request takes to store its events (the HTTP request timeout is 30 s by default).
pub(super) const ABANDON_AFTER: Duration = Duration::from_secs(300);
/// How long a request waits for an undecided one that holds its idempotency key before it
/// abandons that one (a request normally decides within milliseconds).
const WAIT_FOR_HOLDER: Duration = Duration::from_secs(2);
/// Attempts at deciding a failed request before its outcome is reported unknown.
const VERDICT_TRIES: usize = 3;
/// An event as stored, with what the outbox needs to know about it.
pub(super) struct StoredEvent {
    pub(super) event: Event,
    pub(super) state: String,
    /// The request that created it; none for events of versions before issue 19.
    pub(super) request: Option<String>,
}

impl StoredEvent {
    /// The publish state to report, for an event known to be committed.
    fn publish_state(&self) -> Result<PublishState, StoreError> {
        if self.state == PENDING {
            return Ok(PublishState::Publishing);
        }
        PublishState::parse(&self.state)
            .ok_or_else(|| StoreError::corrupt("event publish_state", &self.state))
    }
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Committed,
    Abandoned,
    Undecided,
}

/// A request being staged.
struct Staging<'a> {
    id: String,
    window: IdempotencyWindow,
    /// Until when the request waits for undecided holders of its keys, over all of them: set
    /// at its first wait.
    holders_waited_for_until: std::sync::OnceLock<tokio::time::Instant>,
    /// The events written so far (to remove after an error).
    staged: Vec<&'a NewEvent>,
}

enum KeyClaim {
    Won,
    /// The key belongs to a live event: this one is a repeat of it, or conflicts with it.
    Lost(CreateEventOutcome),
}

impl ScyllaStore {
    /// See [`crate::Store::create_events`]: stages every event, then commits the request.
    pub(super) async fn create_all(
        &self,
        news: &[NewEvent],
        window: IdempotencyWindow,
    ) -> Result<Vec<CreateEventOutcome>, StoreError> {
        let mut request = Staging {
            id: EventId::generate().to_string(),
            window,
            holders_waited_for_until: std::sync::OnceLock::new(),
            staged: Vec::new(),
        };
        let mut outcomes = Vec::with_capacity(news.len());
        let stored = self
            .stage_and_commit(news, &mut request, &mut outcomes)
            .await;
        // After an error the commit may still have landed (its answer lost): then the events
        // are real and the request succeeded.
        if let Err(err) = stored {
            match self.give_up(&request).await {
                Fate::Committed => {}
                Fate::Abandoned => return Err(err),
                // The commit may still complete (the sweep's own verdict would finish it).
                Fate::Undecided => {
                    return Err(StoreError::Backend(format!(
                        "{err}; whether the events were stored is unknown: retry with the \
                         same idempotency keys"
                    )));
                }
            }
        }
        // The events stay `pending`: readers look their request's verdict up. (Writing
        // `publishing` now could undo a sweep that published or set one aside meanwhile.)
        Ok(outcomes)
    }

    async fn stage_and_commit<'a>(
        &self,
        news: &'a [NewEvent],
        request: &mut Staging<'a>,
        outcomes: &mut Vec<CreateEventOutcome>,
    ) -> Result<(), StoreError> {
        // In order: a later event with an earlier one's key is judged against it.
        for new in news {
            outcomes.push(self.stage(new, request).await?);
        }
        if self.decide_request(&request.id, COMMITTED).await? {
            Ok(())
        } else {
            Err(StoreError::Backend(
                "scylla: the request took too long to store and was abandoned; try again".into(),
            ))
        }
    }

    /// Writes one event of the request, pending until the request is committed.
    async fn stage<'a>(
        &self,
        new: &'a NewEvent,
        request: &mut Staging<'a>,
    ) -> Result<CreateEventOutcome, StoreError> {
        let s = &self.statements;
        let ttl = self.ttl();
        let event = &new.event;
        let id = event.id.to_string();
        request.staged.push(new);
        // The event row first (with the retention: a row a crash leaves behind expires), then
        // its outbox row: so an outbox row without its event means the event was removed.
        self.run(
            &s.insert_event,
            (
                &id,
                event.tenant.as_str(),
                event.event_type.as_str(),
                event.payload.to_string(),
                event.idempotency_key.as_ref().map(|k| k.as_str()),
                ts(event.created_at),
                PENDING,
                &request.id,
                ttl,
            ),
        )
        .await?;
        self.run(
            &s.insert_outbox,
            (
                outbox_shard(&id),
                hour_of(event.created_at),
                ts(event.created_at),
                &id,
                ttl,
            ),
        )
        .await?;
        for d in &new.deliveries {
            // The index first: every delivery row can be found (and removed) through it.
            self.run(&s.insert_delivery_of_event, (&id, d.id.to_string(), ttl))
                .await?;
            self.write_delivery_row(d, self.delivery_ttl(d.status))
                .await?;
        }
        if let Some(key) = &event.idempotency_key
            && let KeyClaim::Lost(outcome) = self.claim_key(new, key, request).await?
        {
            self.remove_event(event, false).await?;
            request.staged.pop();
            return Ok(outcome);
        }
        // Listed only once the key is won: a repeat's deliveries never show in lists.
        for d in &new.deliveries {
            self.index_delivery(d, ttl).await?;
        }
        Ok(CreateEventOutcome::Created)
    }

    /// Claims the event's idempotency key, or finds the live event that holds it.
    async fn claim_key(
        &self,
        new: &NewEvent,
        key: &IdempotencyKey,
        request: &Staging<'_>,
    ) -> Result<KeyClaim, StoreError> {
        let s = &self.statements;
        let event = &new.event;
        let id = event.id.to_string();
        let tenant = event.tenant.as_str();
        let window = request.window;
        let expires_at = ts(window.expiry(event.created_at));
        let key_ttl = ttl_seconds(window.0);
        for _ in 0..super::CAS_ROUNDS {
            let claim = (tenant, key.as_str(), &id, expires_at, key_ttl);
            if applied(self.run(&s.claim_key, claim).await?)? {
                return Ok(KeyClaim::Won);
            }
            let result = self.run(&s.select_key, (tenant, key.as_str())).await?;
            let Some((prior_id, prior_expiry)) = first_row::<(String, CqlTimestamp)>(result)?
            else {
                continue; // released or expired meanwhile: claim it again
            };
            // A holder that is gone (removed as abandoned, or expired) holds nothing.
            let holder = self.event_row(&prior_id).await?;
            let live = match &holder {
                Some(holder) => self.holder_is_live(holder, request).await?,
                None => false,
            };
            if let Some(prior) = holder.filter(|_| live) {
                let verdict = window.judge(
                    Some(PriorRequest {
                        event: &prior.event,
                        expires_at: from_millis(prior_expiry.0)?,
                    }),
                    &event.event_type,
                    &event.payload,
                    event.created_at,
                );
                match verdict {
                    IdempotencyVerdict::Repeat(_) => {
                        let deliveries = self.deliveries_of_event(prior.event.id).await?;
                        return Ok(KeyClaim::Lost(CreateEventOutcome::Repeat {
                            state: prior.publish_state()?,
                            event: prior.event,
                            deliveries,
                        }));
                    }
                    IdempotencyVerdict::Conflict(original) => {
                        return Ok(KeyClaim::Lost(CreateEventOutcome::Conflict { original }));
                    }
                    // The window passed but the row lingers (clock skew): take it over.
                    IdempotencyVerdict::New => {}
                }
            }
            let takeover = (key_ttl, &id, expires_at, tenant, key.as_str(), &prior_id);
            if applied(self.run(&s.reclaim_key, takeover).await?)? {
                return Ok(KeyClaim::Won);
            }
        }
        Err(StoreError::Backend(
            "scylla: the idempotency key changed hands while it was claimed; try again".into(),
        ))
    }

    /// Whether the event holding a key counts: committed, or an earlier event of this same
    /// request. An undecided holder is waited for, within the request's budget (2 s over all
    /// its keys), then abandoned.
    async fn holder_is_live(
        &self,
        holder: &StoredEvent,
        request: &Staging<'_>,
    ) -> Result<bool, StoreError> {
        let Some(holder_request) = holder.request.as_deref() else {
            return Ok(true);
        };
        if holder.state != PENDING || holder_request == request.id {
            return Ok(true);
        }
        let until = *request
            .holders_waited_for_until
            .get_or_init(|| tokio::time::Instant::now() + WAIT_FOR_HOLDER);
        let mut pause = Duration::from_millis(5);
        loop {
            match self.fate(holder_request).await? {
                Fate::Committed => return Ok(true),
                Fate::Abandoned => return Ok(false),
                Fate::Undecided if tokio::time::Instant::now() >= until => {
                    return Ok(self.abandon(holder_request).await? == Fate::Committed);
                }
                Fate::Undecided => {
                    // Polling the verdict: the holder runs in another process.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// Records a request's verdict unless it has one; true if this verdict was the one applied.
    async fn decide_request(&self, request: &str, verdict: &str) -> Result<bool, StoreError> {
        applied(
            self.run(
                &self.statements.decide_request,
                (request, verdict, self.ttl()),
            )
            .await?,
        )
    }

    pub(super) async fn fate(&self, request: &str) -> Result<Fate, StoreError> {
        let result = self
            .run(&self.statements.select_request, (request,))
            .await?;
        Ok(match first_row::<(Option<String>,)>(result)? {
            Some((Some(verdict),)) if verdict == COMMITTED => Fate::Committed,
            Some((Some(verdict),)) if verdict == ABANDONED => Fate::Abandoned,
            Some((Some(verdict),)) => return Err(StoreError::corrupt("request verdict", verdict)),
            _ => Fate::Undecided,
        })
    }

    /// Abandons a request unless it was decided already; what became of it.
    pub(super) async fn abandon(&self, request: &str) -> Result<Fate, StoreError> {
        if self.decide_request(request, ABANDONED).await? {
            return Ok(Fate::Abandoned);
        }
        self.fate(request).await
    }

    /// After an error: abandons the request and removes what it staged. A removal that fails
    /// is left to the sweep, which finds the abandoned events through their outbox rows. The
    /// verdict is tried a few times: a commit whose answer was lost may have landed.
    async fn give_up(&self, request: &Staging<'_>) -> Fate {
        let mut pause = Duration::from_millis(50);
        let mut fate = Fate::Undecided;
        for attempt in 1..=VERDICT_TRIES {
            match self.abandon(&request.id).await {
                Ok(decided) => {
                    fate = decided;
                    break;
                }
                Err(err) => {
                    tracing::warn!(request = %request.id, error = %err, "could not abandon a failed request yet");
                    if attempt < VERDICT_TRIES {
                        tokio::time::sleep(pause).await;
                        pause *= 4;
                    }
                }
            }
        }
        if fate != Fate::Abandoned {
            return fate;
        }
        for new in request.staged.iter().rev() {
            if let Err(err) = self.remove_event(&new.event, true).await {
                tracing::warn!(event = %new.event.id, error = %err, "could not remove an abandoned event; the outbox sweep will");
                break;
            }
        }
        Fate::Abandoned
    }

    /// Removes an event that will never be published: its key (if it still holds it), its
    /// deliveries, itself, and last its outbox row, so a removal cut short is found again.
    pub(super) async fn remove_event(
        &self,
        event: &Event,
        release_key: bool,
    ) -> Result<(), StoreError> {
        let s = &self.statements;
        let id = event.id.to_string();
        if release_key && let Some(key) = &event.idempotency_key {
            self.run(&s.release_key, (event.tenant.as_str(), key.as_str(), &id))
                .await?;
        }
        let deliveries = self
            .ids(
                &s.select_delivery_ids_of_event,
                (&id, String::new(), i32::MAX),
            )
            .await?;
        for delivery in deliveries {
            self.run(&s.delete_delivery, (delivery,)).await?;
        }
        self.run(&s.delete_event, (&id,)).await?;
        self.run(
            &s.delete_outbox,
            (
                outbox_shard(&id),
                hour_of(event.created_at),
                ts(event.created_at),
                &id,
            ),
        )
        .await?;
        Ok(())
    }
}
