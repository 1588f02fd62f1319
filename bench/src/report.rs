//! The pipeline bench's figures: the ceiling's median and spread, the `summary` object runs are
//! compared by over time, and the printed table.

use serde_json::{Value, json};

use crate::stats::read_figure;

/// The ceiling measurements as a median with their spread.
pub fn ceiling_figures(samples: &[f64]) -> Value {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    json!({
        "requests_per_second_median": median,
        "min": sorted.first().copied().unwrap_or(f64::NAN),
        "max": sorted.last().copied().unwrap_or(f64::NAN),
        "samples": samples,
    })
}

/// Adds the `summary` object: the figures the targets are judged by, under fixed keys (null:
/// not measured in this run; "inf": some events were never delivered).
pub fn with_summary(mut figures: Value) -> Value {
    let num = |v: &Value| v.as_f64();
    let ceiling = num(&figures["ceiling"]["requests_per_second_median"]);
    let batched = figures["throughput"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|run| run["endpoints"] == 100 && run["batch_size"].is_u64())
        .and_then(|run| num(&run["delivered_per_second"]));
    let p99_at = |wanted: f64| {
        figures["latency"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|run| num(&run["rate_asked"]) == Some(wanted))
            .map_or(Value::Null, |run| {
                run["latency_from_intended_send_ms"]["p99"].clone()
            })
    };
    let retry = &figures["retry_timing"];
    let retry_waiting = retry["all_waiting_at_first_due"]
        .as_bool()
        .filter(|&all| all)
        .and_then(|_| retry["tasks"].as_u64());
    // The isolation run is compared with the all-fast run at its own rate.
    let isolation = &figures["isolation"];
    let isolation_p99 = isolation["latency_from_intended_send_ms"]["p99"].clone();
    let isolation_all_fast = num(&isolation["rate_asked"]).map_or(Value::Null, p99_at);
    let rss_max = figures["peak_rss_mib"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| !matches!(name.as_str(), "broker" | "bench"))
        .filter_map(|(_, mib)| mib.as_f64())
        .map(|mib| mib * 1024.0 * 1024.0 / 1e6)
        .reduce(f64::max);
    let summary = json!({
        "delivered_per_s_100ep_batched": batched,
        "ceiling_per_s_median": ceiling,
        "ratio_to_ceiling": batched.zip(ceiling).map(|(b, c)| b / c),
        "p99_ms_at_1000": p99_at(1000.0),
        "p99_ms_at_500": p99_at(500.0),
        "isolation_fast_p99_ms": isolation_p99,
        "isolation_all_fast_p99_ms": isolation_all_fast,
        "retry_p99_ms": retry["released_lateness_ms"]["p99"].clone(),
        "retry_tasks_waiting": retry_waiting,
        "rss_mb_max": rss_max,
    });
    figures["summary"] = summary;
    figures
}

