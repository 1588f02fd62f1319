//! Outbound traffic to endpoints, and the policy that keeps it off internal networks.
//!
//! - [`settings`]: which destinations endpoints may use, as every service that checks them
//!   takes it.
//! - [`resolver`]: endpoint host names resolved and every address checked against the policy.
//! - [`client`]: the HTTP client webhooks go out through, connecting only to addresses the
//!   resolver allowed at that moment.

pub mod client;
pub mod resolver;
pub mod settings;

pub use client::webhook_client;
pub use resolver::{DestinationBlocked, DestinationResolver, ResolveError};
pub use settings::DestinationSettings;
