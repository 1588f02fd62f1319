//! Rows as every backend reads them (text, integers, milliseconds), turned into domain values in
//! one place, so stored data is checked the same way whichever store holds it.

use time::OffsetDateTime;

use hookstream_model::api_key::ApiKey;
use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::delivery::{Attempt, AttemptClass, Delivery, DeliveryStatus};
use hookstream_model::destination::EndpointUrl;
use hookstream_model::endpoint::{
    CircuitState, CircuitView, Endpoint, RetiringSecret, Subscription,
};
use hookstream_model::event::Event;
use hookstream_model::ids::{ApiKeyId, BatchId, DeliveryId, EndpointId, EventId};
use hookstream_model::names::{EventType, IdempotencyKey, Tenant};
use hookstream_model::replay::{
    Batch, BatchCounts, BatchItem, BatchSelection, BatchStatus, DeadLetterFilter,
    IndexedDeadLetter, ItemOutcome, SkipReason,
};
use hookstream_model::shaping::Shaping;

use crate::{SecretSealer, StoreError};

pub(crate) fn millis(at: OffsetDateTime) -> i64 {
    // i64 milliseconds cover ±292 million years; saturate rather than wrap beyond.
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::corrupt("timestamp", e))
}

pub(crate) struct RawEndpoint {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub secret: String,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub max_attempts: Option<u32>,
    pub paused: bool,
    pub circuit_state: String,
    pub circuit_open_until: Option<i64>,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    /// The delivery settings' JSON document; absent means the defaults.
    pub shaping: Option<String>,
}

impl RawEndpoint {
    /// `sealer` opens the secrets (see [`crate::SecretSealer`]).
    pub(crate) fn decode(self, sealer: &SecretSealer) -> Result<Endpoint, StoreError> {
        Ok(Endpoint {
            id: EndpointId::parse(&self.id, "id")
                .map_err(|e| StoreError::corrupt("endpoint id", e))?,
            tenant: Tenant::parse(&self.tenant, "tenant")
                .map_err(|e| StoreError::corrupt("endpoint tenant", e))?,
            url: EndpointUrl::parse(&self.url, "url")
                .map_err(|e| StoreError::corrupt("endpoint url", e))?,
            subscription: Subscription::parse(&self.event_types, "event_types")
                .map_err(|e| StoreError::corrupt("endpoint event_types", e))?,
            secret: sealer.open(&self.id, &self.secret)?,
            previous_secret: match (self.previous_secret, self.previous_secret_expires_at) {
                (Some(secret), Some(expires_at)) => Some(RetiringSecret {
                    secret: sealer.open(&self.id, &secret)?,
                    expires_at: from_millis(expires_at)?,
                }),
                _ => None,
            },
            disabled: self.disabled,
            max_attempts: self.max_attempts,
            shaping: decode_shaping(self.shaping.as_deref())?,
            paused: self.paused,
            circuit: CircuitView {
                state: CircuitState::parse(&self.circuit_state).ok_or_else(|| {
                    StoreError::corrupt("endpoint circuit_state", &self.circuit_state)
                })?,
                open_until: self.circuit_open_until.map(from_millis).transpose()?,
            },
            created_at: from_millis(self.created_at)?,
            updated_at: from_millis(self.updated_at)?,
        })
    }
}

/// Reads an endpoint's stored delivery settings. A value out of today's bounds is brought
/// within them rather than making the endpoint unreadable.
fn decode_shaping(text: Option<&str>) -> Result<Shaping, StoreError> {
    let shaping =
        Shaping::from_json(text).map_err(|e| StoreError::corrupt("endpoint shaping", e))?;
    Ok(shaping.within_bounds())
}

pub(crate) struct RawEvent {
    pub id: String,
    pub tenant: String,
    pub event_type: String,
    pub payload: String,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
}

impl RawEvent {
    pub(crate) fn decode(self) -> Result<Event, StoreError> {
        Ok(Event {
            id: EventId::parse(&self.id, "id").map_err(|e| StoreError::corrupt("event id", e))?,
            tenant: Tenant::parse(&self.tenant, "tenant")
                .map_err(|e| StoreError::corrupt("event tenant", e))?,
            event_type: EventType::parse(&self.event_type, "type")
                .map_err(|e| StoreError::corrupt("event type", e))?,
            payload: serde_json::from_str(&self.payload)
                .map_err(|e| StoreError::corrupt("event payload", e))?,
            idempotency_key: self
                .idempotency_key
                .map(|k| IdempotencyKey::parse(&k, "idempotency_key"))
                .transpose()
                .map_err(|e| StoreError::corrupt("event idempotency key", e))?,
            created_at: from_millis(self.created_at)?,
        })
    }
}

pub(crate) struct RawDelivery {
    pub id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub tenant: String,
    pub event_type: String,
    pub status: String,
    pub attempts: u32,
    pub created_at: i64,
    pub updated_at: i64,
    pub next_attempt_at: Option<i64>,
    pub next_tier: Option<String>,
}

