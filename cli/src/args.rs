//! The command line: what each subcommand takes.

use clap::{Args, Parser, Subcommand};

/// Operate Hookstream: find and inspect dead letters, replay them in audited batches, pause and
/// resume sending, and look up deliveries.
///
/// Exit codes: 0 done; 1 Hookstream refused the request (the problem is printed); 2 wrong
/// usage; 3 Hookstream could not be reached; 4 a watched batch ended cancelled or failed.
#[derive(Debug, Parser)]
#[command(name = "hookstream", version)]
pub struct Cli {
    /// The Hookstream management API (ingest's API address, or its `HOOKSTREAM_MANAGEMENT_ADDR`
    /// where the two listen apart).
    #[arg(
        long,
        env = "HOOKSTREAM_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,

    /// The API token. Without it, the token `make run` keeps in `.hookstream/api-token` is used.
    #[arg(
        long,
        env = "HOOKSTREAM_API_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,

    /// Print the API's JSON answers instead of text (one JSON document per command).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dead letters: deliveries that will not be tried again.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLetterCommand),
    /// Re-deliver dead letters as one audited batch: those a filter matches, or the ones named.
    /// Watches the batch with a progress bar until it ends, unless --no-watch.
    Replay(ReplayArgs),
    /// Replay batches.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Replay one dead-lettered delivery (a batch of one).
    Resend {
        delivery_id: String,
        /// Replay it even if it was replayed before.
        #[arg(long)]
        allow_repeat: bool,
    },
    /// Replay everything that died for an endpoint since a time (a batch).
    Recover {
        endpoint_id: String,
        /// RFC 3339 time, e.g. 2026-11-23T10:00:00Z.
        #[arg(long)]
        since: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop sending: all sending (the kill switch), or one endpoint's with --endpoint.
    Pause {
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Start sending again: all, or one endpoint's with --endpoint.
    Resume {
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Set or lift an endpoint's rate limit: at most --per-second deliveries a second, up to
    /// --burst at once after a quiet spell; --off lifts it. Waiting for it spends no attempt.
    #[command(name = "rate-limit")]
    RateLimit {
        endpoint_id: String,
        /// 0.01 to 10000; fractions allowed (0.5: one every 2 s).
        #[arg(long, required_unless_present = "off", conflicts_with = "off")]
        per_second: Option<f64>,
        /// 1 to 10000; one second's worth when left out.
        #[arg(long, requires = "per_second")]
        burst: Option<u32>,
        /// Lift the limit.
        #[arg(long)]
        off: bool,
    },
    /// Set how an endpoint's deliveries are ordered: `partition` (one at a time, first attempts
    /// in the order the events were sent), `none` (no order, up to --max-in-flight at once) or
    /// `strict` (each waits until the one before it is delivered or dead-lettered).
    Ordering {
        endpoint_id: String,
        #[arg(value_parser = ["none", "partition", "strict"])]
        mode: String,
        /// Requests at once under `none`: 1 to 500 (10 when never set).
        #[arg(long)]
        max_in_flight: Option<u32>,
        /// Under `strict`, at a dead letter: `hold` (wait for its replay) or `continue`.
        #[arg(long, value_parser = ["hold", "continue"])]
        on_dead_letter: Option<String>,
    },
    /// Send an endpoint its deliveries in batches: one request per up to --max-events, each
    /// waiting at most --max-wait (`500ms`, `30s`, `2m`) for its batch to fill; --off sends
    /// one delivery per request again. Not with strict ordering.
    Batching {
        endpoint_id: String,
        /// 1 to 1000.
        #[arg(long, required_unless_present = "off", conflicts_with = "off")]
        max_events: Option<u32>,
        /// At least 10ms, at most the longest retry delay.
        #[arg(long, required_unless_present = "off", conflicts_with = "off")]
        max_wait: Option<String>,
        /// One delivery per request again.
        #[arg(long)]
        off: bool,
    },
    /// A delivery and every attempt made to send it.
    Delivery { delivery_id: String },
    /// How an endpoint's deliveries have been going: success rate and latency over the last
    /// 5 minutes and hour, its run of failures, its last success and failure.
    Health { endpoint_id: String },
}

#[derive(Debug, Args, Default)]
pub struct Filter {
    /// Only this endpoint's (ep_…).
    #[arg(long = "endpoint")]
    pub endpoint_id: Option<String>,
    /// Only this event type.
    #[arg(long)]
    pub event_type: Option<String>,
    /// Only this failure class (HTTP_4XX_PERMANENT, NETWORK_ERROR, ...).
    #[arg(long)]
    pub class: Option<String>,
    /// Died at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Died before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this tenant's.
    #[arg(long)]
    pub tenant: Option<String>,
}

impl Filter {
    /// The set fields, as `(name, value)` pairs named as the API names them.
    pub fn fields(&self) -> Vec<(&'static str, &str)> {
        [
            ("endpoint_id", &self.endpoint_id),
            ("event_type", &self.event_type),
            ("class", &self.class),
            ("since", &self.since),
            ("until", &self.until),
            ("tenant", &self.tenant),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
    }
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List dead letters, oldest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One dead letter with its event, endpoint and attempts.
    Show { delivery_id: String },
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Replay these deliveries (repeat the flag) instead of a filter.
    #[arg(long = "delivery", conflicts_with_all = ["endpoint_id", "event_type", "class", "since", "until", "tenant"])]
    pub delivery_ids: Vec<String>,
    /// List exactly what would be replayed, and create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replay dead letters that were replayed before, too.
    #[arg(long)]
    pub allow_repeat: bool,
    /// Return once the batch is created instead of watching it.
    #[arg(long)]
    pub no_watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Batches, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A batch, its counts, and with --items what became of each dead letter.
    Show {
        batch_id: String,
        #[arg(long)]
        items: bool,
    },
    /// Follow a batch with a progress bar until it ends.
    Watch { batch_id: String },
    /// Stop a running batch; what it created stays.
    Cancel { batch_id: String },
}
