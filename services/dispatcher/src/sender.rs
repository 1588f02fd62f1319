//! Sends one signed webhook over HTTP and reports what happened, without judging it.

use std::error::Error as _;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use hookstream_egress::{DestinationBlocked, DestinationResolver, webhook_client};
use hookstream_model::endpoint::Endpoint;
use hookstream_model::task::DeliveryTask;

use crate::classify::TransportFailure;
use crate::webhook;

/// What one request came to.
#[derive(Debug)]
pub struct SendResult {
    pub started_at: OffsetDateTime,
    pub latency: Duration,
    pub outcome: SendOutcome,
}

#[derive(Debug)]
pub enum SendOutcome {
    /// The endpoint answered; `snippet` is the start of the body, `retry_after` the raw
    /// `Retry-After` header if there was one.
    Answered {
        status: u16,
        snippet: String,
        retry_after: Option<String>,
    },
    /// No HTTP answer.
    Failed {
        failure: TransportFailure,
        message: String,
    },
}

/// The HTTP client webhooks go out through.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    snippet_bytes: usize,
}

impl Sender {
    pub fn new(
        timeout: Duration,
        snippet_bytes: usize,
        resolver: DestinationResolver,
    ) -> reqwest::Result<Self> {
        let client = webhook_client(timeout, webhook::USER_AGENT, resolver)?;
        Ok(Self {
            client,
            snippet_bytes,
        })
    }

    /// POSTs the webhook for `task` to `endpoint`, signed at the moment of sending.
    pub async fn send(&self, endpoint: &Endpoint, task: &DeliveryTask) -> SendResult {
        self.post(endpoint, task.delivery_id.to_string(), webhook::body(task))
            .await
    }

    /// POSTs a batch of `tasks` to `endpoint` as one webhook with an id of its own, signed at
    /// the moment of sending.
    pub async fn send_batch(&self, endpoint: &Endpoint, tasks: &[&DeliveryTask]) -> SendResult {
        let id = webhook::batch_id(tasks.iter().copied());
        self.post(endpoint, id, webhook::batch_body(tasks.iter().copied()))
            .await
    }

    /// POSTs `body` as webhook `id`, signed at the moment of sending.
    async fn post(&self, endpoint: &Endpoint, id: String, body: String) -> SendResult {
        let started_at = OffsetDateTime::now_utc();
        let mut request = self
            .client
            .post(endpoint.url.as_url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in webhook::headers(
            id,
            &endpoint.signing_secrets(started_at),
            started_at.unix_timestamp(),
            &body,
        ) {
            request = request.header(name, value);
        }
        let clock = Instant::now();
        let outcome = match request.body(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let snippet = self.read_snippet(response).await;
                SendOutcome::Answered {
                    status,
                    snippet,
                    retry_after,
                }
            }
            Err(err) => SendOutcome::Failed {
                failure: transport_failure(&err),
                message: error_chain(&err),
            },
        };
        SendResult {
            started_at,
            latency: clock.elapsed(),
            outcome,
        }
    }

    /// Reads at most `snippet_bytes` of the body; the rest is never read. A body that fails
    /// midway keeps what arrived.
    async fn read_snippet(&self, mut response: reqwest::Response) -> String {
        let mut snippet = Vec::new();
        while snippet.len() < self.snippet_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.snippet_bytes - snippet.len();
                    snippet.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        String::from_utf8_lossy(&snippet).into_owned()
    }
}

/// Tells timeouts, DNS and TLS failures apart from other connection failures.
fn transport_failure(err: &reqwest::Error) -> TransportFailure {
    if err.is_timeout() {
        return TransportFailure::Timeout;
    }
    let mut source = err.source();
    while let Some(cause) = source {
        if cause.downcast_ref::<DestinationBlocked>().is_some() {
            return TransportFailure::Blocked;
        }
        source = cause.source();
    }
    // reqwest does not expose the failing layer as a type, so read the cause chain.
    let chain = error_chain(err).to_ascii_lowercase();
    if chain.contains("dns error") || chain.contains("failed to lookup address") {
        TransportFailure::Dns
    } else if chain.contains("tls") || chain.contains("ssl") || chain.contains("certificate") {
        TransportFailure::Tls
    } else {
        TransportFailure::Network
    }
}

