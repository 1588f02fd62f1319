//! The `hookstream` command line against a running pipeline: listing and inspecting dead
//! letters, a dry run and a watched replay, a delivery's attempts, pausing, JSON output and
//! exit codes.

use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{Pipeline, Receiver, Service, TOKEN, binary, eventually, free_port};

const SETTLE: Duration = Duration::from_secs(60);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

async fn hookstream(base: &str, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(binary("hookstream"))
        .args(args)
        .env_clear()
        .env("HOOKSTREAM_URL", base)
        .env("HOOKSTREAM_API_TOKEN", TOKEN)
        .output()
        .await
        .expect("running hookstream");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_find_dry_run_and_replay_dead_letters_from_the_command_line() {
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_REPLAY_RATE", "50")]).await;
    pipeline.start_service(Service::Replay).await;
    let base = pipeline.api.base.clone();
    let receiver = Receiver::start().await;
    receiver.respond_with(400, "no");
    let endpoint = pipeline
        .api
        .create_endpoint("acme", &receiver.url, &["order.created"])
        .await;
    let endpoint_id = endpoint["id"].as_str().expect("an endpoint id").to_owned();
    for n in 0..3 {
        let answer = pipeline
            .api
            .send_event("acme", "order.created", json!({"n": n}), None)
            .await;
        assert_eq!(answer.status, 202);
    }
    let listed = eventually("three dead letters", SETTLE, || async {
        let run = hookstream(
            &base,
            &["--json", "dead-letters", "list", "--endpoint", &endpoint_id],
        )
        .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let data = run.json()["data"].as_array().cloned().unwrap_or_default();
        (data.len() == 3).then_some(data)
    })
    .await;
    let dead_id = listed[0]["delivery_id"].as_str().expect("an id").to_owned();

    let text = hookstream(
        &base,
        &["dead-letters", "list", "--class", "HTTP_4XX_PERMANENT"],
    )
    .await;
    assert_eq!(text.code, 0);
    assert_eq!(text.stdout.lines().count(), 3, "{}", text.stdout);
    assert!(text.stdout.contains(&dead_id));
    let shown = hookstream(&base, &["--json", "dead-letters", "show", &dead_id]).await;
    assert_eq!(shown.json()["attempts"][0]["status_code"], 400);

    receiver.respond_with(200, "ok");
    let dry = hookstream(
        &base,
        &["--json", "replay", "--endpoint", &endpoint_id, "--dry-run"],
    )
    .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json()["count"], 3);

    // Without --no-watch the command follows the batch until it ends.
    let replay = hookstream(&base, &["--json", "replay", "--endpoint", &endpoint_id]).await;
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    let batch = replay.json();
    assert_eq!(batch["status"], "completed");
    assert_eq!(batch["counts"]["created"], 3);
    let batch_id = batch["id"].as_str().expect("a batch id").to_owned();
    let items = hookstream(&base, &["batch", "show", &batch_id, "--items"]).await;
    assert_eq!(
        items.stdout.matches("created ->").count(),
        3,
        "{}",
        items.stdout
    );

    let new_id = hookstream(&base, &["--json", "batch", "show", &batch_id, "--items"])
        .await
        .json()["items"][0]["delivery_id"]
        .as_str()
        .expect("a new delivery id")
        .to_owned();
    receiver.wait_for(6, SETTLE).await;
    let delivery = eventually("the replay to be delivered", SETTLE, || async {
        let run = hookstream(&base, &["--json", "delivery", &new_id]).await;
        let delivery = run.json();
        (delivery["status"] == "delivered").then_some(delivery)
    })
    .await;
    assert_eq!(delivery["attempt_log"][0]["status_code"], 200);

    let paused = hookstream(&base, &["--json", "pause"]).await;
    assert_eq!(paused.json()["sending_paused"], true);
    let resumed = hookstream(&base, &["resume"]).await;
    assert!(
        resumed.stdout.contains("paused=false"),
        "{}",
        resumed.stdout
    );

    let limited = hookstream(
        &base,
        &[
            "rate-limit",
            &endpoint_id,
            "--per-second",
            "2.5",
            "--burst",
            "4",
        ],
    )
    .await;
    assert!(
        limited.stdout.contains("at most 2.5 a second, bursts of 4"),
        "{}",
        limited.stdout
    );
    let lifted = hookstream(&base, &["--json", "rate-limit", &endpoint_id, "--off"]).await;
    assert!(lifted.json()["rate_limit"].is_null(), "{}", lifted.stdout);
    let too_fast = hookstream(&base, &["rate-limit", &endpoint_id, "--per-second", "1e9"]).await;
    assert_eq!(too_fast.code, 1);
    assert!(
        too_fast.stderr.contains("rate_limit.per_second"),
        "{}",
        too_fast.stderr
    );
    let neither = hookstream(&base, &["rate-limit", &endpoint_id]).await;
    assert_eq!(neither.code, 2, "{}", neither.stderr);

    let unordered = hookstream(
        &base,
        &["ordering", &endpoint_id, "none", "--max-in-flight", "16"],
    )
    .await;
    assert!(
        unordered
            .stdout
            .contains("no ordering, up to 16 requests at once"),
        "{}",
        unordered.stdout
    );
    let ordered = hookstream(&base, &["--json", "ordering", &endpoint_id, "partition"]).await;
    assert_eq!(
        ordered.json()["ordering"],
        "partition",
        "{}",
        ordered.stdout
    );
    assert_eq!(
        ordered.json()["max_in_flight"],
        16,
        "kept for the next `none`"
    );
    let too_many = hookstream(
        &base,
        &["ordering", &endpoint_id, "none", "--max-in-flight", "0"],
    )
    .await;
    assert_eq!(too_many.code, 1);
    assert!(
        too_many.stderr.contains("max_in_flight"),
        "{}",
        too_many.stderr
    );
    let strict = hookstream(
        &base,
        &[
            "ordering",
            &endpoint_id,
            "strict",
            "--on-dead-letter",
            "continue",
        ],
    )
    .await;
    assert_eq!(strict.code, 0, "{}", strict.stderr);
    assert!(
        strict.stdout.contains("strict ordering"),
        "{}",
        strict.stdout
    );
    assert!(strict.stdout.contains("continue"), "{}", strict.stdout);
    let sorted = hookstream(&base, &["ordering", &endpoint_id, "sorted"]).await;
    assert_eq!(sorted.code, 2, "{}", sorted.stderr);

    let batch_args = ["--max-events", "50", "--max-wait", "800ms"];
    let with_strict = hookstream(
        &base,
        &[&["batching", endpoint_id.as_str()][..], &batch_args[..]].concat(),
    )
    .await;
    assert_eq!(with_strict.code, 1, "{}", with_strict.stderr);
    assert!(
        with_strict.stderr.contains("batch"),
        "{}",
        with_strict.stderr
    );
    hookstream(&base, &["ordering", &endpoint_id, "partition"]).await;
    let batched = hookstream(
        &base,
        &[&["batching", endpoint_id.as_str()][..], &batch_args[..]].concat(),
    )
    .await;
    assert!(
        batched
            .stdout
            .contains("batches of up to 50 deliveries, each waiting at most 800ms"),
        "{}",
        batched.stdout
    );
    let unbatched = hookstream(&base, &["--json", "batching", &endpoint_id, "--off"]).await;
    assert!(unbatched.json()["batch"].is_null(), "{}", unbatched.stdout);
    let too_long = hookstream(
        &base,
        &[
            "batching",
            &endpoint_id,
            "--max-events",
            "5",
            "--max-wait",
            "1h",
        ],
    )
    .await;
    assert_eq!(too_long.code, 1);
    assert!(
        too_long.stderr.contains("batch.max_wait"),
        "{}",
        too_long.stderr
    );

    // Exit codes: refused, wrong usage, unreachable.
    let missing = hookstream(&base, &["batch", "show", "bat_01ARZ3NDEKTSV4RRFFQ69G5FAV"]).await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);
    let usage = hookstream(
        &base,
        &["replay", "--delivery", &dead_id, "--endpoint", &endpoint_id],
    )
    .await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let unreachable = hookstream(&nobody, &["batch", "list"]).await;
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    let help = hookstream(&base, &["--help"]).await;
    assert!(help.stdout.contains("Exit codes"), "{}", help.stdout);

    // The endpoint's health: its 400s, as JSON and as text.
    eventually("the endpoint's failures in its health", SETTLE, || async {
        let run = hookstream(&base, &["--json", "health", &endpoint_id]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let health = run.json();
        (health["last_failure"]["class"] == "HTTP_4XX_PERMANENT").then_some(())
    })
    .await;
    let text = hookstream(&base, &["health", &endpoint_id]).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    for expected in [
        &format!("endpoint {endpoint_id}: "),
        "last 5m",
        "last 1h",
        "failures in a row:",
        "HTTP_4XX_PERMANENT",
    ] {
        assert!(
            text.stdout.contains(expected),
            "{expected}: {}",
            text.stdout
        );
    }
}
