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
pub use receiver::{
    Chaos, Receiver, Scripted, Webhook, verify_v1a_with_cryptography, verify_with_reference_library,
};
pub use services::{Pipeline, Service, TOKEN, binary, previous_release};

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

/// Where [`free_port`] looks: below Linux's ephemeral range (32768 and up by default), which the
/// kernel hands to outgoing connections. A port taken from that range (`bind(0)`) can be given
/// to some client's connection (a broker's, a service's) between being released here and being
/// bound by the child process that was told to listen on it: "Address already in use".
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free TCP port on 127.0.0.1 (bound, then released for the child process to take). Each
/// call in a process gets a different port; processes start at different places in the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(PORTS.end - PORTS.start);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = PORTS.start + u16::try_from(offset).expect("within the range");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in {PORTS:?}")
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
