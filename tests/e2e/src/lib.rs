//! The end-to-end test harness: starts real Apache Kafka brokers, the real service binaries, and
//! webhook receivers on 127.0.0.1, and talks to them only through their public interfaces.
//!
//! The service binaries must be built first (`make test` does: `cargo build --bins`), and Kafka's
//! jars fetched (`make test` does: `deploy/kafka/kafka.sh fetch`, needing Java 17 and Maven).
//! Without either, the tests fail saying so.

mod api;
mod broker;
mod dns;
mod held;
mod otlp;
mod process;
mod receiver;
pub mod seed;
mod services;

pub use api::{Answer, Api};
pub use broker::{Broker, KafkaCluster};
pub use dns::DnsServer;
pub use held::HeldRequest;
pub use otlp::{ExportedSpan, OtlpReceiver};
pub use receiver::{Chaos, Receiver, Scripted, Webhook, verify_with_reference_library};
pub use services::{Pipeline, Service, TOKEN, binary};

use std::time::Duration;

/// Waits for `condition` to hold, checking every 50 ms, failing the test after `timeout`.
/// For state that can only be observed by asking (HTTP APIs, ports).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the child process to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The value of one sample in Prometheus text, by its exact series (`name` or
/// `name{label="v"}`); comment lines and other series never match.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// The sum of every series of `family` whose labels contain `labels` (for example
/// `topic="hookstream.deliveries"`; empty for all of them); `None` when there is no such series
/// (yet: a gauge a service sets only once it has read something).
pub fn sum(metrics: &str, family: &str, labels: &str) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(family)?;
            let (series, value) = rest.rsplit_once(' ')?;
            (series.is_empty() || series.starts_with('{'))
                .then_some(())
                .filter(|()| series.contains(labels))?;
            value.trim().parse::<f64>().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
