use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use hookstream_egress::DestinationSettings;
use hookstream_kafka::KafkaSettings;
use hookstream_model::ValidationError;
use hookstream_model::health_rules::Rules;
use hookstream_runtime::config::{MetricsSettings, RetrySettings, StoreSettings};

/// Consumes delivery tasks from Kafka, signs each webhook (Standard Webhooks), POSTs it to its
/// endpoint and records the attempt. Retryable failures go to the retry tier of their next delay;
/// permanent ones, and deliveries out of attempts, go to the dead-letter topic. Tasks of different endpoints are sent concurrently; tasks of
/// one endpoint in order. An offset is committed only once every earlier task of its partition
/// has a recorded outcome.
///
/// Every setting can be given as a flag or as the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "hookstream-dispatcher", version)]
pub struct DispatcherConfig {
    /// Address of the operational endpoints (`/healthz`, `/readyz`, `/metrics`).
    #[arg(
        long,
        env = "HOOKSTREAM_DISPATCHER_OPS_ADDR",
        default_value = "127.0.0.1:9091"
    )]
    pub ops_addr: SocketAddr,

    /// Kafka consumer group of the dispatchers; instances in one group share the partitions.
    #[arg(
        long,
        env = "HOOKSTREAM_DISPATCHER_GROUP",
        default_value = "hookstream-dispatcher"
    )]
    pub group_id: String,

    /// Longest time one webhook request may take, connection and response included.
    #[arg(long, env = "HOOKSTREAM_REQUEST_TIMEOUT", default_value = "10s", value_parser = hookstream_kafka::parse_positive_duration)]
    pub request_timeout: Duration,

    /// How long the copy of a task that sends an attempt keeps other copies from sending it. A
    /// dispatcher that dies mid-attempt delays that delivery by up to this long; one whose
    /// attempt outlasts it may be joined by a second send. At least twice the request timeout;
    /// unset, the larger of 60 s and twice the request timeout.
    #[arg(long, env = "HOOKSTREAM_CLAIM_LEASE", value_parser = hookstream_kafka::parse_positive_duration)]
    pub claim_lease: Option<Duration>,

    /// Most tasks in flight at once in this instance (sending or queued behind their endpoint).
    /// Above it, fetching pauses; it resumes a tenth below. A resumed consumer takes about half a
    /// second to bring new tasks, so this holds more than the lanes send in that time.
    #[arg(long, env = "HOOKSTREAM_MAX_IN_FLIGHT", default_value_t = 5000)]
    pub max_in_flight: usize,

    /// Most bytes of tasks in flight at once in this instance; above it, fetching pauses as for
    /// HOOKSTREAM_MAX_IN_FLIGHT, so large payloads cannot exhaust memory.
    #[arg(
        long,
        env = "HOOKSTREAM_MAX_IN_FLIGHT_BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    pub max_in_flight_bytes: usize,

    /// Most tasks one endpoint may have waiting in this instance; more wait on a retry tier (about
    /// 30 s) and come back, or, for an endpoint that drains them within a quarter second, in
    /// Kafka while its partition stops fetching. Below HOOKSTREAM_MAX_IN_FLIGHT; unset, a tenth of it. An endpoint's order holds
    /// up to this backlog. Its bytes are held to a tenth of HOOKSTREAM_MAX_IN_FLIGHT_BYTES the
    /// same way.
    #[arg(long, env = "HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT")]
    pub max_queued_per_endpoint: Option<usize>,

    /// Longest a new task of an endpoint may expect to wait in this instance: the tasks ahead of
    /// it at the pace the endpoint's tasks have been finishing (or, until one has, the time the
    /// first has taken so far; a lane that stalls longer is taken at that pace). When it would
    /// wait longer, it waits on a retry tier instead (about 30 s), so an endpoint that does not
    /// keep up cannot fill the instance, while one that keeps up keeps its backlog in its lane
    /// and in order, up to HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT. Parking costs a task about 30 s,
    /// so the default waits as long. The kill switch's pause does not count, nor a wait for a
    /// claim held elsewhere (a killed dispatcher's, until its lease runs out).
    #[arg(long, env = "HOOKSTREAM_MAX_LANE_WAIT", default_value = "30s", value_parser = hookstream_kafka::parse_duration)]
    pub max_lane_wait: Duration,

    /// How much of a response body is kept in the attempt log, in bytes; the rest is discarded
    /// unread.
    #[arg(
        long,
        env = "HOOKSTREAM_RESPONSE_SNIPPET_BYTES",
        default_value_t = 1024
    )]
    pub response_snippet_bytes: usize,

    /// How long a stop waits for requests in flight to finish before leaving them to be
    /// re-consumed.
    #[arg(long, env = "HOOKSTREAM_DRAIN_TIMEOUT", default_value = "15s", value_parser = hookstream_kafka::parse_duration)]
    pub drain_timeout: Duration,

    /// Treat DNS failures as permanent (dead-letter at once) instead of retrying them.
    #[arg(long, env = "HOOKSTREAM_DNS_ERRORS_PERMANENT", default_value_t = false, action = clap::ArgAction::Set)]
    pub dns_errors_permanent: bool,

    /// Treat TLS failures as permanent (dead-letter at once) instead of retrying them.
    #[arg(long, env = "HOOKSTREAM_TLS_ERRORS_PERMANENT", default_value_t = false, action = clap::ArgAction::Set)]
    pub tls_errors_permanent: bool,

    /// Retryable failures in a row that open an endpoint's circuit breaker.
    #[arg(long, env = "HOOKSTREAM_BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,

    /// How long an open breaker holds an endpoint's tasks (no attempts spent) before one probe.
    #[arg(long, env = "HOOKSTREAM_BREAKER_OPEN_FOR", default_value = "5m", value_parser = hookstream_kafka::parse_duration)]
    pub breaker_open_for: Duration,

    /// Create the topics of the delivery path (deliveries, every retry tier, the DLQ) and exit,
    /// without touching the store: what the Helm chart's topic Job runs.
    #[arg(long, env = "HOOKSTREAM_CREATE_TOPICS_AND_EXIT", default_value_t = false, action = clap::ArgAction::Set)]
    pub create_topics_and_exit: bool,

    /// Put every task quarantined so far back on the deliveries topic and exit: run it once the
    /// cause is fixed (a dispatcher that knows a newer task schema, a repaired store row).
    #[arg(long, env = "HOOKSTREAM_REQUEUE_QUARANTINE_AND_EXIT", default_value_t = false, action = clap::ArgAction::Set)]
    pub requeue_quarantine_and_exit: bool,

    #[command(flatten)]
    pub health_rules: HealthRuleSettings,

    #[command(flatten)]
    pub retry: RetrySettings,

    #[command(flatten)]
    pub store: StoreSettings,

    #[command(flatten)]
    pub metrics: MetricsSettings,

    #[command(flatten)]
    pub kafka: KafkaSettings,

    #[command(flatten)]
    pub destinations: DestinationSettings,
}

