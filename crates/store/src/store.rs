use async_trait::async_trait;
use time::OffsetDateTime;

use hookstream_model::delivery::{Attempt, AttemptClass, Delivery, DeliveryStatus};
use hookstream_model::endpoint::{CircuitView, Endpoint, EndpointChanges, Subscription};
use hookstream_model::event::{Event, IdempotencyWindow, PublishState};
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::{EventType, Tenant};
use hookstream_signing::SigningSecret;

use crate::claim::{AttemptClaim, ClaimOutcome, RecordOutcome};
use crate::{Page, PageRequest, StoreError};

/// An event to create together with its deliveries, in one atomic write.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: Event,
    pub deliveries: Vec<Delivery>,
}

/// What [`Store::create_event`] did.
#[derive(Debug, Clone)]
pub enum CreateEventOutcome {
    /// The event and its deliveries were stored, in state `publishing`.
    Created,
    /// The idempotency key was used for the same request within the window: nothing was created.
    /// If the original is still `publishing` its tasks may never have reached Kafka, so the
    /// caller publishes them again (same delivery ids, so receivers see the same `webhook-id`).
    Repeat {
        event: Event,
        state: PublishState,
        deliveries: Vec<Delivery>,
    },
    /// The idempotency key was used for a different request within the window.
    Conflict { original: EventId },
}

/// An attempt's result, to append to the log; the store numbers it.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub delivery_id: DeliveryId,
    pub started_at: OffsetDateTime,
    pub latency_ms: u64,
    pub status_code: Option<u16>,
    pub class: AttemptClass,
    pub response_snippet: String,
    pub error: Option<String>,
    /// When the delivery is tried next, if it is retried.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The retry tier the task waits on, if it is retried.
    pub tier: Option<String>,
}

/// What [`Store::purge_expired`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub idempotency_keys: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub events: u64,
    pub dead_letters: u64,
    /// Finished replay batches, with their items.
    pub batches: u64,
}

/// Narrows a list of deliveries; every field set must match.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub tenant: Option<Tenant>,
    pub event_id: Option<EventId>,
    pub endpoint_id: Option<EndpointId>,
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<EventType>,
    /// Created at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Created before this time.
    pub until: Option<OffsetDateTime>,
}

impl DeliveryFilter {
    /// Whether `delivery` matches every field set (for stores that narrow by an index first
    /// and check the rest on the rows read).
    pub fn matches(&self, delivery: &Delivery) -> bool {
        self.tenant.as_ref().is_none_or(|t| delivery.tenant == *t)
            && self.event_id.is_none_or(|id| delivery.event_id == id)
            && self.endpoint_id.is_none_or(|id| delivery.endpoint_id == id)
            && self.status.is_none_or(|s| delivery.status == s)
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| delivery.event_type == *t)
            && self.since.is_none_or(|t| delivery.created_at >= t)
            && self.until.is_none_or(|t| delivery.created_at < t)
    }
}