impl RawDelivery {
    pub(crate) fn decode(self) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            id: DeliveryId::parse(&self.id, "id")
                .map_err(|e| StoreError::corrupt("delivery id", e))?,
            event_id: EventId::parse(&self.event_id, "event_id")
                .map_err(|e| StoreError::corrupt("delivery event_id", e))?,
            endpoint_id: EndpointId::parse(&self.endpoint_id, "endpoint_id")
                .map_err(|e| StoreError::corrupt("delivery endpoint_id", e))?,
            tenant: Tenant::parse(&self.tenant, "tenant")
                .map_err(|e| StoreError::corrupt("delivery tenant", e))?,
            event_type: EventType::parse(&self.event_type, "event_type")
                .map_err(|e| StoreError::corrupt("delivery event_type", e))?,
            status: DeliveryStatus::parse(&self.status)
                .ok_or_else(|| StoreError::corrupt("delivery status", &self.status))?,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at.map(from_millis).transpose()?,
            next_tier: self.next_tier,
            created_at: from_millis(self.created_at)?,
            updated_at: from_millis(self.updated_at)?,
        })
    }
}

pub(crate) struct RawAttempt {
    pub delivery_id: String,
    pub number: u32,
    pub started_at: i64,
    pub latency_ms: i64,
    pub status_code: Option<u16>,
    pub class: String,
    pub response_snippet: String,
    pub error: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub tier: Option<String>,
}

impl RawAttempt {
    pub(crate) fn decode(self) -> Result<Attempt, StoreError> {
        Ok(Attempt {
            delivery_id: DeliveryId::parse(&self.delivery_id, "delivery_id")
                .map_err(|e| StoreError::corrupt("attempt delivery_id", e))?,
            number: self.number,
            started_at: from_millis(self.started_at)?,
            latency_ms: u64::try_from(self.latency_ms).unwrap_or(0),
            status_code: self.status_code,
            class: AttemptClass::parse(&self.class)
                .ok_or_else(|| StoreError::corrupt("attempt class", &self.class))?,
            response_snippet: self.response_snippet,
            error: self.error,
            next_attempt_at: self.next_attempt_at.map(from_millis).transpose()?,
            tier: self.tier,
        })
    }
}

/// A batch's selection as stored: `{"delivery_ids": [...]}` or `{"filter": {...}}`, times in
/// Unix milliseconds.
pub(crate) fn selection_json(selection: &BatchSelection) -> String {
    let value = match selection {
        BatchSelection::Deliveries(ids) => serde_json::json!({ "delivery_ids": ids }),
        BatchSelection::Filter(f) => serde_json::json!({ "filter": {
            "tenant": f.tenant.as_ref().map(Tenant::as_str),
            "endpoint_id": f.endpoint_id,
            "event_type": f.event_type.as_ref().map(EventType::as_str),
            "class": f.class.map(AttemptClass::as_str),
            "since": f.since.map(millis),
            "until": f.until.map(millis),
            "reason": f.reason,
        }}),
    };
    value.to_string()
}

pub(crate) fn parse_selection(text: &str) -> Result<BatchSelection, StoreError> {
    let corrupt = |reason: &dyn std::fmt::Display| StoreError::corrupt("batch selection", reason);
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| corrupt(&e))?;
    if let Some(ids) = value.get("delivery_ids") {
        let ids: Vec<DeliveryId> = serde_json::from_value(ids.clone()).map_err(|e| corrupt(&e))?;
        return Ok(BatchSelection::Deliveries(ids));
    }
    let f = value
        .get("filter")
        .ok_or_else(|| corrupt(&"neither delivery_ids nor filter"))?;
    let text_of = |name: &str| f.get(name).and_then(serde_json::Value::as_str);
    let time_of = |name: &str| {
        f.get(name)
            .and_then(serde_json::Value::as_i64)
            .map(from_millis)
            .transpose()
    };
    Ok(BatchSelection::Filter(DeadLetterFilter {
        tenant: text_of("tenant")
            .map(|t| Tenant::parse(t, "tenant"))
            .transpose()
            .map_err(|e| corrupt(&e))?,
        endpoint_id: text_of("endpoint_id")
            .map(|t| EndpointId::parse(t, "endpoint_id"))
            .transpose()
            .map_err(|e| corrupt(&e))?,
        event_type: text_of("event_type")
            .map(|t| EventType::parse(t, "event_type"))
            .transpose()
            .map_err(|e| corrupt(&e))?,
        class: text_of("class")
            .map(|c| AttemptClass::parse(c).ok_or_else(|| corrupt(&c)))
            .transpose()?,
        since: time_of("since")?,
        until: time_of("until")?,
        reason: text_of("reason").map(str::to_owned),
    }))
}