/// What one endpoint may hold of an instance: tasks, and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneLimits {
    pub tasks: usize,
    pub bytes: usize,
}

/// The installation's endpoint health rules (see `hookstream_model::health_rules`); an
/// endpoint's own `health_rules` override them one by one.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthRuleSettings {
    /// Warn when an endpoint's success rate over the window is under this fraction…
    #[arg(
        long,
        env = "HOOKSTREAM_HEALTH_WARN_SUCCESS_RATE",
        default_value_t = 0.9
    )]
    pub health_warn_success_rate: f64,
    /// …with at least this many attempts in the window.
    #[arg(
        long,
        env = "HOOKSTREAM_HEALTH_WARN_MIN_ATTEMPTS",
        default_value_t = 20
    )]
    pub health_warn_min_attempts: u64,
    /// The window of that success rate, in whole minutes (1m to 60m).
    #[arg(long, env = "HOOKSTREAM_HEALTH_WARN_WINDOW", default_value = "5m", value_parser = parse_rule_duration)]
    pub health_warn_window: Duration,
    /// Warn when more than this many attempts in a row failed.
    #[arg(long, env = "HOOKSTREAM_HEALTH_WARN_STREAK", default_value_t = 10)]
    pub health_warn_streak: u64,
    /// Disable an endpoint that has failed without a success for this long (`never`: not by
    /// time).
    #[arg(long, env = "HOOKSTREAM_HEALTH_DISABLE_AFTER", default_value = "5d")]
    pub health_disable_after: String,
    /// Disable an endpoint after this many attempts in a row failed (`never`, the default: not
    /// by count).
    #[arg(
        long,
        env = "HOOKSTREAM_HEALTH_DISABLE_STREAK",
        default_value = "never"
    )]
    pub health_disable_streak: String,
}