pub fn print_table(f: &Value) {
    let num = read_figure;
    let ceiling = &f["ceiling"];
    let median = num(&ceiling["requests_per_second_median"]);
    println!(
        "\n== Hookstream benchmark: commit {}, {} cores ==",
        f["commit"].as_str().unwrap_or("?"),
        f["cores"]
    );
    println!(
        "ceiling (signed 1 KiB POSTs straight to the receiver): median {median:.0} req/s, {:.0} to {:.0} over {} measurements",
        num(&ceiling["min"]),
        num(&ceiling["max"]),
        ceiling["samples"].as_array().map_or(0, Vec::len)
    );
    if let Some(runs) = f["throughput"].as_array().filter(|r| !r.is_empty()) {
        println!(
            "\nthroughput, closed loop ({} s measured per run)",
            runs[0]["seconds"]
        );
        println!(
            "  {:<30} {:>10} {:>11} {:>9} {:>7} {:>5}  CPU s per 1,000 delivered",
            "run", "accepted/s", "delivered/s", "of median", "failed", "dup"
        );
        for run in runs {
            let delivered = num(&run["delivered_per_second"]);
            println!(
                "  {:<30} {:>10.0} {:>11.0} {:>8.1}% {:>7} {:>5}  {}",
                run["label"].as_str().unwrap_or("?"),
                num(&run["accepted_per_second"]),
                delivered,
                100.0 * delivered / median,
                run["failed_requests"],
                run["duplicates"],
                cpu_row(&run["cpu_seconds_per_1000_deliveries"]),
            );
        }
        let per_run = |title: &str, row: fn(&Value) -> String, key: &str| {
            println!("  {title}:");
            for run in runs {
                let label = run["label"].as_str().unwrap_or("?");
                println!("  {label:<30} {}", row(&run[key]));
            }
        };
        per_run(
            "store write lock held (the one every process shares)",
            crate::store_lock::row,
            "store_write_lock",
        );
        per_run(
            "CPU (a lock held while its thread waits for a CPU says the machine is the limit)",
            crate::scheduling::row,
            "scheduling",
        );
    }
    let mut open_runs: Vec<(&str, &Value)> = f["latency"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|run| ("latency, all endpoints fast", run))
        .collect();
    if !f["isolation"].is_null() {
        open_runs.push(("isolation, endpoint 0 answers after 5 s", &f["isolation"]));
    }
    for (title, run) in open_runs {
        println!(
            "\n{title}: open loop, {:.0}/s asked, {:.0}/s sent over {:.0} s (send lag at most {:.1} ms), {} endpoints",
            num(&run["rate_asked"]),
            num(&run["rate_sent"]),
            num(&run["sending_seconds"]),
            num(&run["max_send_lag_ms"]),
            run["endpoints"]
        );
        for (from, figures) in [
            ("intended send", &run["latency_from_intended_send_ms"]),
            ("ingest answer", &run["latency_from_answer_ms"]),
        ] {
            println!(
                "  from {from:<14} p50 {:>8.1} ms  p99 {:>8.1} ms  p99.9 {:>8.1} ms  max {:>8.1} ms",
                num(&figures["p50"]),
                num(&figures["p99"]),
                num(&figures["p99.9"]),
                num(&figures["max"]),
            );
        }
        let hop = &run["kafka_hop_at_most_ms"];
        println!(
            "  of which in Kafka (task written to dispatcher read): p50 <= {} ms, p99 <= {} ms",
            num(&hop["p50"]),
            num(&hop["p99"])
        );
        println!(
            "  {} of {} fast events delivered ({:.0}/s), {} failed requests {}, {} duplicates, {} consumer revocations",
            run["fast_delivered"],
            run["fast_events"],
            num(&run["fast_delivered_per_second"]),
            run["failed_requests"],
            run["failures"],
            run["duplicates"],
            run["consumer_revocations"],
        );
        println!(
            "  CPU s per 1,000 delivered: {}",
            cpu_row(&run["cpu_seconds_per_1000_deliveries"])
        );
    }
    let retry = &f["retry_timing"];
    if !retry.is_null() {
        println!(
            "\nretry timing ({} tasks waiting, {} due/s): put back p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            retry["tasks"],
            retry["due_rate"],
            num(&retry["released_lateness_ms"]["p50"]),
            num(&retry["released_lateness_ms"]["p99"]),
            num(&retry["released_lateness_ms"]["max"])
        );
    }
    let rss = &f["peak_rss_mib"];
    println!(
        "\npeak RSS (MiB): {}",
        rss.as_object()
            .into_iter()
            .flatten()
            .map(|(name, mib)| format!("{name} {:.0}", num(mib)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("webhooks failing signature checks: {}", f["bad_signatures"]);
    println!(
        "\nsummary: {}",
        serde_json::to_string_pretty(&f["summary"]).unwrap_or_default()
    );
}

fn cpu_row(per: &Value) -> String {
    per.as_object()
        .into_iter()
        .flatten()
        .map(|(name, seconds)| format!("{name} {:.2}", seconds.as_f64().unwrap_or(f64::NAN)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_a_median_with_its_spread() {
        let figures = ceiling_figures(&[30.0, 10.0, 20.0, 50.0]);
        assert_eq!(figures["requests_per_second_median"], 25.0);
        assert_eq!(figures["min"], 10.0);
        assert_eq!(figures["max"], 50.0);
    }

    #[test]
    fn the_summary_has_exactly_the_compared_keys() {
        let figures = json!({
            "ceiling": ceiling_figures(&[40_000.0]),
            "throughput": [
                {"endpoints": 100, "batch_size": null, "delivered_per_second": 5.0},
                {"endpoints": 100, "batch_size": 100, "delivered_per_second": 10_000.0},
            ],
            "latency": [
                {"rate_asked": 1000.0, "latency_from_intended_send_ms": {"p99": 20.0}},
                {"rate_asked": 500.0, "latency_from_intended_send_ms": {"p99": 8.0}},
            ],
            "isolation": {"rate_asked": 1000.0, "latency_from_intended_send_ms": {"p99": "inf"}},
            "retry_timing": {
                "tasks": 1_000_000,
                "all_waiting_at_first_due": true,
                "released_lateness_ms": {"p99": 400.0},
            },
            "peak_rss_mib": {"ingest": 50.0, "dispatcher": 100.0, "broker": 900.0},
        });
        let summary = &with_summary(figures)["summary"];
        let mut keys: Vec<&str> = summary
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "ceiling_per_s_median",
                "delivered_per_s_100ep_batched",
                "isolation_all_fast_p99_ms",
                "isolation_fast_p99_ms",
                "p99_ms_at_1000",
                "p99_ms_at_500",
                "ratio_to_ceiling",
                "retry_p99_ms",
                "retry_tasks_waiting",
                "rss_mb_max",
            ]
        );
        assert_eq!(summary["delivered_per_s_100ep_batched"], 10_000.0);
        assert_eq!(summary["ratio_to_ceiling"], 0.25);
        assert_eq!(summary["p99_ms_at_1000"], 20.0);
        assert_eq!(summary["p99_ms_at_500"], 8.0);
        assert_eq!(summary["isolation_all_fast_p99_ms"], 20.0);
        // Some events never delivered: infinitely late, said so, not left out.
        assert_eq!(summary["isolation_fast_p99_ms"], "inf");
        assert_eq!(summary["retry_tasks_waiting"], 1_000_000);
        // The broker's JVM is not a service: the largest service, in MB.
        assert_eq!(summary["rss_mb_max"], 104.8576);
    }
}
