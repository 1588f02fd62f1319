//! Configuration pieces shared by several services, flattened into each service's own config.

use std::sync::Arc;

use ipnet::IpNet;

use hookstream_model::destination::DestinationPolicy;
use hookstream_store::{Store, StoreError, StoreLocation};

/// Where the store lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreSettings {
    /// The store: `sqlite://PATH` for the embedded store (one machine; every service of the
    /// machine must name the same file).
    #[arg(
        long = "store",
        env = "HOOKSTREAM_STORE",
        default_value = "sqlite://.hookstream/store.db"
    )]
    pub location: String,
}

impl StoreSettings {
    pub async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        hookstream_store::open(&StoreLocation::parse(&self.location)?).await
    }
}

/// Which destinations endpoints may point at.
#[derive(Debug, Clone, clap::Args)]
pub struct DestinationSettings {
    /// Accept plain `http://` endpoint URLs (by default only `https://`).
    #[arg(
        long,
        env = "HOOKSTREAM_ALLOW_HTTP_ENDPOINTS",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub allow_http_endpoints: bool,

    /// Internal address ranges endpoints may use all the same, comma-separated CIDRs
    /// (e.g. `127.0.0.0/8,::1/128` for a local run). Loopback, private, link-local and other
    /// internal addresses are refused unless listed here.
    #[arg(long, env = "HOOKSTREAM_ALLOWED_DESTINATIONS", value_delimiter = ',')]
    pub allowed_destinations: Vec<IpNet>,
}

impl DestinationSettings {
    pub fn policy(&self) -> DestinationPolicy {
        DestinationPolicy {
            allow_http: self.allow_http_endpoints,
            allowed_networks: self.allowed_destinations.clone(),
        }
    }
}
