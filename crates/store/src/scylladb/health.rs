//! Endpoint health on ScyllaDB: one row of JSON per endpoint, written only by the dispatcher
//! that owns the endpoint's partition.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use hookstream_model::health::EndpointHealth;
use hookstream_model::ids::EndpointId;

use super::{ScyllaStore, first_row, ts};
use crate::health::{decode, encode};
use crate::{HealthStore, StoreError};

/// Statements in flight at once for one call.
const AT_ONCE: usize = 16;

#[async_trait]
impl HealthStore for ScyllaStore {
    async fn put_endpoint_health(
        &self,
        healths: &[(EndpointId, EndpointHealth)],
    ) -> Result<(), StoreError> {
        let at = OffsetDateTime::now_utc();
        let rows = healths
            .iter()
            .map(|(id, health)| Ok((*id, encode(health)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        futures::stream::iter(rows)
            .map(|(id, text)| self.put_health_row(id, text, at))
            .buffer_unordered(AT_ONCE)
            .try_collect::<()>()
            .await
    }

    async fn endpoint_health(
        &self,
        ids: &[EndpointId],
    ) -> Result<Vec<(EndpointId, EndpointHealth)>, StoreError> {
        // A page of endpoints at most: one point read each, a few side by side.
        let found: Vec<Option<(EndpointId, EndpointHealth)>> = futures::stream::iter(ids.to_vec())
            .map(|id| self.health_row(id))
            .buffer_unordered(AT_ONCE)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }
}

impl ScyllaStore {
    async fn put_health_row(
        &self,
        id: EndpointId,
        text: String,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.run(
            &self.statements.upsert_endpoint_health,
            (id.to_string(), text, ts(at)),
        )
        .await
        .map(|_| ())
    }

    async fn health_row(
        &self,
        id: EndpointId,
    ) -> Result<Option<(EndpointId, EndpointHealth)>, StoreError> {
        let result = self
            .run(&self.statements.select_endpoint_health, (id.to_string(),))
            .await?;
        Ok(first_row::<(Option<String>,)>(result)?
            .and_then(|(text,)| text)
            .and_then(|text| decode(id, &text))
            .map(|health| (id, health)))
    }
}
