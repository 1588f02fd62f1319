//! Hookstream's domain model.
//!
//! Input is parsed once, at the edge, into the types of this crate; their constructors validate,
//! so code past the edge never re-checks strings. The Avro codec of every message Hookstream puts
//! on a topic lives here too, next to the types it encodes.

pub mod api_key;
pub mod codec;
pub mod dead_letter;
pub mod delivery;
pub mod destination;
pub mod endpoint;
pub mod event;
pub mod health;
pub mod health_rules;
pub mod ids;
pub mod names;
pub mod ops_event;
pub mod replay;
pub mod retry;
pub mod shaping;
pub mod task;
pub mod traffic;
mod validation;

pub use validation::ValidationError;
