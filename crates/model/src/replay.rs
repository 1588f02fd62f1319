//! Replaying dead letters: which ones a batch takes, and what became of each.

use std::fmt;

use time::OffsetDateTime;

use crate::dead_letter::DeadLetter;
use crate::delivery::AttemptClass;
use crate::ids::{BatchId, DeliveryId, EndpointId};
use crate::names::{EventType, Tenant};

/// A dead letter as the store keeps it: the letter, and how often it was replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedDeadLetter {
    pub letter: DeadLetter,
    /// Deliveries created from this dead letter so far.
    pub replays: u32,
}

/// Narrows a list of dead letters; every field set must match. `since` is inclusive, `until`
/// exclusive, both on the time the delivery died. `reason` matches a dead letter whose reason
/// (words, such as "gave up after 13 attempts; the last was TIMEOUT") contains it, ignoring case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetterFilter {
    pub tenant: Option<Tenant>,
    pub endpoint_id: Option<EndpointId>,
    pub event_type: Option<EventType>,
    pub class: Option<AttemptClass>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub reason: Option<String>,
}

impl DeadLetterFilter {
    /// The longest `reason` a filter may hold.
    pub const MAX_REASON_CHARS: usize = 200;

    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let task = &letter.task;
        self.tenant.as_ref().is_none_or(|t| *t == task.tenant)
            && self.endpoint_id.is_none_or(|id| id == task.endpoint_id)
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| *t == task.event_type)
            && self.class.is_none_or(|c| c == letter.last_class)
            && self.since.is_none_or(|t| letter.dead_lettered_at >= t)
            && self.until.is_none_or(|t| letter.dead_lettered_at < t)
            && self
                .reason
                .as_deref()
                .is_none_or(|words| letter.reason.to_lowercase().contains(&words.to_lowercase()))
    }
}

/// What a batch replays: named deliveries, or every dead letter a filter matches.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchSelection {
    Deliveries(Vec<DeliveryId>),
    Filter(DeadLetterFilter),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchStatus {
    /// Creating deliveries (a dry run never is).
    Running,
    Completed,
    /// Stopped by an operator; what it created stays.
    Cancelled,
    /// Stopped by an error it could not get past.
    Failed,
}

impl BatchStatus {
    pub const ALL: [Self; 4] = [
        Self::Running,
        Self::Completed,
        Self::Cancelled,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a dead letter in a batch was not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Replayed before, and the batch did not ask for repeats (`allow_repeat`).
    AlreadyReplayed,
    /// The delivery named is not a dead letter (unknown, delivered, or still being tried).
    NotDeadLettered,
    /// Its endpoint was deleted.
    EndpointDeleted,
    /// Its endpoint is disabled; enable it first.
    EndpointDisabled,
}

impl SkipReason {
    pub const ALL: [Self; 4] = [
        Self::AlreadyReplayed,
        Self::NotDeadLettered,
        Self::EndpointDeleted,
        Self::EndpointDisabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyReplayed => "already_replayed",
            Self::NotDeadLettered => "not_dead_lettered",
            Self::EndpointDeleted => "endpoint_deleted",
            Self::EndpointDisabled => "endpoint_disabled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What became of one dead letter of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Not reached yet.
    Pending,
    /// A dry run would replay it.
    WouldReplay,
    /// The new delivery exists; `published` once Kafka acknowledged its task.
    Created {
        delivery_id: DeliveryId,
        published: bool,
    },
    Skipped(SkipReason),
}

impl ItemOutcome {
    /// The outcome's name as stored and shown (`created`, `skipped`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::WouldReplay => "would_replay",
            Self::Created { .. } => "created",
            Self::Skipped(_) => "skipped",
        }
    }
}

/// One dead letter in a batch, in the batch's order.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    pub batch_id: BatchId,
    pub position: u32,
    pub dead_delivery_id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub outcome: ItemOutcome,
}

/// Counts of a batch's items by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub matched: u32,
    pub pending: u32,
    pub would_replay: u32,
    pub created: u32,
    /// Skipped items by reason.
    pub skipped: Vec<(SkipReason, u32)>,
}

impl BatchCounts {
    pub fn skipped_total(&self) -> u32 {
        self.skipped.iter().map(|(_, n)| n).sum()
    }

    pub fn add(&mut self, outcome: &ItemOutcome, n: u32) {
        self.matched += n;
        match outcome {
            ItemOutcome::Pending => self.pending += n,
            ItemOutcome::WouldReplay => self.would_replay += n,
            ItemOutcome::Created { .. } => self.created += n,
            ItemOutcome::Skipped(reason) => {
                match self.skipped.iter_mut().find(|(r, _)| r == reason) {
                    Some((_, count)) => *count += n,
                    None => self.skipped.push((*reason, n)),
                }
            }
        }
    }
}

/// A replay batch: what it selects, who asked, and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: BatchId,
    /// The id of the API key that created it (`admin` for the admin token).
    pub created_by: String,
    /// The tenant whose dead letters it replays, when it is one tenant's: a tenant key's batch,
    /// or the admin's with a tenant filter. Only the admin sees a batch without one.
    pub tenant: Option<crate::names::Tenant>,
    pub selection: BatchSelection,
    pub dry_run: bool,
    pub allow_repeat: bool,
    pub status: BatchStatus,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// When it completed, was cancelled or failed.
    pub finished_at: Option<OffsetDateTime>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    pub counts: BatchCounts,
}

/// Where a dead letter's endpoint stands, as far as replaying to it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    Live,
    Disabled,
    /// Deleted, or unknown.
    Deleted,
}

/// Why a dead letter may not be replayed now, if it may not: `replays` is `None` when there is
/// no such dead letter. The one rule, for the store that decides and for the dry run that
/// predicts.
pub fn skip_reason(
    replays: Option<u32>,
    allow_repeat: bool,
    endpoint: EndpointState,
) -> Option<SkipReason> {
    match (replays, endpoint) {
        (None, _) => Some(SkipReason::NotDeadLettered),
        (Some(n), _) if n > 0 && !allow_repeat => Some(SkipReason::AlreadyReplayed),
        (_, EndpointState::Deleted) => Some(SkipReason::EndpointDeleted),
        (_, EndpointState::Disabled) => Some(SkipReason::EndpointDisabled),
        (Some(_), EndpointState::Live) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_is_replayed_once_to_a_live_endpoint_unless_repeats_are_asked_for() {
        use EndpointState::*;
        assert_eq!(skip_reason(Some(0), false, Live), None);
        assert_eq!(
            skip_reason(Some(1), false, Live),
            Some(SkipReason::AlreadyReplayed)
        );
        assert_eq!(skip_reason(Some(1), true, Live), None);
        assert_eq!(
            skip_reason(None, true, Live),
            Some(SkipReason::NotDeadLettered)
        );
        assert_eq!(
            skip_reason(Some(0), false, Disabled),
            Some(SkipReason::EndpointDisabled)
        );
        assert_eq!(
            skip_reason(Some(0), true, Deleted),
            Some(SkipReason::EndpointDeleted)
        );
    }

    #[test]
    fn outcome_names_round_trip() {
        for reason in SkipReason::ALL {
            assert_eq!(SkipReason::parse(reason.as_str()), Some(reason));
        }
        for status in BatchStatus::ALL {
            assert_eq!(BatchStatus::parse(status.as_str()), Some(status));
        }
    }
}
