//! Which destinations endpoints may use, as a flag group every service that checks them takes.

use ipnet::IpNet;

use hookstream_model::destination::DestinationPolicy;

use crate::resolver::{DestinationResolver, ResolveError};

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

    /// The DNS server endpoint host names are resolved with (`IP:PORT`); by default the
    /// system's (`/etc/resolv.conf`).
    #[arg(long, env = "HOOKSTREAM_DNS_SERVER")]
    pub dns_server: Option<std::net::SocketAddr>,
}

impl DestinationSettings {
    pub fn policy(&self) -> DestinationPolicy {
        DestinationPolicy {
            allow_http: self.allow_http_endpoints,
            allowed_networks: self.allowed_destinations.clone(),
        }
    }

    /// The resolver that checks endpoint host names against the policy.
    pub fn resolver(&self) -> Result<DestinationResolver, ResolveError> {
        DestinationResolver::new(self.policy(), self.dns_server)
    }
}
