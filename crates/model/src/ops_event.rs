//! Operational events: what Hookstream tells a tenant's operators about its own work (an
//! endpoint warned of, disabled or recovered, a delivery dead-lettered, a replay batch
//! finished). Each is a CloudEvent (structured mode, JSON) on the `<prefix>ops-events` topic;
//! ingest reads that topic like a source topic and sends each event, as a signed webhook through
//! the same pipeline, to the tenant's endpoints subscribed to its type.
//!
//! Their types live in the reserved `hookstream.` namespace, so they never mix with a tenant's
//! own event types: tenants cannot publish them, and `*` does not subscribe to them.
//!
//! An event's `id` is made from what it tells (the endpoint and the time of the change, the
//! dead delivery, the batch), so telling it twice (after a crash) is the same event again, which
//! ingest's idempotency window takes once.

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::dead_letter::DeadLetter;
use crate::ids::EndpointId;
use crate::names::{EventType, Tenant};
use crate::replay::Batch;

/// The namespace of operational event types.
pub const NAMESPACE: &str = "hookstream.";

/// The prefix of operational events' idempotency keys; a tenant's key may not start with it,
/// so no tenant can take an operational event's key before it comes.
pub const IDEMPOTENCY_PREFIX: &str = "hookstream-ops-";

/// The CloudEvents `source` of every operational event.
pub const SOURCE: &str = "/hookstream";

/// The operational events there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpsKind {
    EndpointWarning,
    EndpointDisabled,
    EndpointRecovered,
    DeliveryDeadLettered,
    BatchFinished,
}

impl OpsKind {
    pub const ALL: [Self; 5] = [
        Self::EndpointWarning,
        Self::EndpointDisabled,
        Self::EndpointRecovered,
        Self::DeliveryDeadLettered,
        Self::BatchFinished,
    ];

    /// Its event type, as webhooks and the topic carry it.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::EndpointWarning => "hookstream.endpoint.warning",
            Self::EndpointDisabled => "hookstream.endpoint.disabled",
            Self::EndpointRecovered => "hookstream.endpoint.recovered",
            Self::DeliveryDeadLettered => "hookstream.delivery.dead_lettered",
            Self::BatchFinished => "hookstream.batch.finished",
        }
    }

    /// The kind an event type names, if it is an operational one.
    pub fn of(event_type: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.event_type() == event_type)
    }
}

/// Whether `event_type` is in the reserved namespace (known to this build or not, in any
/// case, so `Hookstream.…` cannot pass for one of them either).
pub fn is_operational(event_type: &EventType) -> bool {
    event_type
        .as_str()
        .get(..NAMESPACE.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(NAMESPACE))
}

/// Parses the type of an event a tenant publishes: any valid type outside the reserved
/// namespace, which only Hookstream writes.
pub fn tenant_event_type(text: &str, field: &str) -> Result<EventType, crate::ValidationError> {
    let event_type = EventType::parse(text, field)?;
    if is_operational(&event_type) {
        return Err(crate::ValidationError::new(
            field,
            format!(
                "`{text}`: the `{NAMESPACE}` namespace is reserved for Hookstream's operational events"
            ),
        ));
    }
    Ok(event_type)
}

/// One operational event.
#[derive(Debug, Clone, PartialEq)]
pub struct OpsEvent {
    pub kind: OpsKind,
    /// Unique per thing told (see the module's notes).
    pub id: String,
    /// Whose it is; `None` for an admin's batch over every tenant, which is written to the
    /// topic only (no tenant has operators to send it to).
    pub tenant: Option<Tenant>,
    /// What it is about: an endpoint id, a dead delivery's id, a batch id.
    pub subject: String,
    pub time: OffsetDateTime,
    pub data: Value,
}

impl OpsEvent {
    /// An endpoint warned of, disabled (by its health rules, or by a `410 Gone`) or recovered,
    /// `at` the time the change was recorded.
    pub fn endpoint_changed(
        kind: OpsKind,
        endpoint: EndpointId,
        tenant: &Tenant,
        reason: &str,
        at: OffsetDateTime,
    ) -> Self {
        let at_text = rfc3339(at);
        Self {
            kind,
            id: format!("{}:{endpoint}:{at_text}", kind.event_type()),
            tenant: Some(tenant.clone()),
            subject: endpoint.to_string(),
            time: at,
            data: json!({
                "endpoint_id": endpoint.to_string(),
                "reason": reason,
                "at": at_text,
            }),
        }
    }

