use std::time::Duration;

/// How to reach Kafka and how Hookstream's topics are laid out. Shared by every service.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaSettings {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(
        long = "kafka-brokers",
        env = "HOOKSTREAM_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// Prefix of every topic Hookstream creates and uses (`<prefix>deliveries`, ...).
    #[arg(long, env = "HOOKSTREAM_TOPIC_PREFIX", default_value = "hookstream.")]
    pub topic_prefix: String,

    /// Partitions of the deliveries topic when Hookstream creates it. Upper bound on how many
    /// dispatcher instances share the work; an existing topic keeps its count.
    #[arg(long, env = "HOOKSTREAM_DELIVERIES_PARTITIONS", default_value_t = 8)]
    pub deliveries_partitions: i32,

    /// Replication factor of the topics Hookstream creates (3 in production; 1 on one machine).
    #[arg(long, env = "HOOKSTREAM_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: i32,

    /// `min.insync.replicas` of the topics Hookstream creates: how many replicas must have a
    /// record before the broker acknowledges it (producers use acks=all). Default: one less
    /// than the replication factor, at least 1 (2 with replication 3).
    #[arg(long, env = "HOOKSTREAM_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<i32>,

    /// How long the deliveries topic (and the ingest rejected topic) keeps records
    /// (`retention.ms`). Bounds how long a dispatcher outage can last before tasks are lost.
    #[arg(long, env = "HOOKSTREAM_DELIVERIES_RETENTION", default_value = "7d", value_parser = humantime_duration)]
    pub deliveries_retention: Duration,

    /// A retry tier topic keeps a task for its delay plus this margin, so a retry tier that is
    /// down for less than the margin loses nothing (`retry.24h` keeps 8 days by default).
    #[arg(long, env = "HOOKSTREAM_RETRY_RETENTION_MARGIN", default_value = "7d", value_parser = humantime_duration)]
    pub retry_retention_margin: Duration,

    /// How long the dead-letter topic keeps records: the replay service must index a dead
    /// letter within this time, so it covers the longest replay outage you plan for.
    #[arg(long, env = "HOOKSTREAM_DLQ_RETENTION", default_value = "30d", value_parser = humantime_duration)]
    pub dlq_retention: Duration,

    /// Create missing topics at start-up. Turn off where topics are managed outside
    /// Hookstream (the services then expect them to exist).
    #[arg(long, env = "HOOKSTREAM_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,

    /// Extra librdkafka client properties, `key=value` separated by commas
    /// (e.g. `security.protocol=ssl,ssl.ca.location=/etc/ca.pem`). Applied last.
    #[arg(long, env = "HOOKSTREAM_KAFKA_PROPERTIES", default_value = "", value_parser = parse_properties)]
    pub properties: Properties,

    /// How long a produce may take before the request fails (librdkafka `message.timeout.ms`).
    #[arg(long, env = "HOOKSTREAM_KAFKA_PRODUCE_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub produce_timeout: Duration,
}

/// The shortest retention a topic may be given: anything shorter deletes tasks that a brief
/// outage leaves waiting.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);

impl KafkaSettings {
    /// The `min.insync.replicas` of the topics Hookstream creates.
    pub fn min_insync_replicas(&self) -> i32 {
        self.min_insync_replicas
            .unwrap_or(self.replication_factor - 1)
            .max(1)
    }

