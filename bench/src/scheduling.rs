//! Whether the machine's CPUs are the limit of a run: how busy they were, and how the store's
//! writer threads spent the run (on a CPU, or runnable and waiting for one), from `/proc`.
//!
//! The store's write lock looked like the limit (held 96-99 % of a batched run), but its writer
//! threads spent more of the run runnable and waiting for a CPU (about a third) than on one
//! (about a quarter): a transaction holds the lock while its thread waits its turn, so a lock
//! held that long says the machine is out of CPU more than that the lock is slow.

use serde_json::{Map, Value, json};

use crate::cost::Processes;

/// The name the store gives its writer thread (`crates/store/src/sqlite/writer.rs`).
const WRITER_THREAD: &str = "store-writer";

/// The machine's CPU counters and each process's writer thread times at one moment.
pub struct SchedReading {
    machine: Option<MachineTicks>,
    writers: Vec<(&'static str, Option<ThreadTimes>)>,
}

#[derive(Clone, Copy)]
struct MachineTicks {
    total: u64,
    idle: u64,
}

/// Nanoseconds a thread (or the sum of several) ran and waited to run.
#[derive(Clone, Copy, Default)]
struct ThreadTimes {
    on_cpu_ns: u64,
    runnable_waiting_ns: u64,
}

impl SchedReading {
    pub fn take(processes: &Processes) -> Self {
        Self {
            machine: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|stat| MachineTicks::parse(&stat)),
            writers: processes
                .0
                .iter()
                .map(|&(name, pid)| (name, writer_thread_times(pid)))
                .collect(),
        }
    }

    /// Between `before` and this reading over `seconds`: the share of the machine's CPU time
    /// that was busy, and for each process with a writer thread, the shares of the run that
    /// thread spent on a CPU and waiting for one.
    pub fn since(&self, before: &SchedReading, seconds: f64) -> Value {
        let machine_busy = match (self.machine, before.machine) {
            (Some(now), Some(then)) if now.total > then.total => {
                let total = (now.total - then.total) as f64;
                Some(1.0 - now.idle.saturating_sub(then.idle) as f64 / total)
            }
            _ => None,
        };
        let mut writers = Map::new();
        for ((name, now), (_, then)) in self.writers.iter().zip(&before.writers) {
            if let (Some(now), Some(then)) = (now, then) {
                let share = |ns: u64| ns as f64 / 1e9 / seconds;
                writers.insert(
                    (*name).to_owned(),
                    json!({
                        "on_cpu_share": share(now.on_cpu_ns.saturating_sub(then.on_cpu_ns)),
                        "waiting_for_cpu_share": share(
                            now.runnable_waiting_ns.saturating_sub(then.runnable_waiting_ns)
                        ),
                    }),
                );
            }
        }
        json!({ "machine_busy_share": machine_busy, "store_writer_threads": writers })
    }
}

impl MachineTicks {
    /// The first line of `/proc/stat`: `cpu user nice system idle iowait irq softirq steal ...`.
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        // guest and guest_nice (fields 9 and 10) are already counted in user and nice.
        let total = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
        Some(Self { total, idle })
    }
}

/// The summed times of the process's threads named [`WRITER_THREAD`]; `None` when it has none
/// (a process that does not write to the embedded store) or `/proc` cannot tell.
fn writer_thread_times(pid: u32) -> Option<ThreadTimes> {
    let mut found = None::<ThreadTimes>;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let path = task.path();
        let is_writer = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.trim_end() == WRITER_THREAD);
        if !is_writer {
            continue;
        }
        let Some(times) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|line| ThreadTimes::parse(&line))
        else {
            continue;
        };
        let sum = found.get_or_insert_with(ThreadTimes::default);
        sum.on_cpu_ns += times.on_cpu_ns;
        sum.runnable_waiting_ns += times.runnable_waiting_ns;
    }
    found
}

impl ThreadTimes {
    /// `/proc/<pid>/task/<tid>/schedstat`: ns on a CPU, ns runnable waiting for one, slices.
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace().map(str::parse::<u64>);
        Some(Self {
            on_cpu_ns: fields.next()?.ok()?,
            runnable_waiting_ns: fields.next()?.ok()?,
        })
    }
}

/// One line for the report.
pub fn row(figures: &Value) -> String {
    let percent = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "n/a".to_owned(), |v| format!("{:.0} %", 100.0 * v))
    };
    let writers: Vec<String> = figures["store_writer_threads"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, f)| {
            format!(
                "{name} on a CPU {}, waiting for one {}",
                percent(&f["on_cpu_share"]),
                percent(&f["waiting_for_cpu_share"])
            )
        })
        .collect();
    format!(
        "machine busy {}; store writer threads: {}",
        percent(&figures["machine_busy_share"]),
        if writers.is_empty() {
            "none".to_owned()
        } else {
            writers.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_share_counts_idle_and_iowait_as_not_busy() {
        let then = MachineTicks::parse("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3\n");
        let now = MachineTicks::parse("cpu  250 0 250 800 100 0 0 0 50 0\n");
        let reading = |machine| SchedReading {
            machine,
            writers: vec![],
        };
        let figures = reading(now).since(&reading(then), 1.0);
        // 400 ticks passed, 100 of them idle: three quarters busy.
        assert_eq!(figures["machine_busy_share"], 0.75);
        assert_eq!(
            row(&figures),
            "machine busy 75 %; store writer threads: none"
        );
    }

    #[test]
    fn a_writer_threads_shares_come_from_its_schedstat() {
        let times = |line| ThreadTimes::parse(line);
        let before = SchedReading {
            machine: None,
            writers: vec![("ingest", times("1000000000 2000000000 10\n"))],
        };
        let after = SchedReading {
            machine: None,
            writers: vec![("ingest", times("1500000000 3000000000 99\n"))],
        };
        let figures = after.since(&before, 2.0);
        assert_eq!(
            figures["store_writer_threads"]["ingest"]["on_cpu_share"],
            0.25
        );
        assert_eq!(
            figures["store_writer_threads"]["ingest"]["waiting_for_cpu_share"],
            0.5
        );
        assert!(figures["machine_busy_share"].is_null());
        assert_eq!(
            row(&figures),
            "machine busy n/a; store writer threads: ingest on a CPU 25 %, waiting for one 50 %"
        );
    }

    #[test]
    fn this_process_has_no_writer_thread_until_it_names_one() {
        assert!(writer_thread_times(std::process::id()).is_none());
        let (ready, wait) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(WRITER_THREAD.to_owned())
            .spawn(move || {
                let _ = ready.send(());
                let _ = stopped.recv();
            })
            .expect("a thread");
        wait.recv().expect("the thread started");
        assert!(writer_thread_times(std::process::id()).is_some());
        drop(stop);
        thread.join().expect("the thread ends");
    }
}
