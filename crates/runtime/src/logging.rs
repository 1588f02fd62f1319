//! Structured logs through `tracing`, and the trace export beside them.
//!
//! `HOOKSTREAM_LOG` (or `RUST_LOG`) sets the filter, default `info`; `HOOKSTREAM_LOG_FORMAT=json`
//! switches to one JSON object per line for log shippers. Logs carry ids, never payloads or secrets.
//! Spans go to OpenTelemetry when [`crate::telemetry`] says export is on, whatever the log filter.

use std::io::IsTerminal;

use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::telemetry::{self, Telemetry};

/// Installs the global subscriber. Call once, first thing in `main`, and call
/// [`Telemetry::shutdown`] before the process exits.
pub fn init(service: &'static str) -> Telemetry {
    let filter = std::env::var("HOOKSTREAM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|err| {
        eprintln!("{service}: invalid log filter `{filter}` ({err}); using `info`");
        EnvFilter::new("info")
    });
    let json = std::env::var("HOOKSTREAM_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let logs = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_filter(filter)
            .boxed()
    } else {
        fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(filter)
            .boxed()
    };
    let (provider, problem) = match telemetry::provider(service) {
        Ok(provider) => (provider, None),
        Err(err) => (None, Some(err)),
    };
    let traces = provider.as_ref().map(|provider| {
        telemetry::layer(provider, service)
            .with_filter(Targets::new().with_target(telemetry::TARGET, tracing::Level::TRACE))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    if let Some(err) = problem {
        tracing::error!(error = %err, "traces are not exported");
    } else if provider.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    telemetry::telemetry(provider)
}
