//! Turns a replay request into a batch: the exact dead letters it takes, in order, and for a
//! dry run what would become of each.

use std::collections::HashSet;

use time::OffsetDateTime;

use hookstream_model::ids::{BatchId, DeliveryId};
use hookstream_model::names::Tenant;
use hookstream_model::replay::{
    Batch, BatchCounts, BatchSelection, BatchStatus, EndpointState, IndexedDeadLetter, ItemOutcome,
    SkipReason, skip_reason,
};
use hookstream_store::{NewBatchItem, PageRequest, Store, StoreError};

/// The most dead letters one batch takes; a larger selection must be narrowed (by time, say).
pub const MAX_BATCH_ITEMS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the selection matches more than {MAX_BATCH_ITEMS} dead letters; narrow it (since, until, endpoint_id)"
    )]
    TooMany,
    #[error("delivery {0} does not exist")]
    UnknownDelivery(DeliveryId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What was asked for.
pub struct ReplayRequest {
    pub selection: BatchSelection,
    pub dry_run: bool,
    pub allow_repeat: bool,
    /// The id of the API key asking, recorded as the batch's creator.
    pub created_by: String,
    /// The one tenant the batch is for, if it is: named dead letters of other tenants are
    /// unknown to it (a filter is narrowed to it by the caller).
    pub tenant: Option<Tenant>,
}

/// Plans and records a batch. A dry run is recorded finished, with the outcome each dead letter
/// would have; a real batch is recorded running, for the replay service to work through.
pub async fn create_batch(
    store: &dyn Store,
    request: ReplayRequest,
) -> Result<(Batch, Vec<NewBatchItem>), PlanError> {
    let items = match &request.selection {
        BatchSelection::Filter(filter) => {
            let mut letters: Vec<IndexedDeadLetter> = Vec::new();
            let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
            loop {
                let got = store.list_dead_letters(filter, &page).await?;
                letters.extend(got.items);
                if letters.len() > MAX_BATCH_ITEMS {
                    return Err(PlanError::TooMany);
                }
                match got.next {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
            let mut items = Vec::with_capacity(letters.len());
            for letter in &letters {
                let task = &letter.letter.task;
                items.push(NewBatchItem {
                    dead_delivery_id: task.delivery_id,
                    endpoint_id: task.endpoint_id,
                    outcome: planned(store, &request, Some(letter.replays), task.endpoint_id)
                        .await?,
                });
            }
            items
        }
        BatchSelection::Deliveries(ids) => {
            if ids.len() > MAX_BATCH_ITEMS {
                return Err(PlanError::TooMany);
            }
            let mut seen = HashSet::new();
            let mut items = Vec::with_capacity(ids.len());
            for &id in ids.iter().filter(|id| seen.insert(**id)) {
                let letter = store
                    .get_dead_letter(id)
                    .await?
                    .filter(|l| visible(&request, &l.letter.task.tenant));
                let item = match letter {
                    Some(letter) => NewBatchItem {
                        dead_delivery_id: id,
                        endpoint_id: letter.letter.task.endpoint_id,
                        outcome: planned(
                            store,
                            &request,
                            Some(letter.replays),
                            letter.letter.task.endpoint_id,
                        )
                        .await?,
                    },
                    None => {
                        let delivery = store
                            .get_delivery(id)
                            .await?
                            .filter(|d| visible(&request, &d.tenant))
                            .ok_or(PlanError::UnknownDelivery(id))?;
                        NewBatchItem {
                            dead_delivery_id: id,
                            endpoint_id: delivery.endpoint_id,
                            outcome: ItemOutcome::Skipped(SkipReason::NotDeadLettered),
                        }
                    }
                };
                items.push(item);
            }
            items
        }
    };
    let now = OffsetDateTime::now_utc();
    let mut counts = BatchCounts::default();
    for item in &items {
        counts.add(&item.outcome, 1);
    }
    let batch = Batch {
        id: BatchId::generate(),
        created_by: request.created_by,
        tenant: request.tenant,
        selection: request.selection,
        dry_run: request.dry_run,
        allow_repeat: request.allow_repeat,
        status: if request.dry_run {
            BatchStatus::Completed
        } else {
            BatchStatus::Running
        },
        created_at: now,
        updated_at: now,
        finished_at: request.dry_run.then_some(now),
        error: None,
        counts,
    };
    store.create_batch(&batch, &items).await?;
    Ok((batch, items))
}

/// Whether a named delivery of `tenant` is one this request may take.
fn visible(request: &ReplayRequest, tenant: &Tenant) -> bool {
    request.tenant.as_ref().is_none_or(|own| own == tenant)
}

/// A dead letter's planned outcome: decided when the batch runs, predicted in a dry run.
async fn planned(
    store: &dyn Store,
    request: &ReplayRequest,
    replays: Option<u32>,
    endpoint: hookstream_model::ids::EndpointId,
) -> Result<ItemOutcome, StoreError> {
    if !request.dry_run {
        return Ok(ItemOutcome::Pending);
    }
    let state = match store.get_endpoint(endpoint).await? {
        None => EndpointState::Deleted,
        Some(e) if e.disabled => EndpointState::Disabled,
        Some(_) => EndpointState::Live,
    };
    Ok(match skip_reason(replays, request.allow_repeat, state) {
        Some(reason) => ItemOutcome::Skipped(reason),
        None => ItemOutcome::WouldReplay,
    })
}
