//! Each subcommand: one or two API calls, and the answer as text or as JSON.

use std::io::IsTerminal;

use serde_json::{Value, json};

use crate::args::{BatchCommand, Command, DeadLetterCommand, ReplayArgs};
use crate::client::{CliError, Client, with_query};
use crate::watch::watch;

/// What a command prints: the API's JSON, and the same for a person.
pub struct Output {
    pub json: Value,
    pub text: String,
}

impl Output {
    fn new(json: Value, text: String) -> Self {
        Self { json, text }
    }
}

pub async fn run(client: &Client, command: Command, json_output: bool) -> Result<Output, CliError> {
    match command {
        Command::DeadLetters(DeadLetterCommand::List { filter, limit }) => {
            let limit = limit.to_string();
            let mut query = filter.fields();
            query.push(("limit", &limit));
            let page = client.get(&with_query("/v1/dead-letters", &query)).await?;
            let text = lines(&page["data"], dead_letter_line, "no dead letters");
            Ok(Output::new(page, text))
        }
        Command::DeadLetters(DeadLetterCommand::Show { delivery_id }) => {
            let letter = client
                .get(&format!("/v1/dead-letters/{delivery_id}"))
                .await?;
            let text = pretty(&letter);
            Ok(Output::new(letter, text))
        }
        Command::Replay(args) => replay(client, args, json_output).await,
        Command::Batch(BatchCommand::List { limit }) => {
            let page = client
                .get(&with_query("/v1/batches", &[("limit", &limit.to_string())]))
                .await?;
            let text = lines(&page["data"], batch_line, "no batches");
            Ok(Output::new(page, text))
        }
        Command::Batch(BatchCommand::Show { batch_id, items }) => {
            let mut batch = client.get(&format!("/v1/batches/{batch_id}")).await?;
            let mut text = batch_line(&batch);
            if items {
                let page = client
                    .get(&format!("/v1/batches/{batch_id}/items?limit=500"))
                    .await?;
                text.push('\n');
                text.push_str(&lines(&page["data"], item_line, "no items"));
                batch["items"] = page["data"].clone();
            }
            Ok(Output::new(batch, text))
        }
        Command::Batch(BatchCommand::Watch { batch_id }) => {
            let batch = watch(client, &batch_id, show_progress(json_output)).await?;
            let text = batch_line(&batch);
            Ok(Output::new(batch, text))
        }
        Command::Batch(BatchCommand::Cancel { batch_id }) => {
            let batch = client
                .post(&format!("/v1/batches/{batch_id}/cancel"), None)
                .await?;
            let text = batch_line(&batch);
            Ok(Output::new(batch, text))
        }
        Command::Resend {
            delivery_id,
            allow_repeat,
        } => {
            let batch = client
                .post(
                    &format!("/v1/deliveries/{delivery_id}/resend"),
                    Some(json!({"allow_repeat": allow_repeat})),
                )
                .await?;
            let text = batch_line(&batch);
            Ok(Output::new(batch, text))
        }
        Command::Recover {
            endpoint_id,
            since,
            dry_run,
        } => {
            let batch = client
                .post(
                    &format!("/v1/endpoints/{endpoint_id}/recover"),
                    Some(json!({"since": since, "dry_run": dry_run})),
                )
                .await?;
            let text = batch_line(&batch);
            Ok(Output::new(batch, text))
        }
        Command::RateLimit {
            endpoint_id,
            per_second,
            burst,
            off: _,
        } => {
            // Without --per-second, clap has made sure of --off.
            let rate_limit = match per_second {
                Some(per_second) => json!({"per_second": per_second, "burst": burst}),
                None => Value::Null,
            };
            let endpoint = client
                .patch(
                    &format!("/v1/endpoints/{endpoint_id}"),
                    json!({"rate_limit": rate_limit}),
                )
                .await?;
            let limit = &endpoint["rate_limit"];
            let text = if limit.is_null() {
                format!("endpoint {endpoint_id}: no rate limit")
            } else {
                format!(
                    "endpoint {endpoint_id}: at most {} a second, bursts of {}",
                    limit["per_second"], limit["burst"]
                )
            };
            Ok(Output::new(endpoint, text))
        }
        Command::Ordering {
            endpoint_id,
            mode,
            max_in_flight,
            on_dead_letter,
        } => {
            let mut change = json!({"ordering": mode});
            if let Some(max_in_flight) = max_in_flight {
                change["max_in_flight"] = json!(max_in_flight);
            }
            if let Some(on_dead_letter) = on_dead_letter {
                change["on_dead_letter"] = json!(on_dead_letter);
            }
            let endpoint = client
                .patch(&format!("/v1/endpoints/{endpoint_id}"), change)
                .await?;
            let text = match endpoint["ordering"].as_str() {
                Some("none") => format!(
                    "endpoint {endpoint_id}: no ordering, up to {} requests at once",
                    endpoint["max_in_flight"]
                ),
                Some("strict") => format!(
                    "endpoint {endpoint_id}: strict ordering, each delivery after the one before it; at a dead letter: {}",
                    endpoint["on_dead_letter"].as_str().unwrap_or("hold")
                ),
                _ => format!("endpoint {endpoint_id}: partition ordering, one request at a time"),
            };
            Ok(Output::new(endpoint, text))
        }
        Command::Batching {
            endpoint_id,
            max_events,
            max_wait,
            off: _,
        } => {
            // Without both, clap has made sure of --off.
            let batch = match (max_events, max_wait) {
                (Some(max_events), Some(max_wait)) => {
                    json!({"max_events": max_events, "max_wait": max_wait})
                }
                _ => Value::Null,
            };
            let endpoint = client
                .patch(
                    &format!("/v1/endpoints/{endpoint_id}"),
                    json!({"batch": batch}),
                )
                .await?;
            let batch = &endpoint["batch"];
            let text = if batch.is_null() {
                format!("endpoint {endpoint_id}: one delivery per request")
            } else {
                format!(
                    "endpoint {endpoint_id}: batches of up to {} deliveries, each waiting at most {}",
                    batch["max_events"],
                    batch["max_wait"].as_str().unwrap_or("?")
                )
            };
            Ok(Output::new(endpoint, text))
        }
        Command::Pause { endpoint } => pause(client, endpoint, true).await,
        Command::Resume { endpoint } => pause(client, endpoint, false).await,
        Command::Delivery { delivery_id } => {
            let mut delivery = client.get(&format!("/v1/deliveries/{delivery_id}")).await?;
            let attempts = client
                .get(&format!("/v1/deliveries/{delivery_id}/attempts"))
                .await?;
            delivery["attempt_log"] = attempts["data"].clone();
            let text = format!(
                "{} {} attempts={}\n{}",
                delivery["id"].as_str().unwrap_or("?"),
                delivery["status"].as_str().unwrap_or("?"),
                delivery["attempts"],
                lines(&attempts["data"], attempt_line, "no attempts yet")
            );
            Ok(Output::new(delivery, text))
        }
        Command::Health { endpoint_id } => {
            let health = client
                .get(&format!("/v1/endpoints/{endpoint_id}/health"))
                .await?;
            let text = health_text(&endpoint_id, &health);
            Ok(Output::new(health, text))
        }
    }
}

