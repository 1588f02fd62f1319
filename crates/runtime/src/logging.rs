//! Structured logs through `tracing`.
//!
//! `HOOKSTREAM_LOG` (or `RUST_LOG`) sets the filter, default `info`; `HOOKSTREAM_LOG_FORMAT=json`
//! switches to one JSON object per line for log shippers. Logs carry ids, never payloads or secrets.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(service: &'static str) {
    let filter = std::env::var("HOOKSTREAM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|err| {
        eprintln!("{service}: invalid log filter `{filter}` ({err}); using `info`");
        EnvFilter::new("info")
    });
    let json = std::env::var("HOOKSTREAM_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