pub(crate) struct RawBatch {
    pub id: String,
    pub created_by: String,
    pub tenant: Option<String>,
    pub selection: String,
    pub dry_run: bool,
    pub allow_repeat: bool,
    pub status: String,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl RawBatch {
    pub(crate) fn decode(self, counts: BatchCounts) -> Result<Batch, StoreError> {
        Ok(Batch {
            id: BatchId::parse(&self.id, "id").map_err(|e| StoreError::corrupt("batch id", e))?,
            created_by: self.created_by,
            tenant: self
                .tenant
                .map(|t| Tenant::parse(&t, "tenant"))
                .transpose()
                .map_err(|e| StoreError::corrupt("batch tenant", e))?,
            selection: parse_selection(&self.selection)?,
            dry_run: self.dry_run,
            allow_repeat: self.allow_repeat,
            status: BatchStatus::parse(&self.status)
                .ok_or_else(|| StoreError::corrupt("batch status", &self.status))?,
            created_at: from_millis(self.created_at)?,
            updated_at: from_millis(self.updated_at)?,
            finished_at: self.finished_at.map(from_millis).transpose()?,
            error: self.error,
            counts,
        })
    }
}

pub(crate) struct RawBatchItem {
    pub batch_id: String,
    pub position: u32,
    pub dead_delivery_id: String,
    pub endpoint_id: String,
    pub outcome: String,
    pub skip_reason: Option<String>,
    pub delivery_id: Option<String>,
    pub published: bool,
}

/// An item outcome as stored: its kind, skip reason and new delivery id.
pub(crate) fn outcome_columns(
    outcome: &ItemOutcome,
) -> (&'static str, Option<&'static str>, Option<String>, bool) {
    match outcome {
        ItemOutcome::Skipped(reason) => ("skipped", Some(reason.as_str()), None, false),
        ItemOutcome::Created {
            delivery_id,
            published,
        } => ("created", None, Some(delivery_id.to_string()), *published),
        other => (other.kind(), None, None, false),
    }
}

pub(crate) fn decode_outcome(
    kind: &str,
    skip_reason: Option<&str>,
    delivery_id: Option<&str>,
    published: bool,
) -> Result<ItemOutcome, StoreError> {
    Ok(match kind {
        "pending" => ItemOutcome::Pending,
        "would_replay" => ItemOutcome::WouldReplay,
        "created" => ItemOutcome::Created {
            delivery_id: DeliveryId::parse(delivery_id.unwrap_or_default(), "delivery_id")
                .map_err(|e| StoreError::corrupt("batch item delivery_id", e))?,
            published,
        },
        "skipped" => ItemOutcome::Skipped(
            skip_reason
                .and_then(SkipReason::parse)
                .ok_or_else(|| StoreError::corrupt("batch item skip_reason", kind))?,
        ),
        other => return Err(StoreError::corrupt("batch item outcome", other)),
    })
}

impl RawBatchItem {
    pub(crate) fn decode(self) -> Result<BatchItem, StoreError> {
        Ok(BatchItem {
            batch_id: BatchId::parse(&self.batch_id, "batch_id")
                .map_err(|e| StoreError::corrupt("batch item batch_id", e))?,
            position: self.position,
            dead_delivery_id: DeliveryId::parse(&self.dead_delivery_id, "dead_delivery_id")
                .map_err(|e| StoreError::corrupt("batch item dead_delivery_id", e))?,
            endpoint_id: EndpointId::parse(&self.endpoint_id, "endpoint_id")
                .map_err(|e| StoreError::corrupt("batch item endpoint_id", e))?,
            outcome: decode_outcome(
                &self.outcome,
                self.skip_reason.as_deref(),
                self.delivery_id.as_deref(),
                self.published,
            )?,
        })
    }
}

/// A dead letter as stored: the DLQ record's bytes and the replay count.
pub(crate) fn decode_dead_letter(
    letter: &[u8],
    replays: u32,
) -> Result<IndexedDeadLetter, StoreError> {
    Ok(IndexedDeadLetter {
        letter: DeadLetter::decode(letter).map_err(|e| StoreError::corrupt("dead letter", e))?,
        replays,
    })
}

pub(crate) struct RawApiKey {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub key_hash: Vec<u8>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl RawApiKey {
    pub(crate) fn from_key(key: &ApiKey) -> Self {
        Self {
            id: key.id.to_string(),
            tenant: key.tenant.as_str().to_owned(),
            name: key.name.clone(),
            key_hash: key.key_hash.to_vec(),
            created_at: millis(key.created_at),
            revoked_at: key.revoked_at.map(millis),
        }
    }

    pub(crate) fn decode(self) -> Result<ApiKey, StoreError> {
        Ok(ApiKey {
            id: ApiKeyId::parse(&self.id, "id")
                .map_err(|e| StoreError::corrupt("api key id", e))?,
            tenant: Tenant::parse(&self.tenant, "tenant")
                .map_err(|e| StoreError::corrupt("api key tenant", e))?,
            name: self.name,
            key_hash: self
                .key_hash
                .try_into()
                .map_err(|_| StoreError::corrupt("api key hash", "not 32 bytes"))?,
            created_at: from_millis(self.created_at)?,
            revoked_at: self.revoked_at.map(from_millis).transpose()?,
        })
    }
}
