//! Configuration pieces shared by several services, flattened into each service's own config.

use std::sync::{Arc, LazyLock};

use hookstream_model::retry::{RetryPolicy, parse_schedule};
use hookstream_store::{SecretSealer, Store, StoreError, StoreLocation};

/// Where the store lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreSettings {
    /// The store: `sqlite://PATH` for the embedded store (one machine; every service of the
    /// machine must name the same file), or
    /// `scylla://HOST[:PORT][,HOST…]/KEYSPACE[?replication_factor=N]` for ScyllaDB.
    #[arg(
        long = "store",
        env = "HOOKSTREAM_STORE",
        default_value = "sqlite://.hookstream/store.db"
    )]
    pub location: String,

    /// How long ScyllaDB keeps deliveries, attempts and events (written with this TTL).
    #[arg(
        long = "retention",
        env = "HOOKSTREAM_RETENTION",
        default_value = "30d",
        value_parser = parse_retention
    )]
    pub retention: std::time::Duration,

    /// The key that seals endpoint signing secrets at rest (AES-256-GCM): 32 random bytes,
    /// base64 (`openssl rand -base64 32`). Every service of an installation needs the same key.
    /// Without it secrets are stored in plain text.
    #[arg(
        long = "secret-key",
        env = "HOOKSTREAM_SECRET_KEY",
        hide_env_values = true
    )]
    pub secret_key: Option<SecretKey>,

    /// A ring of sealing keys, `id=key,id=key,…` (each key as for `HOOKSTREAM_SECRET_KEY`,
    /// ids of letters, digits, `.`, `_` or `-`), instead of the single key: the first key
    /// seals, every key opens, and secrets sealed under the others are re-sealed in the
    /// background. This is how the key is rotated (see the README).
    #[arg(
        long = "secret-keys",
        env = "HOOKSTREAM_SECRET_KEYS",
        hide_env_values = true
    )]
    pub secret_keys: Option<SecretKey>,

    /// Seal, at start-up, the secrets stored in plain text before the key was set (with the
    /// key, plain text is otherwise refused). Set it for one start after first setting the key
    /// on every service; never leave it on, as it would seal a planted secret.
    #[arg(
        long = "seal-plain-secrets",
        env = "HOOKSTREAM_SEAL_PLAIN_SECRETS",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub seal_plain_secrets: bool,
}

/// The key this service seals signing secrets with (`key="unnamed"` for the single key), so a
/// rotation can check every service took its step.
static SEALING_KEY: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "hookstream_sealing_key_info",
        "1, labelled with the id of the key this service seals signing secrets with (unnamed: HOOKSTREAM_SECRET_KEY; no series without a key).",
        &["key"]
    )
    .expect("metric registers once")
});

/// A key from configuration; `Debug` never shows it, so it cannot reach a log.
#[derive(Clone)]
pub struct SecretKey(String);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl std::str::FromStr for SecretKey {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl StoreSettings {
    pub async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        let given = |key: &Option<SecretKey>| {
            key.as_ref()
                .map(|key| key.0.trim().to_owned())
                .filter(|key| !key.is_empty())
        };
        let sealer = match (given(&self.secret_key), given(&self.secret_keys)) {
            (Some(_), Some(_)) => {
                return Err(StoreError::InvalidLocation {
                    location: "HOOKSTREAM_SECRET_KEY and HOOKSTREAM_SECRET_KEYS".into(),
                    reason: "set one of them: the single key, or the key ring (which may hold \
                             the single key under an id)"
                        .into(),
                });
            }
            (Some(key), None) => SecretSealer::from_base64_key(&key)?,
            (None, Some(ring)) => {
                let ring = SecretSealer::from_key_ring(&ring)?;
                tracing::info!(
                    key = ring.sealing_key_id().unwrap_or_default(),
                    "signing secrets are sealed under this key of HOOKSTREAM_SECRET_KEYS"
                );
                ring
            }
            (None, None) => {
                tracing::warn!(
                    "no HOOKSTREAM_SECRET_KEY: signing secrets are stored in plain text"
                );
                SecretSealer::plaintext()
            }
        };
        if sealer.seals() {
            let key = sealer
                .sealing_key_id()
                .unwrap_or(hookstream_store::UNNAMED_KEY);
            SEALING_KEY.reset();
            SEALING_KEY.with_label_values(&[key]).set(1);
        }
        let sealer = if self.seal_plain_secrets {
            sealer.sealing_plain_secrets_on_open()
        } else {
            sealer
        };
        hookstream_store::open(
            &StoreLocation::parse(&self.location)?,
            self.retention,
            sealer,
        )
        .await
    }
}