/// An endpoint's health as lines: one per window, then its run of failures and last outcomes.
fn health_text(endpoint_id: &str, health: &Value) -> String {
    let mut text = format!(
        "endpoint {endpoint_id}: {}",
        health["status"].as_str().unwrap_or("?")
    );
    for (label, key) in [("warning", "warning"), ("disabled", "disabled_by_rules")] {
        if let Some(notice) = health[key].as_object() {
            text.push_str(&format!(
                "\n  {label} since {}: {}",
                notice.get("at").and_then(Value::as_str).unwrap_or("?"),
                notice.get("reason").and_then(Value::as_str).unwrap_or("?"),
            ));
        }
    }
    for window in health["windows"].as_array().into_iter().flatten() {
        let rate = window["success_rate"]
            .as_f64()
            .map_or("-".to_owned(), |rate| format!("{:.1}%", rate * 100.0));
        let latency = &window["latency_ms"];
        let ms = |p: &str| {
            latency[p]
                .as_u64()
                .map_or("-".to_owned(), |ms| format!("≤{ms}ms"))
        };
        text.push_str(&format!(
            "\n  last {:<3} {} of {} succeeded ({rate}), latency p50 {} p90 {} p99 {}",
            window["window"].as_str().unwrap_or("?"),
            window["succeeded"],
            window["attempts"],
            ms("p50"),
            ms("p90"),
            ms("p99"),
        ));
    }
    text.push_str(&format!(
        "\n  failures in a row: {}",
        health["failure_streak"]
    ));
    if let Some(since) = health["failing_since"].as_str() {
        text.push_str(&format!(" (since {since})"));
    }
    text.push_str(&format!(
        "\n  last success: {}",
        health["last_success_at"].as_str().unwrap_or("never")
    ));
    if let Some(failure) = health["last_failure"].as_object() {
        text.push_str(&format!(
            "\n  last failure: {} {}",
            failure.get("at").and_then(Value::as_str).unwrap_or("?"),
            failure.get("class").and_then(Value::as_str).unwrap_or("?"),
        ));
    }
    text
}