    /// A delivery that will not be tried again.
    pub fn dead_lettered(letter: &DeadLetter) -> Self {
        let task = &letter.task;
        let kind = OpsKind::DeliveryDeadLettered;
        Self {
            kind,
            id: format!("{}:{}", kind.event_type(), task.delivery_id),
            tenant: Some(task.tenant.clone()),
            subject: task.delivery_id.to_string(),
            time: letter.dead_lettered_at,
            data: json!({
                "delivery_id": task.delivery_id.to_string(),
                "event_id": task.event_id.to_string(),
                "endpoint_id": task.endpoint_id.to_string(),
                "event_type": task.event_type.as_str(),
                "attempts": task.attempts_made,
                "reason": letter.reason,
                "last_class": letter.last_class.as_str(),
                "last_status_code": letter.last_status_code,
                "dead_lettered_at": rfc3339(letter.dead_lettered_at),
            }),
        }
    }

    /// A replay batch that ended (completed, cancelled or failed).
    pub fn batch_finished(batch: &Batch) -> Self {
        let kind = OpsKind::BatchFinished;
        let at = batch.finished_at.unwrap_or(batch.updated_at);
        let skipped: serde_json::Map<String, Value> = batch
            .counts
            .skipped
            .iter()
            .map(|(reason, n)| (reason.as_str().to_owned(), json!(n)))
            .collect();
        Self {
            kind,
            id: format!("{}:{}", kind.event_type(), batch.id),
            tenant: batch.tenant.clone(),
            subject: batch.id.to_string(),
            time: at,
            data: json!({
                "batch_id": batch.id.to_string(),
                "status": batch.status.as_str(),
                "created_by": batch.created_by,
                "matched": batch.counts.matched,
                "replayed": batch.counts.created,
                "skipped": skipped,
                "error": batch.error,
                "finished_at": rfc3339(at),
            }),
        }
    }

    /// The record value: the whole CloudEvent as JSON (structured mode; the record's
    /// `content-type` is [`CONTENT_TYPE`]).
    pub fn to_cloudevent(&self) -> Value {
        let mut event = json!({
            "specversion": "1.0",
            "id": self.id,
            "source": SOURCE,
            "type": self.kind.event_type(),
            "subject": self.subject,
            "time": rfc3339(self.time),
            "datacontenttype": "application/json",
            "data": self.data,
        });
        if let Some(tenant) = &self.tenant {
            event["tenant"] = json!(tenant.as_str());
        }
        event
    }

    /// The record key: the tenant, so each tenant's operational events keep their order.
    pub fn key(&self) -> &str {
        self.tenant.as_ref().map_or("", Tenant::as_str)
    }
}

/// The `content-type` of an operational event's record.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

fn rfc3339(at: OffsetDateTime) -> String {
    // Every time Hookstream makes is within RFC 3339's years.
    at.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_in_the_reserved_namespace_and_read_back() {
        for kind in OpsKind::ALL {
            let event_type = EventType::parse(kind.event_type(), "type").expect("a valid type");
            assert!(is_operational(&event_type));
            assert_eq!(OpsKind::of(kind.event_type()), Some(kind));
        }
        assert_eq!(OpsKind::of("endpoint.warning"), None);
        assert!(!is_operational(
            &EventType::parse("hookstreamx.thing", "type").expect("a valid type")
        ));
        assert!(is_operational(
            &EventType::parse("HookStream.endpoint.disabled", "type").expect("a valid type")
        ));
    }

    #[test]
    fn tenants_cannot_publish_in_the_reserved_namespace() {
        assert!(tenant_event_type("order.created", "type").is_ok());
        let err = tenant_event_type("hookstream.endpoint.disabled", "type").unwrap_err();
        assert_eq!(err.field, "type");
        assert!(err.reason.contains("reserved"), "{err}");
    }

    #[test]
    fn an_endpoint_change_is_a_cloudevent_with_its_tenant_and_a_stable_id() {
        let endpoint = EndpointId::generate();
        let tenant = Tenant::parse("acme", "tenant").expect("a valid tenant");
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a time");
        let event = OpsEvent::endpoint_changed(
            OpsKind::EndpointDisabled,
            endpoint,
            &tenant,
            "4 attempts in a row failed",
            at,
        );
        let again = OpsEvent::endpoint_changed(
            OpsKind::EndpointDisabled,
            endpoint,
            &tenant,
            "4 attempts in a row failed",
            at,
        );
        assert_eq!(event.id, again.id, "told twice, the same event");
        let cloudevent = event.to_cloudevent();
        assert_eq!(cloudevent["specversion"], "1.0");
        assert_eq!(cloudevent["type"], "hookstream.endpoint.disabled");
        assert_eq!(cloudevent["source"], SOURCE);
        assert_eq!(cloudevent["tenant"], "acme");
        assert_eq!(cloudevent["subject"], endpoint.to_string());
        assert_eq!(cloudevent["time"], "2027-01-15T08:00:00Z");
        assert_eq!(cloudevent["data"]["endpoint_id"], endpoint.to_string());
        assert_eq!(cloudevent["data"]["reason"], "4 attempts in a row failed");
        assert_eq!(event.key(), "acme");
    }
}
