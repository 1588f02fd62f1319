//! Hookstream's store: endpoints, events and the idempotency window, deliveries and the attempt log.
//!
//! [`Store`] is the contract every backend keeps; [`open`] picks one from a URL. The embedded
//! SQLite backend is the default for one machine: several processes (ingest, dispatcher) share one
//! database file safely.

mod access;
pub mod claim;
mod error;
mod health;
mod installation;
mod location;
mod metered;
mod ordered;
mod page;
mod raw;
mod replay;
pub mod scylladb;
mod sealing;
pub mod sqlite;
mod store;

pub use access::AccessStore;
pub use claim::{AttemptClaim, ClaimOutcome, RecordOutcome};
pub use error::StoreError;
pub use health::{HealthStore, TRAFFIC_KEPT};
pub use installation::{InstallationMismatch, PrefixRole, agree_on_topic_prefix};
pub use location::{StoreLocation, open};
pub use metered::MeteredStore;
pub use ordered::{OrderedStore, QueuedTask};
pub use page::{Page, PageRequest};
pub use replay::{NewBatchItem, ReplayStep, ReplayStore};
pub use sealing::{SealState, SealingCensus, SecretSealer, UNNAMED as UNNAMED_KEY};
pub use store::{CreateEventOutcome, DeliveryFilter, NewAttempt, NewEvent, Purged, Store};