/// A progress bar only for a person at a terminal.
fn show_progress(json_output: bool) -> bool {
    !json_output && std::io::stderr().is_terminal()
}

async fn replay(client: &Client, args: ReplayArgs, json_output: bool) -> Result<Output, CliError> {
    let mut body = if args.delivery_ids.is_empty() {
        let filter: serde_json::Map<String, Value> = args
            .filter
            .fields()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), json!(value)))
            .collect();
        json!({"filter": filter})
    } else {
        json!({"delivery_ids": args.delivery_ids})
    };
    body["dry_run"] = json!(args.dry_run);
    body["allow_repeat"] = json!(args.allow_repeat);
    let batch = client.post("/v1/batches", Some(body)).await?;
    if args.dry_run {
        let text = format!(
            "{}\nwould replay {}:\n{}",
            batch_line(&batch),
            batch["count"],
            lines(&batch["items"], item_line, "nothing")
        );
        return Ok(Output::new(batch, text));
    }
    if args.no_watch {
        let text = batch_line(&batch);
        return Ok(Output::new(batch, text));
    }
    let id = batch["id"].as_str().unwrap_or_default().to_owned();
    let batch = watch(client, &id, show_progress(json_output)).await?;
    let text = batch_line(&batch);
    Ok(Output::new(batch, text))
}

async fn pause(
    client: &Client,
    endpoint: Option<String>,
    paused: bool,
) -> Result<Output, CliError> {
    let verb = if paused { "pause" } else { "resume" };
    let answer = match &endpoint {
        Some(id) => {
            client
                .post(&format!("/v1/endpoints/{id}/{verb}"), None)
                .await?
        }
        None => client.post(&format!("/v1/control/{verb}"), None).await?,
    };
    let text = match endpoint {
        Some(id) => format!("endpoint {id}: paused={}", answer["paused"]),
        None => format!("all sending: paused={}", answer["sending_paused"]),
    };
    Ok(Output::new(answer, text))
}

fn lines(items: &Value, line: fn(&Value) -> String, empty: &str) -> String {
    match items.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(line).collect::<Vec<_>>().join("\n"),
        _ => empty.to_owned(),
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

fn dead_letter_line(d: &Value) -> String {
    format!(
        "{}  {}  {}  {}  {}  {}",
        text(&d["delivery_id"]),
        text(&d["dead_lettered_at"]),
        text(&d["endpoint"]["id"]),
        text(&d["event"]["type"]),
        text(&d["class"]),
        text(&d["reason"]),
    )
}

fn batch_line(b: &Value) -> String {
    format!(
        "{}  {}{}  matched={} created={} skipped={}  by {}  {}",
        text(&b["id"]),
        text(&b["status"]),
        if b["dry_run"] == true {
            " (dry run)"
        } else {
            ""
        },
        b["counts"]["matched"],
        b["counts"]["created"],
        b["counts"]["skipped"],
        text(&b["created_by"]),
        text(&b["created_at"]),
    )
}

fn item_line(i: &Value) -> String {
    let detail = match i["outcome"].as_str() {
        Some("created") => format!("-> {}", text(&i["delivery_id"])),
        Some("skipped") => format!("({})", text(&i["reason"])),
        _ => String::new(),
    };
    format!(
        "{:>5}  {}  {}  {} {}",
        i["position"],
        text(&i["dead_delivery_id"]),
        text(&i["endpoint_id"]),
        text(&i["outcome"]),
        detail
    )
}

fn attempt_line(a: &Value) -> String {
    format!(
        "  #{}  {}  {}  {}  {}ms  {}",
        a["number"],
        text(&a["started_at"]),
        text(&a["class"]),
        a["status_code"],
        a["latency_ms"],
        a["error"].as_str().unwrap_or(""),
    )
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
