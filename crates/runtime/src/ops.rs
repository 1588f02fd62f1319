//! Operational endpoints every service serves: liveness, readiness, Prometheus metrics and the
//! log filter (`GET`/`PUT /log-level`, see [`crate::logging`]). They are for the cluster, not
//! the public: keep the ops port off any public network.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::producer::FutureProducer;

use hookstream_store::Store;

use crate::logging;
use prometheus::{Encoder, TextEncoder};
use serde_json::json;

/// One dependency a service needs to do its work (broker, store), checked by `/readyz`.
pub struct ReadinessCheck {
    pub name: &'static str,
    pub check: Box<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
}

impl ReadinessCheck {
    /// The Kafka brokers answer a metadata request within 2 s.
    pub fn broker(producer: FutureProducer) -> Self {
        Self {
            name: "broker",
            check: Box::new(move || {
                let producer = producer.clone();
                async move {
                    hookstream_kafka::broker_reachable(&producer, Duration::from_secs(2))
                        .await
                        .map_err(|e| e.to_string())
                }
                .boxed()
            }),
        }
    }

    /// The store answers.
    pub fn store(store: Arc<dyn Store>) -> Self {
        Self {
            name: "store",
            check: Box::new(move || {
                let store = Arc::clone(&store);
                async move { store.ping().await.map_err(|e| e.to_string()) }.boxed()
            }),
        }
    }
}

/// Something inside the process that must keep moving (a consume loop, the sends), checked by
/// `/healthz`: an error says what is wedged, and the orchestrator restarts the process.
pub struct LivenessCheck {
    pub name: &'static str,
    pub check: Box<dyn Fn() -> Result<(), String> + Send + Sync>,
}

struct Checks {
    readiness: Vec<ReadinessCheck>,
    liveness: Vec<LivenessCheck>,
}

/// `/healthz` (the process answers), `/readyz` (every dependency answers) and `/metrics`.
pub fn router(checks: Vec<ReadinessCheck>) -> Router {
    router_with_liveness(checks, Vec::new())
}

/// [`router`], with `/healthz` failing while any of `liveness` does.
pub fn router_with_liveness(
    readiness: Vec<ReadinessCheck>,
    liveness: Vec<LivenessCheck>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/log-level", get(log_level).put(set_log_level))
        .with_state(Arc::new(Checks {
            readiness,
            liveness,
        }))
}

async fn healthz(State(checks): State<Arc<Checks>>) -> Response {
    let failing: serde_json::Map<String, serde_json::Value> = checks
        .liveness
        .iter()
        .filter_map(|c| {
            (c.check)()
                .err()
                .map(|reason| (c.name.to_owned(), json!(reason)))
        })
        .collect();
    if failing.is_empty() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        let body = json!({"status": "wedged", "checks": failing});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn readyz(State(checks): State<Arc<Checks>>) -> Response {
    let checks = &checks.readiness;
    let results = futures::future::join_all(checks.iter().map(|c| (c.check)())).await;
    let mut ready = true;
    let mut report = serde_json::Map::new();
    for (check, result) in checks.iter().zip(results) {
        // What is down, not why: the reason (a broker's address, a store's error text) goes
        // to the log, not to whoever can reach the port.
        let value = match result {
            Ok(()) => json!("ok"),
            Err(reason) => {
                ready = false;
                tracing::warn!(check = check.name, %reason, "not ready");
                json!("failing")
            }
        };
        report.insert(check.name.to_owned(), value);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if ready { "ready" } else { "not ready" }, "checks": report});
    (status, Json(body)).into_response()
}

/// The log filter in force.
async fn log_level() -> Response {
    match logging::current_filter() {
        Some(filter) => Json(json!({"filter": filter})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "logging is not set up"})),
        )
            .into_response(),
    }
}

/// Replaces the log filter with the body's text (`debug`, `info,hookstream_dispatcher=debug`).
async fn set_log_level(body: String) -> Response {
    match logging::set_filter(&body) {
        Ok(()) => {
            tracing::info!(filter = %body.trim(), "log filter changed");
            Json(json!({"filter": body.trim()})).into_response()
        }
        Err(err @ logging::LogFilterError::Invalid { .. }) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": err.to_string()})),
        )
            .into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": err.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics() -> Response {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&prometheus::gather(), &mut buffer) {
        Ok(()) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            buffer,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// The ops endpoints served on their own address (services without an API of their own).
pub struct OpsServer {
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    /// Binds `addr` and serves [`router`] until `shutdown` is cancelled.
    pub async fn spawn(
        addr: std::net::SocketAddr,
        checks: Vec<ReadinessCheck>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<Self> {
        Self::spawn_with_liveness(addr, checks, Vec::new(), shutdown).await
    }

    /// [`OpsServer::spawn`], with `/healthz` failing while any of `liveness` does.
    pub async fn spawn_with_liveness(
        addr: std::net::SocketAddr,
        checks: Vec<ReadinessCheck>,
        liveness: Vec<LivenessCheck>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let task = tokio::spawn(
            axum::serve(listener, router_with_liveness(checks, liveness))
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .into_future(),
        );
        Ok(Self { task })
    }

    /// Waits for the server to finish after shutdown.
    pub async fn stopped(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}
