//! Endpoint health (see [`hookstream_model::health`]): the dispatcher that owns an endpoint's
//! partition writes it now and then, replacing what was there; the API reads it. Kept apart from
//! the endpoint's own row, so these frequent writes do not look like changes to the endpoint
//! (which every process's endpoint cache would then read again).

use async_trait::async_trait;

use hookstream_model::health::EndpointHealth;
use hookstream_model::ids::EndpointId;
use hookstream_model::traffic::TrafficReport;

use crate::StoreError;

#[async_trait]
pub trait HealthStore: Send + Sync + 'static {
    /// Replaces the stored health of each endpoint given.
    async fn put_endpoint_health(
        &self,
        healths: &[(EndpointId, EndpointHealth)],
    ) -> Result<(), StoreError>;
    /// The stored health of those of `ids` that have one, in no particular order.
    async fn endpoint_health(
        &self,
        ids: &[EndpointId],
    ) -> Result<Vec<(EndpointId, EndpointHealth)>, StoreError>;
    /// Replaces the stored reports of the same (minute, reporter) with these. Reports older
    /// than [`TRAFFIC_KEPT`] are dropped, now or later.
    async fn put_traffic_reports(&self, reports: &[TrafficReport]) -> Result<(), StoreError>;
    /// The stored reports of minute `first` and after, in no particular order.
    async fn traffic_reports(&self, first: i64) -> Result<Vec<TrafficReport>, StoreError>;
}

/// How long traffic reports are kept: the overview reads only its last minutes.
pub const TRAFFIC_KEPT: time::Duration = time::Duration::hours(2);

/// The open breakers of a stored traffic report (a JSON list of endpoint ids).
pub(crate) fn breakers_of(text: &str) -> Result<Vec<EndpointId>, StoreError> {
    let ids: Vec<String> =
        serde_json::from_str(text).map_err(|e| StoreError::corrupt("traffic report", e))?;
    ids_of(&ids)
}

/// Endpoint ids as stored in a traffic report.
pub(crate) fn ids_of(ids: &[String]) -> Result<Vec<EndpointId>, StoreError> {
    ids.iter()
        .map(|id| {
            EndpointId::parse(id, "open_breakers")
                .map_err(|e| StoreError::corrupt("traffic report", e))
        })
        .collect()
}

/// Encodes health as stored: JSON text, so a newer build's added fields do not stop an older
/// one from reading it.
pub(crate) fn encode(health: &EndpointHealth) -> Result<String, StoreError> {
    serde_json::to_string(health).map_err(|e| StoreError::corrupt("endpoint health", e))
}

/// Decodes stored health; a row that does not decode (damaged, or a newer build's value this one
/// does not know, such as a new attempt class) counts as none, with a warning, so it is
/// overwritten by the next write instead of stopping every read and write of health.
pub(crate) fn decode(id: EndpointId, text: &str) -> Option<EndpointHealth> {
    match serde_json::from_str(text) {
        Ok(health) => Some(health),
        Err(err) => {
            tracing::warn!(endpoint_id = %id, error = %err, "stored endpoint health does not decode; taken as none");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_a_newer_build_wrote_with_an_unknown_class_counts_as_none() {
        let id = EndpointId::generate();
        let newer = r#"{"minutes":[],"failure_streak":1,
            "last_failure":{"at":"2026-12-05T09:00:00Z","class":"SOME_NEW_CLASS"}}"#;
        assert_eq!(decode(id, newer), None);
        let known = encode(&EndpointHealth::default()).unwrap_or_default();
        assert_eq!(decode(id, &known), Some(EndpointHealth::default()));
    }
}
