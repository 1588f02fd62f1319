//! `hookstream-bench`: benchmarks that start the real services on this machine, drive them and
//! print figures (a table on stdout, JSON under `target/bench/`). Figures, not pass/fail.

mod claims;
mod cost;
mod load;
mod pipeline;
mod receiver;
mod report;
mod retry_timing;
mod scheduling;
mod stats;
mod store_lock;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hookstream-bench", version, about = "Hookstream benchmarks")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// How late retry tasks come due: writes N tasks to one retry tier (all waiting at once,
    /// due at a steady rate) and measures, for each, how late it was put back on the deliveries
    /// topic and read there.
    RetryTiming(retry_timing::Options),
    /// The whole pipeline: the ceiling, throughput, latency, isolation, retry timing and memory,
    /// printed as a table and written to `target/bench/latest.json`.
    Pipeline(pipeline::Options),
    /// What claiming an attempt costs in a store (ScyllaDB: a Paxos round): the read the old
    /// path made, the claim and the record, per delivery.
    Claims(claims::Options),
}

/// `HOOKSTREAM_*` and `RUST_LOG` from the bench's environment, passed on to the services it
/// starts (which otherwise get a clean environment), so settings can be tried out.
pub fn passed_on_settings() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(key, _)| key.starts_with("HOOKSTREAM_") || key == "RUST_LOG")
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::RetryTiming(options) => retry_timing::run(options).await,
        Bench::Pipeline(options) => pipeline::run(options).await,
        Bench::Claims(options) => claims::run(options).await,
    }
}
