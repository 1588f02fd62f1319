//! The HTTP server of a public API, bounded against slow and greedy clients: a connection
//! that does not send its headers in time is closed; a body is received whole, within a time
//! and a per-route size, and only while the bytes of all bodies being received fit a budget; a
//! request that takes too long is answered `408`; and past the concurrency limit requests are
//! answered `503` with `Retry-After` at once instead of queueing. Connections beyond the limit
//! wait in the kernel's accept queue.
//!
//! `axum::serve` sets no timer on hyper, so hyper's header timeout never fires; this serves
//! each connection with hyper directly, with a timer.
//!
//! The API composes the pieces, innermost first: [`HttpLimits::shed_load`] (a place per
//! request being handled, so a body still arriving holds none), [`HttpLimits::receive_body`]
//! (inside authentication, so nothing is buffered for anonymous clients), then
//! [`HttpLimits::apply`] (the request timeout) outside everything.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounter, IntGauge, register_int_counter, register_int_gauge};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

/// Requests answered `503` because the server was at its concurrency limit.
static REQUESTS_SHED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_http_requests_shed_total",
        "Requests answered 503 at once because the server was handling as many as it takes."
    )
    .expect("metric registers once")
});

/// Requests being handled now.
static REQUESTS_IN_PROGRESS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "hookstream_http_requests_in_progress",
        "API requests being handled now (at most HOOKSTREAM_HTTP_MAX_CONCURRENT_REQUESTS)."
    )
    .expect("metric registers once")
});

/// Requests answered `503` because the bodies being received already filled the budget.
static BODIES_REFUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "hookstream_http_bodies_refused_total",
        "Requests answered 503 at once because the bodies being received filled HOOKSTREAM_HTTP_MAX_BODY_BYTES_IN_FLIGHT."
    )
    .expect("metric registers once")
});

/// Bounds on what one client can hold of the server.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpLimits {
    /// A connection that has not sent a request's headers within this time is closed.
    #[arg(long = "http-header-timeout", env = "HOOKSTREAM_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = hookstream_kafka::parse_positive_duration)]
    pub header_timeout: Duration,
    /// A request body not received whole within this time ends the request (`408`).
    #[arg(long = "http-body-timeout", env = "HOOKSTREAM_HTTP_BODY_TIMEOUT", default_value = "30s", value_parser = hookstream_kafka::parse_positive_duration)]
    pub body_timeout: Duration,
    /// A request not answered within this time is answered `408`; longer than the Kafka
    /// produce timeout, so an acknowledgement being waited for is not cut short.
    #[arg(long = "http-request-timeout", env = "HOOKSTREAM_HTTP_REQUEST_TIMEOUT", default_value = "60s", value_parser = hookstream_kafka::parse_positive_duration)]
    pub request_timeout: Duration,
    /// Most open connections; more wait to be accepted.
    #[arg(
        long = "http-max-connections",
        env = "HOOKSTREAM_HTTP_MAX_CONNECTIONS",
        default_value_t = 4096
    )]
    pub max_connections: usize,
    /// Most requests handled at once; more are answered `503` with `Retry-After`.
    #[arg(
        long = "http-max-concurrent-requests",
        env = "HOOKSTREAM_HTTP_MAX_CONCURRENT_REQUESTS",
        default_value_t = 512
    )]
    pub max_concurrent_requests: usize,
    /// Most bytes of request bodies being received at once (each counted at its declared or
    /// largest allowed size); past it requests are answered `503` with `Retry-After`.
    #[arg(
        long = "http-max-body-bytes-in-flight",
        env = "HOOKSTREAM_HTTP_MAX_BODY_BYTES_IN_FLIGHT",
        default_value_t = 128 * 1024 * 1024
    )]
    pub max_body_bytes_in_flight: usize,
}

impl HttpLimits {
    /// Checks the limits make sense together.
    pub fn check(&self) -> Result<(), String> {
        if self.max_connections == 0 || self.max_concurrent_requests == 0 {
            return Err(
                "HOOKSTREAM_HTTP_MAX_CONNECTIONS and HOOKSTREAM_HTTP_MAX_CONCURRENT_REQUESTS must be at least 1"
                    .into(),
            );
        }
        if self.header_timeout.is_zero()
            || self.body_timeout.is_zero()
            || self.request_timeout.is_zero()
        {
            return Err("HTTP timeouts must be longer than zero".into());
        }
        Ok(())
    }

