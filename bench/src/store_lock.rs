//! The embedded store's write lock over a run: how much of the time each service held it and
//! how long its transactions waited for it, from the services' own
//! `hookstream_store_write_lock_seconds` histograms. Every process of the machine shares that
//! one lock, so the services' shares together say how close the store is to its limit.

use serde_json::{Value, json};

use hookstream_e2e::{Pipeline, Service, sample};

/// The services that write to the store during a throughput run.
const WRITERS: [(Service, &str); 2] = [
    (Service::Ingest, "ingest"),
    (Service::Dispatcher, "dispatcher"),
];

/// The lock histograms' sums and counts of each writing service at one moment.
pub struct LockReading(Vec<(&'static str, Sums)>);

/// `None` where the service does not export the series (not on the embedded store).
#[derive(Default, Clone, Copy)]
struct Sums {
    held_seconds: Option<f64>,
    transactions: Option<f64>,
    waited_seconds: Option<f64>,
    waits: Option<f64>,
}

impl LockReading {
    pub async fn take(pipeline: &Pipeline) -> Self {
        let mut readings = Vec::new();
        for (service, name) in WRITERS {
            let metrics = pipeline.metrics_of(service).await;
            readings.push((name, Sums::read(&metrics)));
        }
        Self(readings)
    }

    /// Per service, between `before` and `self` over `seconds`: the share of the time it held
    /// the lock, its transactions a second, and their mean hold and wait in milliseconds.
    pub fn since(&self, before: &LockReading, seconds: f64) -> Value {
        let mut figures = serde_json::Map::new();
        for ((name, now), (_, then)) in self.0.iter().zip(&before.0) {
            let since = |read: fn(&Sums) -> Option<f64>| Some(read(now)? - read(then)?);
            let held = since(|s| s.held_seconds);
            let transactions = since(|s| s.transactions);
            let mean_ms = |total: Option<f64>, count: Option<f64>| match (total, count) {
                (Some(total), Some(count)) if count > 0.0 => Some(1000.0 * total / count),
                _ => None,
            };
            figures.insert(
                (*name).to_owned(),
                json!({
                    "held_share": held.map(|held| held / seconds),
                    "transactions_per_second": transactions.map(|n| n / seconds),
                    "mean_hold_ms": mean_ms(held, transactions),
                    "mean_wait_ms": mean_ms(since(|s| s.waited_seconds), since(|s| s.waits)),
                }),
            );
        }
        Value::Object(figures)
    }
}

impl Sums {
    fn read(metrics: &str) -> Self {
        let value = |series: &str| sample(metrics, series);
        Self {
            held_seconds: value("hookstream_store_write_lock_seconds_sum{phase=\"holding\"}"),
            transactions: value("hookstream_store_write_lock_seconds_count{phase=\"holding\"}"),
            waited_seconds: value("hookstream_store_write_lock_seconds_sum{phase=\"waiting\"}"),
            waits: value("hookstream_store_write_lock_seconds_count{phase=\"waiting\"}"),
        }
    }
}

/// One line for the report: each service's share of the time it held the lock.
pub fn row(figures: &Value) -> String {
    figures
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, f)| match f["held_share"].as_f64() {
            Some(share) => format!(
                "{name} {:.0} % ({} ms a transaction, {} ms waiting)",
                100.0 * share,
                one_decimal(&f["mean_hold_ms"]),
                one_decimal(&f["mean_wait_ms"]),
            ),
            None => format!("{name} n/a"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_decimal(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_figures_come_from_the_histograms_between_two_readings() {
        let text = |held: f64, count: f64, waited: f64, waits: f64| {
            format!(
                "hookstream_store_write_lock_seconds_sum{{phase=\"holding\"}} {held}\n\
                 hookstream_store_write_lock_seconds_count{{phase=\"holding\"}} {count}\n\
                 hookstream_store_write_lock_seconds_sum{{phase=\"waiting\"}} {waited}\n\
                 hookstream_store_write_lock_seconds_count{{phase=\"waiting\"}} {waits}\n"
            )
        };
        let before = LockReading(vec![("ingest", Sums::read(&text(1.0, 100.0, 2.0, 100.0)))]);
        let after = LockReading(vec![("ingest", Sums::read(&text(6.0, 600.0, 8.0, 700.0)))]);
        let figures = after.since(&before, 10.0);
        assert_eq!(figures["ingest"]["held_share"], 0.5);
        assert_eq!(figures["ingest"]["transactions_per_second"], 50.0);
        assert_eq!(figures["ingest"]["mean_hold_ms"], 10.0);
        // Waits that timed out count among the waits, not among the transactions.
        assert_eq!(figures["ingest"]["mean_wait_ms"], 10.0);
        assert!(row(&figures).starts_with("ingest 50 % (10.0 ms"));
    }

    #[test]
    fn a_service_without_the_series_shows_no_figure() {
        let before = LockReading(vec![("dispatcher", Sums::read(""))]);
        let after = LockReading(vec![("dispatcher", Sums::read(""))]);
        let figures = after.since(&before, 10.0);
        assert!(figures["dispatcher"]["held_share"].is_null());
        assert_eq!(row(&figures), "dispatcher n/a");
    }
}
