//! Child processes that die with the test.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// A child process, killed when dropped. Its output goes to a log file kept for failures.
pub struct ChildProcess {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl ChildProcess {
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("creating a log file");
        let err = out.try_clone().expect("cloning the log file handle");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// Asks the process to stop (SIGTERM) without waiting for it.
    pub fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let status = std::process::Command::new("kill")
                .args(["-s", "TERM", &pid.to_string()])
                .status()
                .expect("running kill");
            assert!(status.success(), "kill -TERM {pid} failed");
        }
    }

    /// Asks the process to stop (SIGTERM) and waits for it to exit.
    pub async fn stop(mut self) {
        if !self
            .terminate_and_wait(std::time::Duration::from_secs(30))
            .await
        {
            panic!(
                "{} did not stop within 30 s; log: {}",
                self.name,
                self.tail()
            );
        }
    }

    /// Stops the process as Kubernetes stops a pod: SIGTERM, then SIGKILL if it has not exited
    /// within `grace`. True if it exited by itself (successfully: a failed exit panics).
    pub async fn stop_within(mut self, grace: std::time::Duration) -> bool {
        let exited = self.terminate_and_wait(grace).await;
        if !exited {
            self.child.kill().await.expect("killing the child");
        }
        exited
    }

    /// SIGTERM, then waits up to `grace`: false if the process is still running then; a
    /// failed exit panics.
    async fn terminate_and_wait(&mut self, grace: std::time::Duration) -> bool {
        self.terminate();
        let Ok(exit) = tokio::time::timeout(grace, self.child.wait()).await else {
            return false;
        };
        let exit = exit.expect("waiting for the child");
        assert!(
            exit.success(),
            "{} exited with {exit}; log: {}",
            self.name,
            self.tail()
        );
        true
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("killing the child");
    }

    /// Panics with the log if the process has already exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited with {status} while starting; log:\n{}",
                self.name,
                self.tail()
            );
        }
    }

    /// The end of the process's log, for failure messages.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
