//! Endpoints as stored: written, paged through, changed and their secrets rotated by
//! lightweight transactions where two writers could race.

use scylla::value::{CqlTimestamp, MaybeUnset};
use time::OffsetDateTime;

use hookstream_model::endpoint::{Endpoint, EndpointChanges, Subscription};
use hookstream_model::ids::EndpointId;
use hookstream_model::names::Tenant;
use hookstream_model::shaping::Shaping;
use hookstream_signing::SigningSecret;

use crate::{Page, PageRequest, Store, StoreError};

use super::decode::{SubscriberRow, applied, first_row};
use super::{ScyllaStore, ts};

impl ScyllaStore {
    /// Inserts a new endpoint, its secret sealed.
    pub(super) async fn insert_endpoint(&self, e: &Endpoint) -> Result<(), StoreError> {
        let id = e.id.to_string();
        self.run(
            &self.statements.insert_endpoint,
            (
                &id,
                e.tenant.as_str(),
                e.url.as_str(),
                e.subscription.to_list(),
                self.sealer.seal(e.id, &e.secret)?,
                e.disabled,
                ts(e.created_at),
                ts(e.updated_at),
                e.max_attempts.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                e.paused,
                e.circuit.state.as_str(),
                e.circuit.open_until.map(ts),
                e.shaping.to_json(),
            ),
        )
        .await?;
        self.run(
            &self.statements.insert_endpoint_of_tenant,
            (e.tenant.as_str(), &id),
        )
        .await?;
        Ok(())
    }

    /// A page of a tenant's live endpoints.
    pub(super) async fn endpoints_page(
        &self,
        tenant: &Tenant,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, StoreError> {
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT);
        let wanted = limit as usize + 1;
        let mut cursor = page.after.clone().unwrap_or_default();
        let mut items = Vec::new();
        // Deleted endpoints stay in the tenant's index; read on until the page is full.
        loop {
            let ids = self
                .ids(
                    &self.statements.select_endpoint_ids_of_tenant,
                    (tenant.as_str(), &cursor, wanted as i32),
                )
                .await?;
            let exhausted = ids.len() < wanted;
            for id in &ids {
                let id = EndpointId::parse(id, "id")
                    .map_err(|e| StoreError::corrupt("endpoint id", e))?;
                if let Some(endpoint) = self.get_endpoint(id).await? {
                    items.push(endpoint);
                }
            }
            match ids.last() {
                Some(last) if !exhausted && items.len() < wanted => cursor = last.clone(),
                _ => break,
            }
        }
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|e| e.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Writes what an endpoint's owner can change; false if it is not live.
    pub(super) async fn write_endpoint(&self, e: &Endpoint) -> Result<bool, StoreError> {
        applied(
            self.run(
                &self.statements.update_endpoint,
                (
                    e.url.as_str(),
                    e.subscription.to_list(),
                    e.disabled,
                    ts(e.updated_at),
                    e.max_attempts.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                    e.paused,
                    e.shaping.to_json(),
                    e.id.to_string(),
                ),
            )
            .await?,
        )
    }

    /// Applies `changes` to a live endpoint; the endpoint as stored after, or none.
    pub(super) async fn apply_endpoint_changes(
        &self,
        id: EndpointId,
        changes: &EndpointChanges,
        at: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError> {
        // Only the given columns are written, each its own cell, so a change made side by side
        // (a pause, a `410` disabling it) is kept without a read-compare-retry. The settings
        // document is the exception: written whole, under a compare-and-set on what it was.
        for _ in 0..5 {
            let result = self
                .run(&self.statements.select_shaping, (id.to_string(),))
                .await?;
            let Some((Some(tenant), stored, None)) =
                first_row::<(Option<String>, Option<String>, Option<CqlTimestamp>)>(result)?
            else {
                return Ok(None);
            };
            let shaping = if changes.changes_shaping() {
                let current = Shaping::from_json(stored.as_deref())
                    .map_err(|e| StoreError::corrupt("endpoint shaping", e))?
                    .within_bounds();
                Some(changes.apply_to_shaping(current).to_json())
            } else {
                None
            };
            let columns = (
                MaybeUnset::from_option(changes.url.as_ref().map(|u| u.as_str())),
                MaybeUnset::from_option(changes.subscription.as_ref().map(Subscription::to_list)),
                MaybeUnset::from_option(changes.disabled),
                ts(at),
                MaybeUnset::from_option(
                    changes
                        .max_attempts
                        .map(|n| n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))),
                ),
                MaybeUnset::from_option(changes.paused),
                MaybeUnset::from_option(shaping.clone()),
                id.to_string(),
                tenant.as_str(),
            );
            let result = match shaping {
                None => self.run(&self.statements.change_endpoint, columns).await?,
                Some(_) => {
                    let (a, b, c, d, e, f, g, h, i) = columns;
                    let condition = (a, b, c, d, e, f, g, h, i, stored.as_deref());
                    self.run(&self.statements.change_endpoint_shaping, condition)
                        .await?
                }
            };
            if applied(result)? {
                return self.get_endpoint(id).await;
            }
            // Deleted meanwhile, or its settings changed since they were read: read again.
        }
        Err(StoreError::Backend(
            "scylla: the endpoint's settings kept changing; try again".into(),
        ))
    }