/// A retention such as `30d` or `72h`: at least an hour, or rows would be gone while their
/// deliveries are still being tried.
fn parse_retention(text: &str) -> Result<std::time::Duration, String> {
    let retention = hookstream_kafka::parse_duration(text)?;
    if retention < std::time::Duration::from_secs(3600) {
        return Err(format!(
            "`{}` is under an hour; a retention needs at least 1h",
            text.trim()
        ));
    }
    Ok(retention)
}

/// A parsed retry schedule: the delay before each retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<std::time::Duration>);

/// The retry schedule. The dispatcher and the retry tier must be given the same one: the
/// dispatcher writes to the tier topics it names, the retry tier consumes them.
#[derive(Debug, Clone, clap::Args)]
pub struct RetrySettings {
    /// Delays before each retry, comma-separated (`ms`, `s`, `m`, `h`). One Kafka topic per
    /// distinct delay (`<prefix>retry.<delay>`). A delivery gets one attempt plus one per delay.
    #[arg(
        long,
        env = "HOOKSTREAM_RETRY_SCHEDULE",
        default_value = "5s,30s,2m,10m,30m,1h,2h,4h,8h,16h,24h,24h",
        value_parser = |text: &str| parse_schedule(text).map(Schedule)
    )]
    pub retry_schedule: Schedule,

    /// Each delay is stretched or shrunk by a random fraction up to this (0 to 0.5), so that
    /// deliveries that failed together do not retry together.
    #[arg(long, env = "HOOKSTREAM_RETRY_JITTER", default_value_t = 0.2)]
    pub retry_jitter: f64,
}

impl RetrySettings {
    pub fn policy(&self) -> Result<RetryPolicy, hookstream_model::retry::PolicyError> {
        RetryPolicy::new(self.retry_schedule.0.clone(), self.retry_jitter)
    }
}

/// How much the metrics say: label limits and how often queue depth is read from the broker.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsSettings {
    /// How many endpoints get an `endpoint` label of their own in the metrics; the rest share
    /// `other`. 0 switches per-endpoint labels off (`all`).
    #[arg(
        long,
        env = "HOOKSTREAM_METRICS_ENDPOINT_LABELS",
        default_value_t = crate::labels::DEFAULT_LIMIT
    )]
    pub metrics_endpoint_labels: usize,

    /// How many tenants get a `tenant` label of their own; the rest share `other`. 0 switches
    /// the label off.
    #[arg(
        long,
        env = "HOOKSTREAM_METRICS_TENANT_LABELS",
        default_value_t = crate::labels::DEFAULT_LIMIT
    )]
    pub metrics_tenant_labels: usize,

    /// How often consumer lag (queue depth) is read from the broker.
    #[arg(
        long,
        env = "HOOKSTREAM_LAG_INTERVAL",
        default_value = "15s",
        value_parser = hookstream_kafka::parse_positive_duration
    )]
    pub lag_interval: std::time::Duration,
}

impl MetricsSettings {
    /// Applies the label limits; call once at start-up.
    pub fn install(&self) {
        crate::labels::install(self.metrics_endpoint_labels, self.metrics_tenant_labels);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_retention;

    #[test]
    fn retention_reads_any_duration_of_an_hour_or_more() {
        assert_eq!(parse_retention("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_retention("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(
            parse_retention("1w 2d"),
            Ok(Duration::from_secs(9 * 86_400))
        );
        for short in ["0d", "0s", "500ms", "59m"] {
            assert!(
                parse_retention(short)
                    .unwrap_err()
                    .contains("under an hour"),
                "{short}"
            );
        }
        assert!(parse_retention("xd").is_err());
        assert!(parse_retention("99999999999d").is_err(), "past ten years");
    }
}
