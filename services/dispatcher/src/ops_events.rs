//! Telling operational events (see [`hookstream_model::ops_event`]) from the dispatcher.

use hookstream_model::ops_event::OpsEvent;
use std::time::Duration;

use hookstream_runtime::operational_events::{OpsEventPublisher, OpsPublishError};

use crate::metrics;

/// The longest one event may take: the health writer waits for it.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes one event. What Kafka does not take within [`PUBLISH_TIMEOUT`] is logged and
/// counted, not retried here: the change it tells is recorded in the store and shown by the
/// API. (One given up on may still reach the topic; told twice, it has the same id.)
pub async fn publish_ops_event(publisher: &OpsEventPublisher, event: &OpsEvent) {
    let event_type = event.kind.event_type();
    let published = tokio::time::timeout(PUBLISH_TIMEOUT, publisher.publish(event))
        .await
        .unwrap_or_else(|_| {
            Err(OpsPublishError {
                id: event.id.clone(),
                reason: format!("not acknowledged within {PUBLISH_TIMEOUT:?}"),
            })
        });
    match published {
        Ok(()) => {
            metrics::OPS_EVENTS
                .with_label_values(&[event_type, "published"])
                .inc();
            tracing::info!(id = %event.id, r#type = event_type, subject = %event.subject, "operational event published");
        }
        Err(err) => {
            metrics::OPS_EVENTS
                .with_label_values(&[event_type, "failed"])
                .inc();
            tracing::error!(error = %err, r#type = event_type, subject = %event.subject, "operational event not published");
        }
    }
}
