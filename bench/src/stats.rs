//! Figures: percentiles and the JSON files under `target/bench/`.

/// p50, p99 and max of a set of milliseconds.
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            let last = values.len().saturating_sub(1) as f64;
            values
                .get((last * q).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Self {
            p50: pick(0.5),
            p99: pick(0.99),
            p999: pick(0.999),
            max: pick(1.0),
        }
    }

    pub fn row(&self) -> String {
        format!(
            "{:>7.1} ms {:>7.1} ms {:>7.1} ms",
            self.p50, self.p99, self.max
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "p50": figure(self.p50),
            "p99": figure(self.p99),
            "p99.9": figure(self.p999),
            "max": figure(self.max),
        })
    }
}

/// A figure for JSON: an infinite one (an event never delivered) as the string "inf", since
/// JSON has no infinity and `null` would read as "not measured".
pub fn figure(value: f64) -> serde_json::Value {
    if value.is_infinite() {
        serde_json::json!("inf")
    } else {
        serde_json::json!(value)
    }
}

/// A figure read back from JSON: "inf" is infinite, anything else not a number is NaN.
pub fn read_figure(value: &serde_json::Value) -> f64 {
    match value {
        serde_json::Value::String(text) if text == "inf" => f64::INFINITY,
        other => other.as_f64().unwrap_or(f64::NAN),
    }
}

/// Writes figures to `target/bench/<name>`.
pub fn write_json(name: &str, figures: &serde_json::Value) -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(figures)?)?;
    Ok(())
}

/// The cumulative bucket counts of one Prometheus histogram, read from `/metrics` text.
pub struct Buckets(Vec<(f64, f64)>);

impl Buckets {
    /// Reads `<name>_bucket{le="…"} count` lines (a histogram without other labels).
    pub fn read(metrics: &str, name: &str) -> Self {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = metrics
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(&prefix)?;
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self(buckets)
    }

    /// The bound of the bucket that holds quantile `q` of what was observed between `before`
    /// and `self`, in milliseconds: the value is at most this. NaN if nothing was observed.
    pub fn quantile_since(&self, before: &Buckets, q: f64) -> f64 {
        let earlier = |le: f64| {
            before
                .0
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, count)| *count)
        };
        let counts: Vec<(f64, f64)> = self
            .0
            .iter()
            .map(|&(le, count)| (le, count - earlier(le)))
            .collect();
        let total = counts.last().map_or(0.0, |&(_, count)| count);
        if total <= 0.0 {
            return f64::NAN;
        }
        counts
            .iter()
            .find(|&&(_, count)| count >= q * total)
            .map_or(f64::NAN, |&(le, _)| le * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantiles_count_only_what_came_between_two_readings() {
        let name = "t_seconds";
        let before = Buckets::read(
            "t_seconds_bucket{le=\"0.01\"} 10\nt_seconds_bucket{le=\"0.1\"} 10\nt_seconds_bucket{le=\"+Inf\"} 10\n",
            name,
        );
        let after = Buckets::read(
            "# HELP t_seconds x\nt_seconds_bucket{le=\"0.01\"} 60\nt_seconds_bucket{le=\"0.1\"} 108\nt_seconds_bucket{le=\"+Inf\"} 110\nt_seconds_sum 3\n",
            name,
        );
        // 100 new: 50 at most 10 ms, 48 more at most 100 ms, 2 above.
        assert_eq!(after.quantile_since(&before, 0.5), 10.0);
        assert_eq!(after.quantile_since(&before, 0.9), 100.0);
        assert_eq!(after.quantile_since(&before, 0.99), f64::INFINITY);
        assert!(before.quantile_since(&before, 0.5).is_nan());
    }
}