    /// `router` with the request timeout.
    pub fn apply(&self, router: Router) -> Router {
        router.layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            self.request_timeout,
        ))
    }

    /// `router` giving each request a place among the requests handled at once, or answering
    /// `503` at once when there is none.
    pub fn shed_load<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        LazyLock::force(&REQUESTS_SHED);
        LazyLock::force(&REQUESTS_IN_PROGRESS);
        let in_progress = Arc::new(Semaphore::new(self.max_concurrent_requests));
        router.layer(axum::middleware::from_fn_with_state(in_progress, shed_load))
    }

    /// `router` receiving each request's whole body before the handler runs: within the body
    /// timeout (`408`), up to `limit_of(path)` bytes (`413`), and only while the bodies being
    /// received fit the budget (`503`).
    pub fn receive_body<S: Clone + Send + Sync + 'static>(
        &self,
        router: Router<S>,
        limit_of: impl Fn(&str) -> usize + Send + Sync + 'static,
    ) -> Router<S> {
        LazyLock::force(&BODIES_REFUSED);
        let budget = self.max_body_bytes_in_flight.min(u32::MAX as usize);
        let receiving = Receiving {
            timeout: self.body_timeout,
            limit_of: Arc::new(limit_of),
            budget: Arc::new(Semaphore::new(budget)),
            budget_bytes: budget,
        };
        router.layer(axum::middleware::from_fn_with_state(
            receiving,
            receive_body,
        ))
    }
}

/// What [`HttpLimits::receive_body`] needs for each request.
#[derive(Clone)]
struct Receiving {
    timeout: Duration,
    limit_of: Arc<dyn Fn(&str) -> usize + Send + Sync>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

/// Receives the whole body within the body timeout (`408` if not, `413` past the largest
/// body any route takes), so no handler waits on a client that trickles.
async fn receive_body(
    State(receiving): State<Receiving>,
    request: Request,
    next: Next,
) -> Response {
    let (body_read, mut response) = receive_then_run(receiving, request, next).await;
    if !body_read {
        // The rest of the body is not read: the connection cannot carry another request, and
        // the client must not put it back in its pool (its next request would find it closed).
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The answer, and whether the whole body was read before it.
async fn receive_then_run(receiving: Receiving, request: Request, next: Next) -> (bool, Response) {
    let limit = (receiving.limit_of)(request.uri().path());
    // Counted at the size the client declares, or the most the route takes if it declares
    // none; a body longer than it declared is cut off at that size by hyper.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        let too_large = problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload too large",
            format!("the body is larger than {limit} bytes"),
        );
        return (declared == Some(0), too_large);
    }
    let counted = declared.unwrap_or(limit).min(receiving.budget_bytes).max(1);
    let Ok(_bytes) = Arc::clone(&receiving.budget).try_acquire_many_owned(counted as u32) else {
        BODIES_REFUSED.inc();
        let busy = overloaded("the server is receiving as many request bodies as it takes");
        return (declared == Some(0), busy);
    };
    let (parts, body) = request.into_parts();
    let received = tokio::time::timeout(receiving.timeout, axum::body::to_bytes(body, limit)).await;
    let failed = match received {
        Ok(Ok(bytes)) => {
            let request = Request::from_parts(parts, axum::body::Body::from(bytes));
            return (true, next.run(request).await);
        }
        Ok(Err(err)) if is_too_large(&err) => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload too large",
            format!("the body is larger than {limit} bytes"),
        ),
        Ok(Err(err)) => problem(
            StatusCode::BAD_REQUEST,
            "unreadable body",
            format!("cannot read the request body: {err}"),
        ),
        Err(_) => problem(
            StatusCode::REQUEST_TIMEOUT,
            "request timeout",
            format!(
                "the request body did not arrive within {} s",
                receiving.timeout.as_secs_f64()
            ),
        ),
    };
    (false, failed)
}

fn is_too_large(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// An RFC 9457 problem answer.
fn problem(status: StatusCode, title: &str, detail: String) -> Response {
    // The API's own problem types: `urn:hookstream:problem:` and the title in kebab case.
    let kind = title.replace(' ', "-");
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        axum::Json(serde_json::json!({
            "type": format!("urn:hookstream:problem:{kind}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        })),
    )
        .into_response()
}

/// Answers `503` at once when the server is at its concurrency limit.
async fn shed_load(
    State(in_flight): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match in_flight.try_acquire_owned() {
        Ok(_permit) => {
            REQUESTS_IN_PROGRESS.inc();
            // Counted down however the request ends (a client gone drops this future).
            let _counted = InProgress;
            next.run(request).await
        }
        Err(_) => {
            REQUESTS_SHED.inc();
            overloaded("the server is handling as many requests as it takes")
        }
    }
}

/// `503` with `Retry-After: 1`.
fn overloaded(why: &str) -> Response {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        format!("{why}; try again shortly"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Counts a request out of [`REQUESTS_IN_PROGRESS`] when dropped.
struct InProgress;

impl Drop for InProgress {
    fn drop(&mut self) {
        REQUESTS_IN_PROGRESS.dec();
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown`, then lets requests in progress
/// finish (up to the request timeout, at most 20 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&connections).acquire_owned() => permit.map_err(std::io::Error::other)?,
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Within the chart's termination grace period (30 s, less the 5 s pre-stop wait).
    let patience = limits.request_timeout.min(Duration::from_secs(20));
    if tokio::time::timeout(patience, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in progress at shutdown were cut off");
    }
    Ok(())
}
