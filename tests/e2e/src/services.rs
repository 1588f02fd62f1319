//! The Hookstream services as real processes, configured the way an operator would.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::process::ChildProcess;
use crate::{Api, Broker, free_port};

/// The API token the test pipelines use.
pub const TOKEN: &str = "e2e-test-token-0123456789abcdef";

/// Where the service binaries are: `HOOKSTREAM_BIN_DIR`, or the target folder this test runs from.
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var("HOOKSTREAM_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target_profile_dir());
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the services first (`cargo build --bins`; `make test` does)",
        path.display()
    );
    path
}

/// The target folder of the profile this program was built in (target/debug).
fn target_profile_dir() -> PathBuf {
    // Tests run as target/<profile>/deps/<test>, benchmarks as target/<profile>/<bench>; the
    // service binaries are in target/<profile>.
    let exe = std::env::current_exe().expect("the running program's own path");
    let dir = exe.parent().expect("the program's folder");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().unwrap_or(dir).to_owned()
    } else {
        dir.to_owned()
    }
}

/// The previous release's service binaries (target/previous-release/bin, which
/// `deploy/local/previous-release.sh` builds) and the commit they were built from.
pub fn previous_release() -> (PathBuf, String) {
    let profile = target_profile_dir();
    let dir = profile
        .parent()
        .unwrap_or(&profile)
        .join("previous-release/bin");
    let commit = std::fs::read_to_string(dir.join("release")).unwrap_or_else(|_| {
        panic!(
            "the previous release's binaries are not in {}: run deploy/local/previous-release.sh \
             (`make test` does)",
            dir.display()
        )
    });
    (dir, commit.trim().to_owned())
}

/// Which service a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ingest,
    Dispatcher,
    /// A second dispatcher in the same consumer group.
    SecondDispatcher,
    RetryTier,
    /// Not started by default: tests of dead letters and replay start it.
    Replay,
}

/// A whole pipeline: broker, embedded store, ingest and dispatcher.
pub struct Pipeline {
    pub broker: Option<Broker>,
    pub api: Api,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Ingest's `/healthz`, `/readyz` and `/metrics`, apart from its API.
    ingest_ops_port: u16,
    ops_port: u16,
    retry_ops_port: u16,
    second_ops_port: u16,
    replay_ops_port: u16,
    ingest: Option<ChildProcess>,
    second_dispatcher: Option<ChildProcess>,
    dispatcher: Option<ChildProcess>,
    retry_tier: Option<ChildProcess>,
    replay: Option<ChildProcess>,
    /// Where an older release's binaries are, for a rolling upgrade: a service not yet in
    /// `upgraded` starts from there.
    older_release: Option<PathBuf>,
    upgraded: Vec<Service>,
}

