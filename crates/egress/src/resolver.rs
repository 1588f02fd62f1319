//! Resolving endpoint host names against the destination policy. An endpoint's name is checked
//! when the endpoint is created or changed and again at every attempt (DNS can change), and the
//! dispatcher connects only to addresses this resolver handed out, so a name cannot be re-bound
//! to an internal address between the check and the connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use url::Host;

use hookstream_model::destination::{DestinationPolicy, EndpointUrl, is_localhost_name};

/// A destination the policy refuses.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DestinationBlocked(pub String);

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Blocked(#[from] DestinationBlocked),
    /// The name could not be resolved (does not exist, or no DNS server answered).
    #[error("cannot resolve `{host}`: {reason}")]
    Lookup { host: String, reason: String },
    #[error("configuring the DNS resolver: {0}")]
    Setup(String),
}

/// Resolves host names and refuses those that lead anywhere the policy does not allow.
#[derive(Clone)]
pub struct DestinationResolver {
    resolver: Arc<TokioResolver>,
    policy: Arc<DestinationPolicy>,
}

impl DestinationResolver {
    /// Asks the DNS server at `server`, or the system's (`/etc/resolv.conf`) when `None`.
    pub fn new(
        policy: DestinationPolicy,
        server: Option<SocketAddr>,
    ) -> Result<Self, ResolveError> {
        let setup = |e: &dyn std::fmt::Display| ResolveError::Setup(e.to_string());
        let builder = match server {
            Some(server) => {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = server.port();
                        c
                    })
                    .collect();
                let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                    server.ip(),
                    true,
                    connections,
                )]);
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            }
            None => TokioResolver::builder_tokio().map_err(|e| setup(&e))?,
        };
        Ok(Self {
            resolver: Arc::new(builder.build().map_err(|e| setup(&e))?),
            policy: Arc::new(policy),
        })
    }

    pub fn policy(&self) -> &DestinationPolicy {
        &self.policy
    }

    /// The addresses of `host`, if every one of them is allowed. A name with one internal
    /// address among public ones is refused: which one a connection takes is not ours to pick.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let lookup_error = |reason: String| ResolveError::Lookup {
            host: host.to_owned(),
            reason,
        };
        let found = self
            .resolver
            .lookup_ip(host)
            .await
            .map_err(|e| lookup_error(e.to_string()))?;
        let addresses: Vec<IpAddr> = found.iter().collect();
        if addresses.is_empty() {
            return Err(lookup_error("no addresses".into()));
        }
        for ip in &addresses {
            self.policy.check_ip(*ip).map_err(|reason| {
                DestinationBlocked(format!("`{host}` resolves to {ip}: {reason}"))
            })?;
        }
        Ok(addresses)
    }

    /// Checks an endpoint URL: its scheme and literal address by the policy, its host name by
    /// resolving it.
    pub async fn check(&self, url: &EndpointUrl) -> Result<(), ResolveError> {
        self.policy
            .check(url, "url")
            .map_err(|e| DestinationBlocked(e.reason))?;
        match url.as_url().host() {
            // `localhost` names were judged by the policy as loopback; never looked up.
            Some(Host::Domain(name)) if !is_localhost_name(name) => {
                self.resolve(name).await.map(drop)
            }
            _ => Ok(()),
        }
    }
}
