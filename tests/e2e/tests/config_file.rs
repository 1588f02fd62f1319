//! One TOML configuration file for every service: a running pipeline takes a setting from it,
//! the environment and flags override it, `--print-config` shows the effective settings with
//! secrets redacted, and a bad file stops each service with its file, line and key.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, binary};

const SERVICES: [&str; 4] = [
    "hookstream-ingest",
    "hookstream-dispatcher",
    "hookstream-retry-tier",
    "hookstream-replay",
];

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs a service binary to its exit with only `env` set (none of the test's environment).
async fn run(service: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(binary(service))
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{service} {args:?} did not exit within 30 s"))
    .unwrap_or_else(|e| panic!("{service} did not start: {e}"));
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("the file written");
    path.to_str().expect("a UTF-8 path").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_dispatcher_takes_its_section_of_the_shared_file() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    // The harness sets most settings in the environment (which wins over the file); the
    // snippet length it leaves alone, so the dispatcher can only have it from the file.
    let config = write(
        dir.path(),
        "hookstream.toml",
        "response_snippet_bytes = 4096\n\n[dispatcher]\nresponse_snippet_bytes = 7\n\n\
         [ingest]\nmax_endpoints_per_tenant = 50\n",
    );
    let pipeline = Pipeline::start(&[("HOOKSTREAM_CONFIG", &config)]).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(400, "unknown field `order`");
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;

    let sent = pipeline
        .api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    assert_eq!(sent.status, 202, "{:?}", sent.body);
    let event_id = sent.body["id"].as_str().expect("an event id");
    let deliveries = pipeline
        .api
        .settled_deliveries(event_id, Duration::from_secs(60))
        .await;
    assert_eq!(deliveries.len(), 1);
    let attempts = pipeline
        .api
        .attempts(deliveries[0]["id"].as_str().expect("a delivery id"))
        .await;
    assert_eq!(attempts.len(), 1, "a 400 is not retried");
    assert_eq!(
        attempts[0]["response_snippet"], "unknown",
        "the snippet is cut at the file's 7 bytes (the section wins over the top)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_the_environment_which_overrides_the_file_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = write(
        dir.path(),
        "hookstream.toml",
        "topic_prefix = \"from-file.\"\nretry_schedule = [\"5s\", \"1m\", \"2h\"]\n\
         api_token = \"file-token-123\"\nstore = \"scylla://app:db-password@10.0.0.1:9042/hs\"\n\
         kafka_properties = \"sasl.password=hunter2,client.id=hs\"\n\
         [retry_tier]\nretry_read_ahead = \"3s\"\n",
    );
    for service in SERVICES {
        let printed = run(
            service,
            &[
                "--config",
                &config,
                "--print-config",
                "--lag-interval",
                "9s",
            ],
            &[("HOOKSTREAM_KAFKA_BROKERS", "env-broker:9092")],
        )
        .await;
        assert_eq!(printed.code, Some(0), "{service}: {}", printed.stderr);
        let out = &printed.stdout;
        for secret in ["file-token-123", "db-password", "hunter2"] {
            assert!(!out.contains(secret), "{service} printed a secret:\n{out}");
        }
        let expect = |line: &str| {
            assert!(
                out.lines().any(|l| l == line),
                "{service}: no `{line}` in\n{out}"
            )
        };
        expect(&format!("topic_prefix = \"from-file.\"  # file {config}:1"));
        expect("kafka_brokers = \"env-broker:9092\"  # environment HOOKSTREAM_KAFKA_BROKERS");
        expect("lag_interval = \"9s\"  # flag");
        expect(&format!(
            "kafka_properties = \"sasl.password=<redacted>,client.id=hs\"  # file {config}:5"
        ));
        match service {
            "hookstream-ingest" => {
                expect(&format!("api_token = \"<redacted>\"  # file {config}:3"));
                expect(&format!(
                    "store = \"scylla://app:redacted@10.0.0.1:9042/hs\"  # file {config}:4"
                ));
            }
            "hookstream-retry-tier" => {
                expect(&format!("retry_read_ahead = \"3s\"  # file {config}:7"));
                expect(&format!("retry_schedule = \"5s,1m,2h\"  # file {config}:2"));
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_stops_every_service_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let bad = write(
        dir.path(),
        "bad.toml",
        "kafka_brokers = \"127.0.0.1:9092\"\nlag_interval = \"0s\"\ntopic_prefx = \"x.\"\n",
    );
    let unparsable = write(dir.path(), "broken.toml", "topic_prefix = \"x.\n");
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().expect("a UTF-8 path");
    for service in SERVICES {
        let refused = run(service, &["--config", &bad], &[]).await;
        assert_eq!(refused.code, Some(2), "{service}: {}", refused.stderr);
        assert!(
            refused.stderr.contains(&format!(
                "{bad}:2: `lag_interval`: `0s` is zero; this setting needs a duration above zero"
            )) && refused.stderr.contains(&format!(
                "{bad}:3: unknown setting `topic_prefx` (did you mean `topic_prefix`?)"
            )),
            "{service}: {}",
            refused.stderr
        );

        // The same file given by the environment.
        let refused = run(service, &[], &[("HOOKSTREAM_CONFIG", &unparsable)]).await;
        assert_eq!(refused.code, Some(2), "{service}: {}", refused.stderr);
        assert!(
            refused.stderr.contains(&format!("{unparsable}:1:")),
            "{service}: {}",
            refused.stderr
        );

        let refused = run(service, &["--config", missing], &[]).await;
        assert_eq!(refused.code, Some(2), "{service}: {}", refused.stderr);
        assert!(
            refused
                .stderr
                .contains(&format!("cannot read the configuration file {missing}")),
            "{service}: {}",
            refused.stderr
        );
    }
}

/// The dispatchers and the retry tier must agree on the retry tiers: a retry written to a tier
/// no retry tier reads would wait out the topic's retention and be deleted. The retry tier
/// reads every tier topic there is and records them; a dispatcher whose schedule has a tier it
/// does not read stops before joining its group. And every service with the store must have
/// the topic prefix the store records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_given_settings_that_would_lose_webhooks_refuse_to_start() {
    use hookstream_e2e::{Scripted, Service};

    // The retry tier recorded the pipeline's tiers, 300ms, 600ms and 1s.
    let mut pipeline = Pipeline::start(&[]).await;

    // A dispatcher given a delay the retry tier does not read (it creates the tier's topic
    // on its way, as the topics Job would).
    pipeline.set_env("HOOKSTREAM_RETRY_SCHEDULE", Some("300ms,2s"));
    let refused = pipeline.run_to_exit_failing("hookstream-dispatcher").await;
    assert!(
        refused.contains("write retries to tier(s) 2s")
            && refused.contains("Restart the retry tier"),
        "{refused}"
    );

    // A delay removed from the retry tier's schedule: restarted with 300ms alone (and the 1s
    // hold tier, always read), it still reads the 600ms tier (its topic exists), and the 2s
    // one, so a retry the running dispatcher writes to the 600ms tier comes back and is
    // delivered.
    pipeline.set_env("HOOKSTREAM_RETRY_SCHEDULE", Some("300ms"));
    pipeline.stop_service(Service::RetryTier).await;
    pipeline.start_service(Service::RetryTier).await;
    pipeline.set_env("HOOKSTREAM_RETRY_SCHEDULE", None);
    let receiver = Receiver::start().await;
    receiver.script(vec![Scripted::status(500), Scripted::status(500)]);
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    let sent = pipeline
        .api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    assert_eq!(sent.status, 202, "{:?}", sent.body);
    let event_id = sent.body["id"].as_str().expect("an event id");
    let deliveries = pipeline
        .api
        .settled_deliveries(event_id, Duration::from_secs(60))
        .await;
    assert_eq!(deliveries[0]["status"], "delivered");
    assert_eq!(
        deliveries[0]["attempts"], 3,
        "two retries, the second through the 600ms tier"
    );

    // Another topic prefix on the same store: tasks would go to topics no dispatcher reads.
    pipeline.set_env("HOOKSTREAM_TOPIC_PREFIX", Some("other."));
    for service in [
        "hookstream-ingest",
        "hookstream-dispatcher",
        "hookstream-replay",
    ] {
        let refused = pipeline.run_to_exit_failing(service).await;
        assert!(
            refused.contains("the installation whose topic prefix is `hookstream.`")
                && refused.contains("this service was given `other.`"),
            "{service}: {refused}"
        );
    }
}