impl Pipeline {
    /// Starts everything with the settings `make run` uses (loopback endpoints allowed), plus
    /// `extra` environment variables, and waits until both services are ready.
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let broker = Broker::start().await;
        let address = broker.address.clone();
        Self::start_on(Some(broker), &address, extra).await
    }

    /// Like [`Pipeline::start`], on brokers the test runs itself (e.g. librdkafka's mock
    /// cluster, whose topics the test creates).
    pub async fn start_on(broker: Option<Broker>, brokers: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_only(
            broker,
            brokers,
            extra,
            &[Service::Ingest, Service::Dispatcher, Service::RetryTier],
        )
        .await
    }

    /// Like [`Pipeline::start`], on an older release's binaries (in `binaries`): a rolling
    /// upgrade then moves each service to this build with [`Pipeline::upgrade_service`].
    pub async fn start_release(binaries: PathBuf, extra: &[(&str, &str)]) -> Self {
        let broker = Broker::start().await;
        let address = broker.address.clone();
        Self::start_with(
            Some(broker),
            &address,
            extra,
            &[Service::Ingest, Service::Dispatcher, Service::RetryTier],
            Some(binaries),
        )
        .await
    }

    /// Starts only `services` (for benchmarks that exercise one service alone).
    pub async fn start_only(
        broker: Option<Broker>,
        brokers: &str,
        extra: &[(&str, &str)],
        services: &[Service],
    ) -> Self {
        Self::start_with(broker, brokers, extra, services, None).await
    }

    async fn start_with(
        broker: Option<Broker>,
        brokers: &str,
        extra: &[(&str, &str)],
        services: &[Service],
        older_release: Option<PathBuf>,
    ) -> Self {
        // HOOKSTREAM_E2E_KEEP=1 keeps each pipeline's folder (its services' logs, one per
        // start, and the embedded store) after the test, to read what happened.
        let keep = std::env::var_os("HOOKSTREAM_E2E_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .disable_cleanup(keep)
            .tempdir()
            .expect("a temporary folder for the store");
        if keep {
            eprintln!("pipeline folder kept: {}", dir.path().display());
        }
        let ingest_port = free_port();
        let ingest_ops_port = free_port();
        let ops_port = free_port();
        let retry_ops_port = free_port();
        let replay_ops_port = free_port();
        let mut env: Vec<(String, String)> = vec![
            ("HOOKSTREAM_KAFKA_BROKERS".into(), brokers.to_owned()),
            (
                "HOOKSTREAM_STORE".into(),
                format!("sqlite://{}", dir.path().join("store.db").display()),
            ),
            ("HOOKSTREAM_API_TOKEN".into(), TOKEN.into()),
            // Every service of a pipeline seals and opens signing secrets with one key.
            (
                "HOOKSTREAM_SECRET_KEY".into(),
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
            ),
            (
                "HOOKSTREAM_HTTP_ADDR".into(),
                format!("127.0.0.1:{ingest_port}"),
            ),
            (
                "HOOKSTREAM_INGEST_OPS_ADDR".into(),
                format!("127.0.0.1:{ingest_ops_port}"),
            ),
            (
                "HOOKSTREAM_DISPATCHER_OPS_ADDR".into(),
                format!("127.0.0.1:{ops_port}"),
            ),
            ("HOOKSTREAM_ALLOW_HTTP_ENDPOINTS".into(), "true".into()),
            (
                "HOOKSTREAM_ALLOWED_DESTINATIONS".into(),
                "127.0.0.0/8,::1/128".into(),
            ),
            ("HOOKSTREAM_DELIVERIES_PARTITIONS".into(), "4".into()),
            (
                "HOOKSTREAM_RETRY_TIER_OPS_ADDR".into(),
                format!("127.0.0.1:{retry_ops_port}"),
            ),
            (
                "HOOKSTREAM_REPLAY_OPS_ADDR".into(),
                format!("127.0.0.1:{replay_ops_port}"),
            ),
            // Short tiers, so retries happen in a test's time.
            ("HOOKSTREAM_RETRY_SCHEDULE".into(), "300ms,600ms,1s".into()),
            ("HOOKSTREAM_RETRY_JITTER".into(), "0.2".into()),
            ("HOOKSTREAM_LOG".into(), "info".into()),
        ];
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push(((*key).to_owned(), (*value).to_owned()));
        }
        let mut pipeline = Self {
            broker,
            api: Api::new(format!("http://127.0.0.1:{ingest_port}"), TOKEN),
            dir,
            env,
            ingest_ops_port,
            ops_port,
            retry_ops_port,
            second_ops_port: free_port(),
            replay_ops_port,
            ingest: None,
            second_dispatcher: None,
            dispatcher: None,
            retry_tier: None,
            replay: None,
            older_release,
            upgraded: Vec::new(),
        };
        for service in services {
            pipeline.start_service(*service).await;
        }
        pipeline
    }

    /// Starts one service and waits until its `/readyz` answers 200.
    pub async fn start_service(&mut self, service: Service) {
        let (name, port) = match service {
            Service::Ingest => ("hookstream-ingest", self.ingest_ops_port),
            Service::Dispatcher => ("hookstream-dispatcher", self.ops_port),
            Service::SecondDispatcher => ("hookstream-dispatcher", self.second_ops_port),
            Service::RetryTier => ("hookstream-retry-tier", self.retry_ops_port),
            Service::Replay => ("hookstream-replay", self.replay_ops_port),
        };
        let program = match &self.older_release {
            Some(older) if !self.upgraded.contains(&service) => older.join(name),
            _ => binary(name),
        };
        let mut command = Command::new(program);
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        if service == Service::SecondDispatcher {
            command.env(
                "HOOKSTREAM_DISPATCHER_OPS_ADDR",
                format!("127.0.0.1:{port}"),
            );
        }
        // One log per start: a service started again keeps its earlier run's log beside.
        let log = (0..)
            .map(|run| match run {
                0 => self.dir.path().join(format!("{name}.{port}.log")),
                _ => self.dir.path().join(format!("{name}.{port}.{run}.log")),
            })
            .find(|path| !path.exists())
            .expect("a free log file name");
        let mut process = ChildProcess::spawn(name, command, log);
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            process.assert_running();
            if let Ok(response) = client.get(&ready).send().await
                && response.status().is_success()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} was not ready within 60 s; log:\n{}",
                process.tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match service {
            Service::Ingest => self.ingest = Some(process),
            Service::Dispatcher => self.dispatcher = Some(process),
            Service::SecondDispatcher => self.second_dispatcher = Some(process),
            Service::RetryTier => self.retry_tier = Some(process),
            Service::Replay => self.replay = Some(process),
        }
    }

    fn take(&mut self, service: Service) -> ChildProcess {
        match service {
            Service::Ingest => self.ingest.take(),
            Service::Dispatcher => self.dispatcher.take(),
            Service::SecondDispatcher => self.second_dispatcher.take(),
            Service::RetryTier => self.retry_tier.take(),
            Service::Replay => self.replay.take(),
        }
        .unwrap_or_else(|| panic!("{service:?} is not running"))
    }

    /// Stops a service gracefully (SIGTERM) and waits for it to exit cleanly.
    pub async fn stop_service(&mut self, service: Service) {
        self.take(service).stop().await;
    }

    /// Stops a service as Kubernetes stops a pod: SIGTERM, then SIGKILL after the chart's
    /// `terminationGracePeriodSeconds` (30 s). True if it exited by itself in that time.
    pub async fn stop_as_kubernetes_does(&mut self, service: Service) -> bool {
        self.take(service)
            .stop_within(Duration::from_secs(30))
            .await
    }

    /// Stops a service of the older release as Kubernetes does and starts this build's in its
    /// place, as a rolling upgrade does. True if the older one exited by itself in time.
    pub async fn upgrade_service(&mut self, service: Service) -> bool {
        let exited = self.stop_as_kubernetes_does(service).await;
        self.upgraded.push(service);
        self.start_service(service).await;
        exited
    }

    /// Asks a service to stop (SIGTERM) and returns at once; [`Pipeline::stop_service`] then
    /// waits for it to exit.
    pub fn request_stop(&self, service: Service) {
        self.running(service)
            .unwrap_or_else(|| panic!("{service:?} is not running"))
            .terminate();
    }

    /// Kills a service at once (SIGKILL), as a crash would.
    pub async fn kill_service(&mut self, service: Service) {
        self.take(service).kill().await;
    }

    fn running(&self, service: Service) -> Option<&ChildProcess> {
        match service {
            Service::Ingest => self.ingest.as_ref(),
            Service::Dispatcher => self.dispatcher.as_ref(),
            Service::SecondDispatcher => self.second_dispatcher.as_ref(),
            Service::RetryTier => self.retry_tier.as_ref(),
            Service::Replay => self.replay.as_ref(),
        }
    }

    /// Whether the service is running (started and not stopped or killed by the test).
    pub fn is_running(&self, service: Service) -> bool {
        self.running(service).is_some()
    }

    /// The end of a running service's log, for failure messages.
    pub fn log_tail(&self, service: Service) -> String {
        self.running(service).map(|p| p.tail()).unwrap_or_default()
    }

    /// Everything a running service logged so far.
    pub fn log_of(&self, service: Service) -> String {
        self.running(service).map(|p| p.log()).unwrap_or_default()
    }

    /// Where a running service's log is written (it stays after the service stops).
    pub fn log_path(&self, service: Service) -> Option<PathBuf> {
        self.running(service).map(|p| p.log.clone())
    }

    /// The process id of a running service (for benchmarks that read its memory).
    pub fn pid(&self, service: Service) -> Option<u32> {
        self.running(service).and_then(ChildProcess::pid)
    }

    /// Runs a service binary with the pipeline's settings and `args` until it exits; returns
    /// what it printed on stdout. For the one-shot modes (`--requeue-quarantine-and-exit`).
    pub async fn run_to_exit(&self, name: &str, args: &[&str]) -> String {
        let output = self.run(name, args).await;
        assert!(
            output.status.success(),
            "{name} {args:?} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts a service binary with the pipeline's settings, expecting it to refuse to start;
    /// returns what it printed (stdout and stderr).
    pub async fn run_to_exit_failing(&self, name: &str) -> String {
        let output = self.run(name, &[]).await;
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.status.success(),
            "{name} started although it should not have: {printed}"
        );
        printed
    }

    async fn run(&self, name: &str, args: &[&str]) -> std::process::Output {
        let mut command = tokio::process::Command::new(binary(name));
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .kill_on_drop(true);
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .unwrap_or_else(|_| panic!("{name} {args:?} did not exit within 120 s"))
            .unwrap_or_else(|e| panic!("running {name}: {e}"))
    }

    /// Sets (or, with `None`, removes) an environment variable of the services started from
    /// now on; those running keep theirs until restarted.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_owned(), value.to_owned()));
        }
    }

    /// The embedded store's database file.
    pub fn store_path(&self) -> std::path::PathBuf {
        self.dir.path().join("store.db")
    }

    /// The Kafka bootstrap address the services use.
    pub fn brokers(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "HOOKSTREAM_KAFKA_BROKERS")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// The dispatcher's `/metrics` text.
    pub async fn dispatcher_metrics(&self) -> String {
        self.metrics_of(Service::Dispatcher).await
    }

    /// Waits until the dispatcher has put at least `count` tasks in endpoints' queues in the
    /// store (strict endpoints', and disabled ones' kept until enabled) since it started.
    pub async fn wait_for_queued(&self, count: usize, timeout: Duration) {
        crate::eventually(&format!("{count} tasks queued"), timeout, || async {
            let metrics = self.dispatcher_metrics().await;
            crate::sample(&metrics, "hookstream_strict_tasks_queued_total")
                .is_some_and(|n| n >= count as f64)
                .then_some(())
        })
        .await;
    }

    /// Waits until nothing is left to send: the dispatcher group's lag on the deliveries topic,
    /// the retry tier's lag and the tasks it holds read zero, twice in a row. The lag series must
    /// exist (a restarted service reports them only after its first read). Needs
    /// `HOOKSTREAM_LAG_INTERVAL` short enough for the test.
    pub async fn wait_until_drained(&self, timeout: Duration) {
        let zero_reads = std::sync::atomic::AtomicUsize::new(0);
        crate::eventually("the topics to drain", timeout, || async {
            let dispatcher = self.dispatcher_metrics().await;
            let tier = self.metrics_of(Service::RetryTier).await;
            let left = crate::sum(
                &dispatcher,
                "hookstream_consumer_lag",
                "topic=\"hookstream.deliveries\"",
            )? + crate::sum(&tier, "hookstream_consumer_lag", "")?
                + crate::sum(&tier, "hookstream_retry_tasks_waiting", "").unwrap_or(0.0);
            if left > 0.0 {
                zero_reads.store(0, std::sync::atomic::Ordering::SeqCst);
                return None;
            }
            (zero_reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1).then_some(())
        })
        .await;
    }

    /// A service's `/healthz` answer: its status and body.
    pub async fn health_of(&self, service: Service) -> (u16, String) {
        self.ops_get(service, "/healthz").await
    }

    /// A service's `/readyz` answer: its status and body.
    pub async fn readiness_of(&self, service: Service) -> (u16, String) {
        self.ops_get(service, "/readyz").await
    }

    async fn ops_get(&self, service: Service, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port_of(service)))
            .await
            .unwrap_or_else(|e| panic!("{path} answers: {e}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// A service's `/metrics` text (ingest, either dispatcher, the retry tier).
    pub async fn metrics_of(&self, service: Service) -> String {
        reqwest::get(format!(
            "http://127.0.0.1:{}/metrics",
            self.port_of(service)
        ))
        .await
        .expect("dispatcher metrics")
        .text()
        .await
        .expect("metrics text")
    }

    /// The base URL of a service's ops endpoints (`/metrics`, `/log-level`, ...).
    pub fn ops_url(&self, service: Service) -> String {
        format!("http://127.0.0.1:{}", self.port_of(service))
    }

    /// The port a service serves its ops endpoints on.
    fn port_of(&self, service: Service) -> u16 {
        match service {
            Service::Ingest => self.ingest_ops_port,
            Service::Dispatcher => self.ops_port,
            Service::SecondDispatcher => self.second_ops_port,
            Service::RetryTier => self.retry_ops_port,
            Service::Replay => self.replay_ops_port,
        }
    }
}