/// The contract every store backend keeps.
///
/// Every write is durable when it returns: callers acknowledge to clients and commit Kafka
/// offsets on the strength of it.
#[async_trait]
pub trait Store:
    crate::ReplayStore
    + crate::AccessStore
    + crate::OrderedStore
    + crate::HealthStore
    + Send
    + Sync
    + 'static
{
    /// Succeeds when the backend answers.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;
    /// A live (not deleted) endpoint.
    async fn get_endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError>;
    async fn list_endpoints(
        &self,
        tenant: &Tenant,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, StoreError>;
    /// Replaces a live endpoint's url, subscription, disabled and paused flags, attempt limit
    /// and delivery settings with `endpoint`'s; false if there is none. The last writer wins:
    /// a change made since `endpoint` was read is undone. Requests use
    /// [`Store::change_endpoint`].
    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError>;
    /// Applies `changes` to a live endpoint as it stands, in one step (a change made side by
    /// side, such as a pause or a `410` disabling it, is kept), and returns it as changed at
    /// `at`; `None` if there is none.
    async fn change_endpoint(
        &self,
        id: EndpointId,
        changes: &EndpointChanges,
        at: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError>;
    /// Disables a live endpoint (a `410 Gone` answer, its health rules), changing nothing else
    /// about it, so an edit made meanwhile through the API stays; true only when this call
    /// disabled it (false if there is none, or it was disabled already), so that one disabling
    /// is told once however many find it at the same time.
    async fn disable_endpoint(
        &self,
        id: EndpointId,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Gives a live endpoint a new signing secret; the one it replaces keeps signing until
    /// `previous_expires_at`. Returns the endpoint as it now stands, `None` if there is none.
    async fn rotate_secret(
        &self,
        id: EndpointId,
        new: &SigningSecret,
        previous_expires_at: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError>;
    /// Deletes a live endpoint; false if there is none. Its deliveries stay readable.
    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, StoreError>;
    /// The tenant's live endpoints and what each subscribes to, in id order: read once for a
    /// whole batch of events, whatever their types. A disabled endpoint is among them: its new
    /// deliveries are kept (the dispatcher queues them, unsent, until it is enabled again), not
    /// lost. No secret is read: one endpoint whose
    /// secret does not open must not stop the tenant's intake (its deliveries are refused by the
    /// dispatcher, one by one).
    async fn subscriptions(
        &self,
        tenant: &Tenant,
    ) -> Result<Vec<(EndpointId, Subscription)>, StoreError>;

    /// Stores events and their deliveries, applying the idempotency window to each key, in
    /// order (a later event with an earlier one's key is judged against it). One outcome per
    /// event; an error means none was stored.
    async fn create_events(
        &self,
        news: &[NewEvent],
        window: IdempotencyWindow,
    ) -> Result<Vec<CreateEventOutcome>, StoreError>;
    /// Stores one event; see [`Store::create_events`].
    async fn create_event(
        &self,
        new: &NewEvent,
        window: IdempotencyWindow,
    ) -> Result<CreateEventOutcome, StoreError> {
        self.create_events(std::slice::from_ref(new), window)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Backend("no outcome for a stored event".into()))
    }
    /// Records that Kafka acknowledged every delivery task of these events.
    async fn mark_events_published(&self, ids: &[EventId]) -> Result<(), StoreError>;
    /// Records that Kafka acknowledged every delivery task of the event.
    async fn mark_event_published(&self, id: EventId) -> Result<(), StoreError> {
        self.mark_events_published(&[id]).await
    }
    /// Takes an event out of the outbox for good, in state `set_aside` with the reason: Kafka
    /// refuses its tasks as they are, and trying again would stop the sweep on it forever.
    async fn set_aside_event(&self, id: EventId, reason: &str) -> Result<(), StoreError>;
    /// Events created before `before` whose tasks are not known to be on Kafka, oldest first,
    /// with their deliveries: the outbox that ingest republishes after a crash or failure.
    async fn unpublished_events(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(Event, Vec<Delivery>)>, StoreError>;

    /// Records an endpoint's circuit breaker state (the dispatcher's, shown by the API).
    async fn set_circuit(&self, id: EndpointId, circuit: &CircuitView) -> Result<(), StoreError>;

    /// The kill switch: whether all sending is paused.
    async fn sending_paused(&self) -> Result<bool, StoreError>;
    async fn set_sending_paused(&self, paused: bool) -> Result<(), StoreError>;

    /// Records `value` as the installation's setting `name` (one every service must share, such
    /// as the topic prefix) unless one is recorded already, and returns the one recorded: the
    /// first ever given, whoever gave it.
    async fn record_installation_setting(
        &self,
        name: &str,
        value: &str,
    ) -> Result<String, StoreError>;

    /// The installation's setting `name`, if one is recorded.
    async fn installation_setting(&self, name: &str) -> Result<Option<String>, StoreError>;

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError>;
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError>;
    /// Claims the delivery's next attempt for a task that has made `attempts_made`, for
    /// `lease`; see [`crate::claim`]. A claimed delivery is `delivering`.
    async fn claim_attempt(
        &self,
        id: DeliveryId,
        attempts_made: u32,
        lease: std::time::Duration,
    ) -> Result<ClaimOutcome, StoreError>;
    /// Gives a claim back unused (the attempt was not sent), so a copy read next need not wait
    /// for its lease to run out. A claim lost already is left alone.
    async fn release_claim(&self, claim: &AttemptClaim) -> Result<(), StoreError>;
    /// Appends the claimed attempt to the log under the claim's number and moves the delivery
    /// to `status`, unless the claim was lost. Safe to call again after an error: the attempt
    /// is counted once.
    async fn record_attempt(
        &self,
        claim: &AttemptClaim,
        attempt: &NewAttempt,
        status: DeliveryStatus,
    ) -> Result<RecordOutcome, StoreError>;
    /// Every attempt of a delivery, first first.
    async fn list_attempts(&self, id: DeliveryId) -> Result<Vec<Attempt>, StoreError>;

    /// Removes what has outlived its retention as of `now`: idempotency keys past their
    /// window, deliveries (with their attempts) unchanged for `retention`, and events older
    /// than `retention` with no delivery left. A store that expires rows by TTL has nothing to
    /// do here.
    async fn purge_expired(
        &self,
        now: OffsetDateTime,
        retention: std::time::Duration,
    ) -> Result<Purged, StoreError>;

    /// Re-seals under the sealing key every signing secret (current and previous, deleted
    /// endpoints' too) sealed under an older key of the ring, each only if it is still what
    /// was read (a rotation meanwhile wins), and counts what it found.
    async fn reseal_secrets(&self) -> Result<crate::SealingCensus, StoreError>;
}
