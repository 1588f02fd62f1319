//! `hookstream-bench`: benchmarks that start the real services on this machine, drive them and
//! print figures (a table on stdout, JSON under `target/bench/`). Figures, not pass/fail.

mod retry_timing;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hookstream-bench", version, about = "Hookstream benchmarks")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// How late retry tasks come due: writes N tasks to one retry tier (all waiting at once)
    /// and measures, for each, the time from its due time to its arrival on the deliveries topic.
    RetryTiming(retry_timing::Options),
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::RetryTiming(options) => retry_timing::run(options).await,
    }
}
