//! Following a batch until it ends, with a progress bar on a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::client::{CliError, Client};

/// How often the batch is read while it runs.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Dead letters of the batch that are decided (created or skipped).
fn done(batch: &Value) -> u64 {
    let count = |name: &str| batch["counts"][name].as_u64().unwrap_or(0);
    count("created") + count("skipped")
}

/// Polls the batch until it is no longer running and returns it. A batch that ended cancelled
/// or failed is an error (exit code 4).
pub async fn watch(client: &Client, id: &str, show_progress: bool) -> Result<Value, CliError> {
    let path = format!("/v1/batches/{id}");
    let mut batch = client.get(&path).await?;
    let bar = if show_progress {
        let bar = ProgressBar::new(batch["counts"]["matched"].as_u64().unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut poll = tokio::time::interval(POLL_EVERY);
    loop {
        bar.set_position(done(&batch));
        bar.set_message(format!(
            "{id} {} created {} skipped {}",
            batch["status"].as_str().unwrap_or("?"),
            batch["counts"]["created"],
            batch["counts"]["skipped"],
        ));
        if batch["status"] != "running" {
            break;
        }
        poll.tick().await;
        batch = client.get(&path).await?;
    }
    bar.finish();
    match batch["status"].as_str() {
        Some("completed") => Ok(batch),
        other => Err(CliError::BatchStopped {
            id: id.to_owned(),
            status: other.unwrap_or("unknown").to_owned(),
        }),
    }
}