    /// Puts a new secret in place, keeping the current one as the previous until it expires.
    pub(super) async fn rotate_endpoint_secret(
        &self,
        id: EndpointId,
        new: &SigningSecret,
        previous_expires_at: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError> {
        // Compare-and-set on the secret read: of two rotations racing, one wins and the other
        // reads again, so the secret that retires is always the one that was current.
        // The compare is on the stored (sealed) text, which is what the row holds.
        let sealed = self.sealer.seal(id, new)?;
        for _ in 0..5 {
            let result = self
                .run(&self.statements.select_secret, (id.to_string(),))
                .await?;
            let Some((Some(current), deleted_at)) =
                first_row::<(Option<String>, Option<CqlTimestamp>)>(result)?
            else {
                return Ok(None);
            };
            if deleted_at.is_some() {
                return Ok(None);
            }
            // A secret that does not open (planted in plain text, sealed under another key)
            // does not keep signing: rotating is how an operator gets rid of it.
            let retiring = self
                .sealer
                .open(&id.to_string(), &current)
                .is_ok()
                .then_some(current.as_str());
            let result = self
                .run(
                    &self.statements.rotate_secret,
                    (
                        &sealed,
                        retiring,
                        ts(previous_expires_at),
                        ts(OffsetDateTime::now_utc()),
                        id.to_string(),
                        &current,
                    ),
                )
                .await?;
            if applied(result)? {
                return self.get_endpoint(id).await;
            }
        }
        Err(StoreError::Backend(
            "scylla: the endpoint's secret kept changing; try again".into(),
        ))
    }

    /// A tenant's live endpoints and what each subscribes to.
    pub(super) async fn subscriptions_of(
        &self,
        tenant: &Tenant,
    ) -> Result<Vec<(EndpointId, Subscription)>, StoreError> {
        let page = PageRequest::MAX_LIMIT as i32;
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let ids = self
                .ids(
                    &self.statements.select_endpoint_ids_of_tenant,
                    (tenant.as_str(), &cursor, page),
                )
                .await?;
            for id in &ids {
                let result = self.run(&self.statements.select_subscriber, (id,)).await?;
                // A disabled endpoint is subscribed too: its deliveries are kept until it is enabled.
                let Some((types, _disabled, deleted_at)) = first_row::<SubscriberRow>(result)?
                else {
                    continue;
                };
                let types = types.unwrap_or_default();
                let subscription = Subscription::parse(&types, "event_types")
                    .map_err(|e| StoreError::corrupt("endpoint event_types", e))?;
                if deleted_at.is_none() {
                    let id = EndpointId::parse(id, "id")
                        .map_err(|e| StoreError::corrupt("endpoint id", e))?;
                    out.push((id, subscription));
                }
            }
            match ids.last() {
                Some(last) if ids.len() == page as usize => cursor = last.clone(),
                _ => return Ok(out),
            }
        }
    }
}