fn parse_rule_duration(text: &str) -> Result<Duration, String> {
    hookstream_model::health_rules::parse_duration(text)
}

impl HealthRuleSettings {
    /// The rules, checked: a contradiction or a value out of range names its setting.
    pub fn rules(&self) -> Result<Rules, String> {
        let named =
            |err: ValidationError| format!("HOOKSTREAM_HEALTH_{} {}", err.field, err.reason);
        let window = self.health_warn_window.as_secs();
        let rules = Rules {
            warn_success_rate: self.health_warn_success_rate,
            warn_min_attempts: self.health_warn_min_attempts,
            // Not whole minutes, or too long: `check` names it.
            warn_window_minutes: if window.is_multiple_of(60) {
                u32::try_from(window / 60).unwrap_or(0)
            } else {
                0
            },
            warn_streak: self.health_warn_streak,
            disable_after: match self.health_disable_after.trim() {
                "never" => None,
                text => Some(parse_rule_duration(text).map_err(|reason| {
                    format!("HOOKSTREAM_HEALTH_DISABLE_AFTER {reason}")
                })?),
            },
            disable_streak: match self.health_disable_streak.trim() {
                "never" => None,
                text => Some(text.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!(
                        "HOOKSTREAM_HEALTH_DISABLE_STREAK `{text}` must be a whole number, at least 1, or never"
                    )
                })?),
            },
        };
        rules.check().map_err(named)?;
        Ok(rules)
    }
}

impl DispatcherConfig {
    /// The per-endpoint limits in force, checked against the instance's: one endpoint must not
    /// be able to fill the instance.
    pub fn lane_limits(&self) -> Result<LaneLimits, String> {
        if self.max_in_flight < 2 || self.max_in_flight_bytes < 2 {
            return Err(format!(
                "HOOKSTREAM_MAX_IN_FLIGHT ({}) and HOOKSTREAM_MAX_IN_FLIGHT_BYTES ({}) must be at least 2",
                self.max_in_flight, self.max_in_flight_bytes
            ));
        }
        let tasks = self
            .max_queued_per_endpoint
            .unwrap_or((self.max_in_flight / 10).max(1));
        if tasks == 0 || tasks >= self.max_in_flight {
            return Err(format!(
                "HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT ({tasks}) must be at least 1 and below \
                 HOOKSTREAM_MAX_IN_FLIGHT ({}): one endpoint must not be able to fill the instance",
                self.max_in_flight
            ));
        }
        Ok(LaneLimits {
            tasks,
            bytes: (self.max_in_flight_bytes / 10).max(1),
        })
    }

