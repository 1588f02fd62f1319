//! What the processes of a run cost: CPU time and peak resident memory, from `/proc`.

use serde_json::{Map, Value, json};

/// The processes measured, by name, with their pids (the bench itself included: it is the load
/// generator and the receivers).
pub struct Processes(pub Vec<(&'static str, u32)>);

/// CPU seconds each process had used at one moment.
pub struct CpuReading(Vec<(&'static str, f64)>);

impl Processes {
    pub fn cpu(&self) -> CpuReading {
        CpuReading(
            self.0
                .iter()
                .map(|&(name, pid)| (name, cpu_seconds(pid).unwrap_or(f64::NAN)))
                .collect(),
        )
    }

    /// Peak resident memory (VmHWM) of each process so far, in MiB.
    pub fn peak_rss_mib(&self) -> Value {
        let peaks: Map<String, Value> = self
            .0
            .iter()
            .map(|&(name, pid)| (name.to_owned(), json!(peak_rss_mib(pid))))
            .collect();
        Value::Object(peaks)
    }
}

impl CpuReading {
    /// CPU seconds per 1,000 deliveries of each process between `before` and this reading.
    pub fn per_thousand_since(&self, before: &CpuReading, deliveries: u64) -> Value {
        let per: Map<String, Value> = self
            .0
            .iter()
            .zip(&before.0)
            .map(|(&(name, after), &(_, before))| {
                let seconds = after - before;
                let per = if deliveries > 0 {
                    seconds * 1000.0 / deliveries as f64
                } else {
                    f64::NAN
                };
                (name.to_owned(), json!(per))
            })
            .collect();
        Value::Object(per)
    }
}

/// User plus system CPU seconds of a process (all its threads), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name and state.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

/// The kernel's clock ticks a second, asked once.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Peak resident memory (VmHWM) of one process so far, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_cpu_and_memory() {
        let me = Processes(vec![("bench", std::process::id())]);
        let before = me.cpu();
        let mut x = 0u64;
        for n in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(n);
        }
        std::hint::black_box(x);
        let after = me.cpu();
        assert!(after.0[0].1 >= before.0[0].1);
        assert!(me.peak_rss_mib()["bench"].as_f64().unwrap_or(0.0) > 0.0);
        let per = after.per_thousand_since(&before, 1000);
        assert!(per["bench"].as_f64().is_some_and(|s| s >= 0.0));
    }
}
