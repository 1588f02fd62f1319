//! The HTTP client webhooks go out through. It connects only to addresses the
//! [`DestinationResolver`] handed out for that request, so a host name cannot be re-bound to an
//! internal address between the check and the connection, and it never lets anything else
//! (a proxy, a redirect) choose where a request goes.

use std::net::SocketAddr;
use std::time::Duration;

use crate::resolver::{DestinationResolver, ResolveError};

/// The longest a connection may take to open, whatever the request timeout.
const MOST_CONNECT_TIME: Duration = Duration::from_secs(5);
/// How long an idle connection to an endpoint is kept for its next webhook.
const IDLE_CONNECTION_KEPT: Duration = Duration::from_secs(60);

/// A client whose requests time out after `timeout`, naming themselves `user_agent`, and
/// connecting only where `resolver` allows.
pub fn webhook_client(
    timeout: Duration,
    user_agent: &str,
    resolver: DestinationResolver,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(PolicyResolve(resolver))
        // A proxy would resolve and connect on our behalf, past the destination policy.
        .no_proxy()
        // A redirect could point anywhere (including inside our network); never follow.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(MOST_CONNECT_TIME))
        .user_agent(user_agent)
        .pool_idle_timeout(IDLE_CONNECTION_KEPT)
        .build()
}

/// Hands reqwest only addresses the destination policy allows, so the address a webhook
/// connects to is always one that was checked at that moment.
struct PolicyResolve(DestinationResolver);

impl reqwest::dns::Resolve for PolicyResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            let addresses = resolver.resolve(name.as_str()).await.map_err(|err| {
                // A refusal keeps its own type, so the sender can tell it from a failed lookup.
                let boxed: Box<dyn std::error::Error + Send + Sync> = match err {
                    ResolveError::Blocked(blocked) => Box::new(blocked),
                    other => Box::new(other),
                };
                boxed
            })?;
            let addrs: reqwest::dns::Addrs =
                Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}
