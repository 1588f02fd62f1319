//! The webhook as it leaves: body and Standard Webhooks headers.

use time::format_description::well_known::Rfc3339;

use hookstream_model::task::DeliveryTask;
use sha2::{Digest, Sha256};

use hookstream_signing::{SigningSecret, sign};

/// `user-agent` of every webhook.
pub const USER_AGENT: &str = concat!("Hookstream/", env!("CARGO_PKG_VERSION"));

/// The webhook body: `{"type": …, "timestamp": RFC 3339, "data": <payload>}`.
///
/// The payload is spliced in as the JSON text ingest stored, so it reaches the receiver byte for
/// byte as it was accepted, without a parse and re-serialise on every attempt.
pub fn body(task: &DeliveryTask) -> String {
    let timestamp = task.event_created_at.format(&Rfc3339).unwrap_or_default();
    format!(
        r#"{{"type":{},"timestamp":{},"data":{}}}"#,
        serde_json::Value::from(task.event_type.as_str()),
        serde_json::Value::from(timestamp),
        task.payload
    )
}

/// The body of a batch: the usual bodies of its deliveries as one JSON array, in order.
pub fn batch_body<'a>(tasks: impl IntoIterator<Item = &'a DeliveryTask>) -> String {
    let mut body = String::from("[");
    for (n, task) in tasks.into_iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(&self::body(task));
    }
    body.push(']');
    body
}

/// A batch's own `webhook-id`: derived from the deliveries it carries, so the same batch sent
/// again (a retry) has the same id and a receiver can tell it from a batch it has not seen.
/// A batch that carries other deliveries has another id.
pub fn batch_id<'a>(tasks: impl IntoIterator<Item = &'a DeliveryTask>) -> String {
    let mut ids: Vec<String> = tasks
        .into_iter()
        .map(|task| task.delivery_id.to_string())
        .collect();
    ids.sort_unstable();
    let mut hasher = Sha256::new();
    for id in &ids {
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    let digest = hasher.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("batch_{hex}")
}

/// The Standard Webhooks headers for one request with webhook id `id`, sent at `unix_seconds`.
pub fn headers(
    id: String,
    secrets: &[&SigningSecret],
    unix_seconds: i64,
    body: &str,
) -> [(&'static str, String); 3] {
    // One signature per secret, space-separated: a receiver accepts the webhook if any one
    // verifies, so it can move to a rotated secret at its own pace.
    let signature = secrets
        .iter()
        .map(|secret| sign(secret, &id, unix_seconds, body.as_bytes()))
        .collect::<Vec<_>>()
        .join(" ");
    [
        ("webhook-id", id),
        ("webhook-timestamp", unix_seconds.to_string()),
        ("webhook-signature", signature),
    ]
}

#[cfg(test)]
mod tests {
    use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
    use hookstream_model::names::{EventType, Tenant};
    use hookstream_signing::verify;
    use time::OffsetDateTime;

    use super::*;

    fn task() -> DeliveryTask {
        DeliveryTask {
            delivery_id: DeliveryId::generate(),
            event_id: EventId::generate(),
            endpoint_id: EndpointId::generate(),
            tenant: Tenant::parse("acme", "t").unwrap(),
            event_type: EventType::parse("order.created", "t").unwrap(),
            event_created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            payload: r#"{"order":42,"note":"\"quoted\""}"#.into(),
            attempts_made: 0,
            due_at: None,
        }
    }

    #[test]
    fn the_body_wraps_the_payload_with_type_and_timestamp() {
        let body: serde_json::Value = serde_json::from_str(&body(&task())).unwrap();
        assert_eq!(body["type"], "order.created");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(body["data"]["order"], 42);
        assert_eq!(body["data"]["note"], "\"quoted\"");
    }

    #[test]
    fn the_headers_carry_a_signature_over_id_timestamp_and_body() {
        let task = task();
        let secret = SigningSecret::generate().unwrap();
        let body = body(&task);
        let [(id_name, id), (ts_name, ts), (sig_name, sig)] = headers(
            task.delivery_id.to_string(),
            &[&secret],
            1_700_000_100,
            &body,
        );
        assert_eq!(
            (id_name, ts_name, sig_name),
            ("webhook-id", "webhook-timestamp", "webhook-signature")
        );
        assert_eq!(id, task.delivery_id.to_string());
        assert_eq!(ts, "1700000100");
        assert!(verify(&secret, &id, 1_700_000_100, body.as_bytes(), &sig));
    }

    #[test]
    fn during_a_rotation_both_secrets_sign() {
        let task = task();
        let (new, old) = (
            SigningSecret::generate().unwrap(),
            SigningSecret::generate().unwrap(),
        );
        let body = body(&task);
        let [_, _, (_, sig)] = headers(
            task.delivery_id.to_string(),
            &[&new, &old],
            1_700_000_100,
            &body,
        );
        let id = task.delivery_id.to_string();
        assert_eq!(sig.split(' ').count(), 2);
        assert!(verify(&new, &id, 1_700_000_100, body.as_bytes(), &sig));
        assert!(verify(&old, &id, 1_700_000_100, body.as_bytes(), &sig));
    }

    #[test]
    fn a_batch_is_an_array_of_the_usual_bodies_with_an_id_of_its_own_contents() {
        let (a, b, c) = (task(), task(), task());
        let body: serde_json::Value = serde_json::from_str(&batch_body([&a, &b])).unwrap();
        let items = body.as_array().expect("an array");
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0],
            serde_json::from_str::<serde_json::Value>(&super::body(&a)).unwrap()
        );
        assert_eq!(batch_body(std::iter::empty::<&DeliveryTask>()), "[]");

        let id = batch_id([&a, &b]);
        assert!(id.starts_with("batch_") && id.len() == 6 + 32, "{id}");
        assert_eq!(id, batch_id([&b, &a]), "the same deliveries, the same id");
        assert_ne!(id, batch_id([&a, &b, &c]), "other deliveries, another id");
        assert_ne!(id, batch_id([&a]));
    }
}
