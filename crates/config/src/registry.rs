//! Which service takes which setting. One file serves every service, so a service reading a
//! key it does not take must know whether another service takes it (and leave it) or nobody
//! does (a typo: refuse it). Each service's tests check its list here against its flags.

use clap::Command;

/// The services that read the file, each with its own section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Ingest,
    Dispatcher,
    RetryTier,
    Replay,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Ingest,
        Service::Dispatcher,
        Service::RetryTier,
        Service::Replay,
    ];

    /// Its section in the file, `[dispatcher]`.
    pub fn section(self) -> &'static str {
        match self {
            Service::Ingest => "ingest",
            Service::Dispatcher => "dispatcher",
            Service::RetryTier => "retry_tier",
            Service::Replay => "replay",
        }
    }

    pub fn from_section(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.section() == name)
    }

    pub(crate) fn section_names() -> String {
        Service::ALL.map(Service::section).join(", ")
    }

    /// The keys it takes, in the file's spelling.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Service::Ingest => INGEST,
            Service::Dispatcher => DISPATCHER,
            Service::RetryTier => RETRY_TIER,
            Service::Replay => REPLAY,
        }
    }

    /// Whether some service takes `key`.
    pub fn any_takes(key: &str) -> bool {
        Service::ALL.iter().any(|s| s.keys().contains(&key))
    }
}

/// A setting's key in the file: its environment variable without `HOOKSTREAM_`, in lower case
/// (`HOOKSTREAM_KAFKA_BROKERS` is `kafka_brokers`).
/// One-off actions (run once, then exit or turn off) are not: a file, and so every pod given
/// it, would repeat them at each start.
pub fn key_of(arg: &clap::Arg) -> Option<String> {
    let env = arg.get_env()?.to_str()?;
    let name = env.strip_prefix("HOOKSTREAM_")?;
    (!NOT_IN_FILE.contains(&name)).then(|| name.to_ascii_lowercase())
}

/// Whether `key` is a setting given only by flag or variable.
pub(crate) fn flag_only(key: &str) -> bool {
    NOT_IN_FILE
        .iter()
        .any(|name| name.eq_ignore_ascii_case(key))
}

/// Settings given only by flag or variable.
const NOT_IN_FILE: [&str; 4] = [
    "CONFIG",
    "CREATE_TOPICS_AND_EXIT",
    "REQUEUE_QUARANTINE_AND_EXIT",
    "SEAL_PLAIN_SECRETS",
];

/// Checks `service`'s list against the keys its `command` takes, naming what differs.
pub fn check(service: Service, command: &Command) -> Result<(), String> {
    let mut taken: Vec<String> = command.get_arguments().filter_map(key_of).collect();
    taken.sort();
    let mut listed: Vec<String> = service.keys().iter().map(|k| (*k).to_owned()).collect();
    listed.sort();
    if taken == listed {
        return Ok(());
    }
    let missing: Vec<_> = taken.iter().filter(|k| !listed.contains(k)).collect();
    let extra: Vec<_> = listed.iter().filter(|k| !taken.contains(k)).collect();
    Err(format!(
        "hookstream-config's list of {} settings is out of date: add {missing:?}, remove {extra:?}",
        service.section()
    ))
}

static INGEST: &[&str] = &[
    "allow_http_endpoints",
    "allowed_destinations",
    "api_token",
    "console_dir",
    "console_frame_ancestors",
    "create_topics",
    "deliveries_partitions",
    "deliveries_retention",
    "dispatcher_group",
    "dlq_retention",
    "dns_server",
    "http_addr",
    "http_body_timeout",
    "http_header_timeout",
    "http_max_body_bytes_in_flight",
    "http_max_concurrent_requests",
    "http_max_connections",
    "http_request_timeout",
    "idempotency_window",
    "ingest_ops_addr",
    "kafka_brokers",
    "kafka_produce_timeout",
    "kafka_properties",
    "lag_interval",
    "management_addr",
    "max_batch_body_bytes",
    "max_body_bytes",
    "max_endpoints_per_tenant",
    "max_fanout_bytes",
    "metrics_endpoint_labels",
    "metrics_tenant_labels",
    "min_insync_replicas",
    "outbox_grace",
    "replication_factor",
    "replay_group",
    "reseal_every",
    "retention",
    "retry_jitter",
    "retry_retention_margin",
    "retry_schedule",
    "retry_tier_group",
    "schema_registry_url",
    "secret_key",
    "secret_keys",
    "secret_overlap",
    "source_group",
    "source_tenant_attribute",
    "source_topics",
    "store",
    "tenant_burst",
    "tenant_max_concurrent_requests",
    "tenant_rate",
    "topic_prefix",
];
static DISPATCHER: &[&str] = &[
    "allow_http_endpoints",
    "allowed_destinations",
    "breaker_failures",
    "breaker_open_for",
    "claim_lease",
    "create_topics",
    "deliveries_partitions",
    "deliveries_retention",
    "dispatcher_group",
    "dispatcher_ops_addr",
    "dlq_retention",
    "dns_errors_permanent",
    "dns_server",
    "drain_timeout",
    "health_disable_after",
    "health_disable_streak",
    "health_warn_min_attempts",
    "health_warn_streak",
    "health_warn_success_rate",
    "health_warn_window",
    "kafka_brokers",
    "kafka_produce_timeout",
    "kafka_properties",
    "lag_interval",
    "max_in_flight",
    "max_in_flight_bytes",
    "max_lane_wait",
    "max_queued_per_endpoint",
    "metrics_endpoint_labels",
    "metrics_tenant_labels",
    "min_insync_replicas",
    "replication_factor",
    "request_timeout",
    "response_snippet_bytes",
    "retention",
    "retry_jitter",
    "retry_retention_margin",
    "retry_schedule",
    "secret_key",
    "secret_keys",
    "store",
    "tls_errors_permanent",
    "topic_prefix",
];
static RETRY_TIER: &[&str] = &[
    "create_topics",
    "deliveries_partitions",
    "deliveries_retention",
    "dlq_retention",
    "kafka_brokers",
    "kafka_produce_timeout",
    "kafka_properties",
    "lag_interval",
    "metrics_endpoint_labels",
    "metrics_tenant_labels",
    "min_insync_replicas",
    "replication_factor",
    "retry_jitter",
    "retry_read_ahead",
    "retry_read_ahead_bytes",
    "retry_retention_margin",
    "retry_schedule",
    "retry_tier_group",
    "retry_tier_ops_addr",
    "topic_prefix",
];
static REPLAY: &[&str] = &[
    "create_topics",
    "deliveries_partitions",
    "deliveries_retention",
    "dlq_retention",
    "kafka_brokers",
    "kafka_produce_timeout",
    "kafka_properties",
    "lag_interval",
    "metrics_endpoint_labels",
    "metrics_tenant_labels",
    "min_insync_replicas",
    "replay_group",
    "replay_ops_addr",
    "replay_rate",
    "replication_factor",
    "retention",
    "retry_retention_margin",
    "secret_key",
    "secret_keys",
    "store",
    "topic_prefix",
];