    /// Refuses topic settings that would lose tasks or refuse every write, naming the setting.
    pub fn check_topic_settings(&self) -> Result<(), String> {
        let (replication, min_insync) = (self.replication_factor, self.min_insync_replicas());
        if self.deliveries_partitions < 1 {
            return Err("HOOKSTREAM_DELIVERIES_PARTITIONS must be at least 1".into());
        }
        if replication < 1 {
            return Err("HOOKSTREAM_REPLICATION_FACTOR must be at least 1".into());
        }
        if min_insync > replication {
            return Err(format!(
                "HOOKSTREAM_MIN_INSYNC_REPLICAS ({min_insync}) is more than \
                 HOOKSTREAM_REPLICATION_FACTOR ({replication}): every write would be refused"
            ));
        }
        for (name, value) in [
            ("HOOKSTREAM_DELIVERIES_RETENTION", self.deliveries_retention),
            (
                "HOOKSTREAM_RETRY_RETENTION_MARGIN",
                self.retry_retention_margin,
            ),
            ("HOOKSTREAM_DLQ_RETENTION", self.dlq_retention),
        ] {
            if value < MIN_RETENTION {
                return Err(format!(
                    "{name} ({value:?}) is under {MIN_RETENTION:?}: tasks waiting through a \
                     short outage would be deleted"
                ));
            }
        }
        Ok(())
    }
}

/// Extra librdkafka properties given in configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(pub Vec<(String, String)>);

fn parse_properties(text: &str) -> Result<Properties, String> {
    let mut out = Vec::new();
    for (n, pair) in text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        // The entry is not echoed: it may be part of a password that holds a comma.
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("entry {} is not key=value", n + 1))?;
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(Properties(out))
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// Parses a duration in humantime's syntax, the one every Hookstream duration is written in:
/// `250ms`, `5s`, `2m`, `1h`, `7d`, `1h 30m`. A number needs its unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = humantime::parse_duration(text).map_err(|err| {
        format!("`{text}` is not a duration such as 500ms, 10s, 5m, 1h or 7d: {err}")
    })?;
    // Past this a setting is a typo, and adding it to a date would overflow.
    if duration.as_secs_f64() > MAX_SETTING_SECONDS {
        return Err(format!(
            "`{text}` is longer than ten years; no setting needs that"
        ));
    }
    Ok(duration)
}

/// Like [`parse_duration`], but refuses zero (and anything under a millisecond, the finest
/// grain timers and Kafka take): for intervals and timeouts, where zero would make a timer
/// panic, every request fail at once, or librdkafka never time out.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!(
            "`{}` is zero; this setting needs a duration above zero",
            text.trim()
        ));
    }
    if duration < Duration::from_millis(1) {
        return Err(format!(
            "`{}` is under a millisecond; this setting needs at least 1ms",
            text.trim()
        ));
    }
    Ok(duration)
}

/// The longest duration a setting takes: ten years.
const MAX_SETTING_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// Settings parsed from command-line words, as a service would parse them (for tests).
#[cfg(test)]
pub(crate) fn parse_for_test(args: &[&str]) -> KafkaSettings {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaSettings,
    }
    let mut argv = vec!["test"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).expect("valid settings").kafka
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_as_key_value_pairs() {
        assert_eq!(parse_properties("").unwrap(), Properties::default());
        assert_eq!(
            parse_properties("a=1, b.c = x=y").unwrap().0,
            vec![("a".into(), "1".into()), ("b.c".into(), "x=y".into())]
        );
        assert!(parse_properties("novalue").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert!(
            parse_duration("999999999999d").is_err(),
            "a duration that would overflow a date is refused"
        );
        assert!(parse_duration("3650d").is_ok());
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert!(parse_duration("10").is_err(), "a number needs its unit");
        assert_eq!(
            parse_duration("1h 30m").unwrap(),
            Duration::from_secs(90 * 60)
        );
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_duration("72h").unwrap(),
            Duration::from_secs(72 * 3600)
        );
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 fortnights").is_err());
    }

    #[test]
    fn intervals_refuse_zero() {
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        for zero in ["0s", "0ms", " 0m ", "0d"] {
            let refused = parse_positive_duration(zero).unwrap_err();
            assert!(refused.contains("zero"), "{zero}: {refused}");
        }
        assert_eq!(
            parse_positive_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert!(parse_positive_duration("ten").is_err());
        assert!(
            parse_positive_duration("500us")
                .unwrap_err()
                .contains("under a millisecond")
        );
    }
}