    /// The claim lease in force: the one set, or the default for the request timeout.
    pub fn claim_lease(&self) -> Result<Duration, String> {
        let shortest = self.request_timeout.saturating_mul(2);
        match self.claim_lease {
            None => Ok(shortest.max(Duration::from_secs(60))),
            Some(lease) if lease >= shortest => Ok(lease),
            Some(lease) => Err(format!(
                "HOOKSTREAM_CLAIM_LEASE ({lease:?}) must be at least twice HOOKSTREAM_REQUEST_TIMEOUT \
                 ({:?}): a shorter lease lets a second copy send while the first still waits for \
                 its answer",
                self.request_timeout
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_shared_config_file_knows_every_setting() {
        use clap::CommandFactory;
        hookstream_config::check_registry(
            hookstream_config::Service::Dispatcher,
            &DispatcherConfig::command(),
        )
        .expect("hookstream-config lists this service's settings");
    }

    fn parse(args: &[&str]) -> DispatcherConfig {
        let mut all = vec!["hookstream-dispatcher"];
        all.extend_from_slice(args);
        DispatcherConfig::try_parse_from(all).expect("valid arguments")
    }

    #[test]
    fn the_installations_health_rules_default_to_the_design_and_a_contradiction_names_its_setting()
    {
        assert_eq!(
            parse(&[]).health_rules.rules(),
            Ok(hookstream_model::health_rules::Rules::default())
        );
        let rules = parse(&[
            "--health-disable-after",
            "never",
            "--health-disable-streak",
            "50",
        ])
        .health_rules
        .rules()
        .expect("valid rules");
        assert_eq!(
            (rules.disable_after, rules.disable_streak),
            (None, Some(50))
        );
        for (args, setting) in [
            (
                ["--health-disable-streak", "10"],
                "HOOKSTREAM_HEALTH_DISABLE_STREAK",
            ),
            (
                ["--health-warn-window", "0s"],
                "HOOKSTREAM_HEALTH_WARN_WINDOW",
            ),
            (
                ["--health-warn-window", "90s"],
                "HOOKSTREAM_HEALTH_WARN_WINDOW",
            ),
            (
                ["--health-disable-after", "10s"],
                "HOOKSTREAM_HEALTH_DISABLE_AFTER",
            ),
            (
                ["--health-warn-success-rate", "1.5"],
                "HOOKSTREAM_HEALTH_WARN_SUCCESS_RATE",
            ),
        ] {
            let refused = parse(&args).health_rules.rules();
            assert!(
                refused.as_ref().is_err_and(|e| e.starts_with(setting)),
                "{args:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_zero_timeout_or_interval_stops_the_start_naming_its_setting() {
        for (flag, name) in [
            ("--request-timeout", "request-timeout"),
            ("--claim-lease", "claim-lease"),
            ("--lag-interval", "lag-interval"),
        ] {
            let refused = DispatcherConfig::try_parse_from(["hookstream-dispatcher", flag, "0s"])
                .expect_err("zero refused")
                .to_string();
            assert!(
                refused.contains(name) && refused.contains("zero"),
                "{flag}: {refused}"
            );
        }
    }

    #[test]
    fn the_claim_lease_outlasts_two_requests() {
        assert_eq!(parse(&[]).claim_lease(), Ok(Duration::from_secs(60)));
        assert_eq!(
            parse(&["--request-timeout", "60s"]).claim_lease(),
            Ok(Duration::from_secs(120)),
            "unset, it follows a long request timeout"
        );
        assert_eq!(
            parse(&["--claim-lease", "20s"]).claim_lease(),
            Ok(Duration::from_secs(20))
        );
        let refused = parse(&["--claim-lease", "15s"]).claim_lease();
        assert!(
            refused.is_err_and(|e| e.contains("HOOKSTREAM_CLAIM_LEASE")),
            "shorter than twice the 10 s request timeout"
        );
    }

    #[test]
    fn one_endpoint_holds_a_tenth_of_the_instance_unless_told_otherwise() {
        assert_eq!(
            parse(&[]).lane_limits(),
            Ok(LaneLimits {
                tasks: 500,
                bytes: 64 * 1024 * 1024 / 10
            })
        );
        assert_eq!(
            parse(&["--max-in-flight", "30"])
                .lane_limits()
                .map(|l| l.tasks),
            Ok(3),
            "unset, it follows a small instance limit instead of refusing to start"
        );
        assert_eq!(
            parse(&["--max-queued-per-endpoint", "50"])
                .lane_limits()
                .map(|l| l.tasks),
            Ok(50)
        );
        for refused in [
            &["--max-queued-per-endpoint", "5000"][..],
            &["--max-queued-per-endpoint", "0"],
            &["--max-in-flight-bytes", "0"],
            &["--max-in-flight", "1"],
        ] {
            assert!(parse(refused).lane_limits().is_err(), "{refused:?}");
        }
    }
}
