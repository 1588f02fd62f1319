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
//!
//! The filter can be changed while the service runs: `PUT /log-level` on its ops port (see
//! [`crate::ops`]) with a filter as `HOOKSTREAM_LOG` takes it, `GET /log-level` shows it.

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, Opts};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry, fmt, reload};

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
    let (filter, directives) = match EnvFilter::try_new(&filter) {
        Ok(parsed) => (parsed, filter),
        Err(err) => {
            eprintln!("{service}: invalid log filter `{filter}` ({err}); using `info`");
            (EnvFilter::new("info"), "info".to_owned())
        }
    };
    let (filter, handle) = reload::Layer::new(filter);
    // Only `init` sets it, once: a second call finds it set and keeps the first.
    let _ = LOG_FILTER.set(LogFilter {
        handle,
        directives: Mutex::new(directives),
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

/// The log filter in force, and the handle that changes it.
struct LogFilter {
    handle: reload::Handle<EnvFilter, Registry>,
    directives: Mutex<String>,
}

static LOG_FILTER: OnceLock<LogFilter> = OnceLock::new();

/// Why the filter was not changed.
#[derive(Debug, thiserror::Error)]
pub enum LogFilterError {
    #[error("`{directives}` is not a log filter: {reason}")]
    Invalid { directives: String, reason: String },
    #[error("logging is not set up in this process")]
    NotInstalled,
    #[error("the log filter could not be changed: {0}")]
    Reload(String),
}

/// The log filter in force, as it was given (`None` before [`init`]).
pub fn current_filter() -> Option<String> {
    LOG_FILTER.get().map(|filter| {
        filter
            .directives
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    })
}

/// Replaces the log filter (`debug`, `info,hookstream_dispatcher=debug`, ...) at once, for
/// every line logged from now on.
pub fn set_filter(directives: &str) -> Result<(), LogFilterError> {
    let directives = directives.trim();
    if directives.is_empty() {
        return Err(LogFilterError::Invalid {
            directives: String::new(),
            reason: "an empty filter; name a level (`info`) or directives".into(),
        });
    }
    let parsed = EnvFilter::try_new(directives).map_err(|err| LogFilterError::Invalid {
        directives: directives.to_owned(),
        reason: err.to_string(),
    })?;
    let filter = LOG_FILTER.get().ok_or(LogFilterError::NotInstalled)?;
    let mut current = filter
        .directives
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    filter
        .handle
        .reload(parsed)
        .map_err(|err| LogFilterError::Reload(err.to_string()))?;
    *current = directives.to_owned();
    Ok(())
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
