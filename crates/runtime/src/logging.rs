//! Structured logs through `tracing`, and the trace export beside them.
//!
//! `HOOKSTREAM_LOG` (or `RUST_LOG`) sets the filter, default `info`; `HOOKSTREAM_LOG_FORMAT=json`
//! switches to one JSON object per line for log shippers. Logs carry ids, never payloads or secrets.
//! Spans go to OpenTelemetry when [`crate::telemetry`] says export is on, whatever the log filter.
//!
//! Lines are written by a thread of their own, never on the runtime's threads: a slow or blocked
//! log pipe must not stall delivery. Should that thread fall behind by [`BUFFERED_LINES`], further
//! lines are dropped, not waited for, and counted in `hookstream_log_lines_dropped_total`.
//! Per-event lines are at DEBUG; INFO carries state changes and summaries.

use std::io::IsTerminal;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, Opts};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::telemetry::{self, Telemetry};

/// Lines waiting for the writer thread before new ones are dropped: a few seconds of the
/// busiest service's output at DEBUG, about 30 MB at most.
const BUFFERED_LINES: usize = 100_000;

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
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        .finish(std::io::stdout());
    register_dropped_lines(writer.error_counter());
    let json = std::env::var("HOOKSTREAM_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let logs = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_writer(writer)
            .with_filter(filter)
            .boxed()
    } else {
        fmt::layer()
            .with_target(false)
            .with_writer(writer)
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
    telemetry::telemetry(provider, guard)
}

/// Shows the writer thread's count of dropped lines as `hookstream_log_lines_dropped_total`.
fn register_dropped_lines(dropped: ErrorCounter) {
    let collector = DroppedLines::new(dropped);
    if let Err(err) = prometheus::register(Box::new(collector)) {
        // Only a second `init` in one process gets here; its lines are still written.
        eprintln!("hookstream_log_lines_dropped_total not registered: {err}");
    }
}

/// Reads the count at each scrape, so nothing has to copy it into a counter as it changes.
struct DroppedLines {
    dropped: ErrorCounter,
    counter: IntCounter,
}

impl DroppedLines {
    fn new(dropped: ErrorCounter) -> Self {
        let counter = IntCounter::with_opts(Opts::new(
            "hookstream_log_lines_dropped_total",
            "Log lines dropped because the log writer fell behind (a slow log pipe).",
        ))
        .expect("a valid metric name");
        Self { dropped, counter }
    }
}

impl Collector for DroppedLines {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let total = self.dropped.dropped_lines() as u64;
        let seen = self.counter.get();
        if total > seen {
            self.counter.inc_by(total - seen);
        }
        self.counter.collect()
    }
}
