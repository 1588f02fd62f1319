//! The Helm chart, with the real Helm engine: `helm/tests/chart_test.py` renders helm/hookstream
//! for the default values and a production-like values file, lints it, validates every object
//! against the Kubernetes schemas, and checks that bad values are refused with a clear message.

use std::path::Path;
use std::process::Command;

#[test]
fn the_chart_renders_lints_and_validates_for_default_and_production_values() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rendered = tempfile::tempdir().expect("a folder for the rendered configuration files");
    let output = Command::new("python3")
        .arg(repository.join("helm/tests/chart_test.py"))
        .env("CHART_TEST_CONFIG_DIR", rendered.path())
        .output()
        .expect("python3 (helm-python-sdk and kubernetes-validate: `make tools` installs them)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "chart test failed:\n{printed}");
    assert!(printed.contains("default: 17 objects"), "{printed}");
    assert!(printed.contains("production: 25 objects"), "{printed}");

    // Every service takes the file the chart renders, as its pods are given it (with the
    // secrets from the environment), and reads its own section.
    for values in ["default", "production"] {
        let file = rendered.path().join(format!("{values}.toml"));
        let file = file.to_str().expect("a UTF-8 path");
        for service in [
            "hookstream-ingest",
            "hookstream-dispatcher",
            "hookstream-retry-tier",
            "hookstream-replay",
        ] {
            let output = Command::new(hookstream_e2e::binary(service))
                .args(["--config", file, "--print-config"])
                .env_clear()
                .env("HOOKSTREAM_API_TOKEN", "a-long-admin-token-for-tests")
                .output()
                .expect("the service binary ran");
            let shown = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{service} refused the chart's {values} file:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                shown.contains(&format!("# file {file}:")),
                "{service} took nothing from the {values} file:\n{shown}"
            );
            if values == "production" && service == "hookstream-dispatcher" {
                assert!(
                    shown
                        .lines()
                        .any(|l| l.starts_with("max_in_flight = \"2000\"  # file")),
                    "{shown}"
                );
            }
            if values == "production" && service == "hookstream-ingest" {
                assert!(
                    shown
                        .lines()
                        .any(|l| l.starts_with("tenant_rate = \"500\"  # file")),
                    "{shown}"
                );
            }
        }
    }
}

/// The chart's topic Job runs `hookstream-dispatcher --create-topics-and-exit true`: it creates
/// the delivery path's topics and exits without needing the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topic_job_command_creates_the_topics_and_exits_without_a_store() {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let broker = hookstream_e2e::Broker::start().await;
    let status = tokio::process::Command::new(hookstream_e2e::binary("hookstream-dispatcher"))
        .args(["--create-topics-and-exit", "true"])
        .env_clear()
        .env("HOOKSTREAM_KAFKA_BROKERS", &broker.address)
        .env("HOOKSTREAM_TOPIC_PREFIX", "job.")
        .env("HOOKSTREAM_RETRY_SCHEDULE", "5s,1m")
        // Nothing listens here: the command must not try to open the store.
        .env("HOOKSTREAM_STORE", "scylla://127.0.0.1:1/nowhere")
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), status)
        .await
        .expect("the topic job exits within 60 s")
        .expect("the dispatcher binary ran");
    assert!(status.success(), "{status}");

    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .expect("a metadata client");
    let address = broker.address.clone();
    let topics = tokio::task::spawn_blocking(move || {
        let metadata = client
            .fetch_metadata(None, std::time::Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata from {address}: {e}"));
        let mut names: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|n| n.starts_with("job."))
            .collect();
        names.sort();
        names
    })
    .await
    .expect("metadata task");
    // The schedule's two tiers, the 1 s hold tier of paused endpoints, the quarantine, the
    // schemas, the operational events and the settings services agree on.
    assert_eq!(
        topics,
        [
            "job.deliveries",
            "job.dlq",
            "job.ops-events",
            "job.quarantine",
            "job.retry.1m",
            "job.retry.1s",
            "job.retry.5s",
            "job.schemas",
            "job.settings"
        ]
    );
}
