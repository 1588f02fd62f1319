//! Telling operational events (see [`hookstream_model::ops_event`]) from the dispatcher.

use hookstream_kafka::ops_events::OpsEventPublisher;
use hookstream_model::ops_event::OpsEvent;

use crate::metrics;

/// Publishes one event. What Kafka does not take in time is logged and counted, not retried
/// here: the change it tells is recorded in the store and shown by the API.
pub async fn publish_ops_event(publisher: &OpsEventPublisher, event: &OpsEvent) {
    let event_type = event.kind.event_type();
    match publisher.publish(event).await {
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