/// The error with all its causes, `outer: inner: root`.
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::post;

    use hookstream_model::destination::EndpointUrl;
    use hookstream_model::endpoint::{Endpoint, Subscription};
    use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
    use hookstream_model::names::{EventType, Tenant};
    use hookstream_signing::SigningSecret;

    use super::*;

    /// Serves `app` on 127.0.0.1 and returns its base URL.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    /// The policy a local run uses: loopback allowed.
    fn resolver() -> DestinationResolver {
        let policy = hookstream_model::destination::DestinationPolicy {
            allow_http: true,
            allowed_networks: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        DestinationResolver::new(policy, None).unwrap()
    }

    fn endpoint(url: &str) -> Endpoint {
        let now = OffsetDateTime::now_utc();
        Endpoint {
            id: EndpointId::generate(),
            tenant: Tenant::parse("acme", "t").unwrap(),
            url: EndpointUrl::parse(url, "url").unwrap(),
            subscription: Subscription::All,
            secret: SigningSecret::generate().unwrap(),
            previous_secret: None,
            disabled: false,
            max_attempts: None,
            paused: false,
            circuit: Default::default(),
            shaping: Default::default(),
            created_at: now,
            updated_at: now,
        }
    }

    fn task() -> DeliveryTask {
        DeliveryTask {
            delivery_id: DeliveryId::generate(),
            event_id: EventId::generate(),
            endpoint_id: EndpointId::generate(),
            tenant: Tenant::parse("acme", "t").unwrap(),
            event_type: EventType::parse("order.created", "t").unwrap(),
            event_created_at: OffsetDateTime::now_utc(),
            payload: "{}".into(),
            attempts_made: 0,
            due_at: None,
        }
    }

    #[tokio::test]
    async fn redirects_are_reported_not_followed() {
        let followed = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&followed);
        let app = Router::new()
            .route(
                "/hook",
                post(|| async {
                    (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")]).into_response()
                }),
            )
            .route(
                "/elsewhere",
                post(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async { StatusCode::OK }
                }),
            );
        let base = serve(app).await;
        let sender = Sender::new(Duration::from_secs(5), 64, resolver()).unwrap();
        let result = sender
            .send(&endpoint(&format!("{base}/hook")), &task())
            .await;
        assert!(
            matches!(result.outcome, SendOutcome::Answered { status: 302, .. }),
            "{result:?}"
        );
        assert_eq!(
            followed.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
    }

    #[tokio::test]
    async fn a_response_slower_than_the_timeout_is_a_timeout() {
        // The handler never answers; the client's timeout must end the attempt.
        let app = Router::new().route("/hook", post(std::future::pending::<StatusCode>));
        let base = serve(app).await;
        let sender = Sender::new(Duration::from_millis(300), 64, resolver()).unwrap();
        let result = sender
            .send(&endpoint(&format!("{base}/hook")), &task())
            .await;
        match result.outcome {
            SendOutcome::Failed { failure, .. } => assert_eq!(failure, TransportFailure::Timeout),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(result.latency >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_network_error() {
        // Bind and drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sender = Sender::new(Duration::from_secs(5), 64, resolver()).unwrap();
        let result = sender
            .send(&endpoint(&format!("http://127.0.0.1:{port}/hook")), &task())
            .await;
        match result.outcome {
            SendOutcome::Failed { failure, message } => {
                assert_eq!(failure, TransportFailure::Network, "{message}");
            }
            other => panic!("expected a network error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_client_connects_only_where_the_policy_allows_whatever_a_name_resolves_to() {
        let app = Router::new().route("/hook", post(|| async { StatusCode::OK }));
        let base = serve(app).await;
        let port = base.rsplit(':').next().unwrap().to_owned();
        // A policy that allows nothing internal: `localhost` resolves (hosts file) to loopback,
        // which the client's resolver refuses before any connection is made.
        let closed = DestinationResolver::new(Default::default(), None).unwrap();
        let sender = Sender::new(Duration::from_secs(5), 64, closed).unwrap();
        let result = sender
            .send(&endpoint(&format!("http://localhost:{port}/hook")), &task())
            .await;
        match result.outcome {
            SendOutcome::Failed { failure, message } => {
                assert_eq!(failure, TransportFailure::Blocked, "{message}");
            }
            other => panic!("expected a refused destination, got {other:?}"),
        }
        let open = Sender::new(Duration::from_secs(5), 64, resolver()).unwrap();
        let result = open
            .send(&endpoint(&format!("http://localhost:{port}/hook")), &task())
            .await;
        assert!(
            matches!(result.outcome, SendOutcome::Answered { status: 200, .. }),
            "{:?}",
            result.outcome
        );
    }

    #[tokio::test]
    async fn only_the_snippet_of_a_large_body_is_kept() {
        let app = Router::new().route("/hook", post(|| async { "x".repeat(100_000) }));
        let base = serve(app).await;
        let sender = Sender::new(Duration::from_secs(5), 100, resolver()).unwrap();
        match sender
            .send(&endpoint(&format!("{base}/hook")), &task())
            .await
            .outcome
        {
            SendOutcome::Answered {
                status, snippet, ..
            } => {
                assert_eq!(status, 200);
                assert_eq!(snippet.len(), 100);
            }
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}
