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
        serde_json::json!({"p50": self.p50, "p99": self.p99, "p99.9": self.p999, "max": self.max})
    }
}

/// Writes figures to `target/bench/<name>`.
pub fn write_json(name: &str, figures: &serde_json::Value) -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(figures)?)?;
    Ok(())
}
