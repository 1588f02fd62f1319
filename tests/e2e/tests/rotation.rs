//! Secret rotation: during the overlap both the new and the old secret sign every webhook
//! (checked with the reference Standard Webhooks library), afterwards only the new one. And the
//! key that seals the secrets at rest rotates, service by service, while webhooks go on.

use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{
    Pipeline, Receiver, Service, eventually, seed, sum, verify_with_reference_library,
};

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_keeps_signing_until_its_overlap_ends() {
    let pipeline = Pipeline::start(&[]).await;
    let api = &pipeline.api;
    let receiver = Receiver::start().await;
    let endpoint = api.create_endpoint("acme", &receiver.url, &[]).await;
    let id = endpoint["id"].as_str().expect("an id").to_owned();
    let old = endpoint["secret"].as_str().expect("a secret").to_owned();

    let rotated = api
        .call("POST", &format!("/v1/endpoints/{id}/secret/rotate"), None)
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let new = rotated.body["secret"]
        .as_str()
        .expect("the new secret")
        .to_owned();
    assert_ne!(new, old);
    assert!(rotated.body["previous_secret_expires_at"].is_string());
    let read = api.call("GET", &format!("/v1/endpoints/{id}"), None).await;
    assert!(
        read.body.get("secret").is_none(),
        "a secret is not part of the endpoint"
    );
    let revealed = api
        .call("GET", &format!("/v1/endpoints/{id}/secret"), None)
        .await;
    assert_eq!(
        revealed.body["secret"],
        new.as_str(),
        "unless the admin asks for it"
    );
    assert_eq!(revealed.body["previous_secret"], old.as_str());

    api.send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    let webhooks = receiver.wait_for(1, SETTLE).await;
    let during = &webhooks[0];
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);
    verify_with_reference_library(&[(during, new.as_str()), (during, old.as_str())]);

    // A rotation with no overlap: from now on only the newest secret signs.
    let rotated = api
        .call(
            "POST",
            &format!("/v1/endpoints/{id}/secret/rotate"),
            Some(json!({"overlap": "0s"})),
        )
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let newest = rotated.body["secret"]
        .as_str()
        .expect("the newest secret")
        .to_owned();
    api.send_event("acme", "order.created", json!({"n": 2}), None)
        .await;
    let webhooks = receiver.wait_for(2, SETTLE).await;
    let after = &webhooks[1];
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    verify_with_reference_library(&[(after, newest.as_str())]);
    assert!(
        !after.signature_verifies(&new),
        "the retired secret no longer signs"
    );
    assert!(!after.signature_verifies(&old));

    let bad = api
        .call(
            "POST",
            &format!("/v1/endpoints/{id}/secret/rotate"),
            Some(json!({"overlap": "forever"})),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["field"], "overlap");
    let missing = api
        .call(
            "POST",
            "/v1/endpoints/ep_01ARZ3NDEKTSV4RRFFQ69G5FAV/secret/rotate",
            None,
        )
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(receiver.received().len(), 2, "one webhook per event");
}

/// The stored forms of every endpoint's current secret, read from the embedded store's file.
fn stored_secrets(pipeline: &Pipeline) -> Vec<String> {
    let db = rusqlite::Connection::open(pipeline.store_path()).expect("the store's file");
    let mut read = db
        .prepare("SELECT secret FROM endpoints")
        .expect("the endpoints table");
    read.query_map([], |row| row.get(0))
        .expect("a query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Restarts ingest and the dispatcher, one after the other, with the environment as set now.
async fn roll(pipeline: &mut Pipeline) {
    for service in [Service::Ingest, Service::Dispatcher] {
        pipeline.stop_service(service).await;
        pipeline.start_service(service).await;
    }
}

/// Waits for a re-sealing pass of ingest that found `secrets` secrets, all under `key` (and
/// that key sealing), and none under any other key or none.
async fn all_sealed_under(pipeline: &Pipeline, key: &str, secrets: f64) {
    eventually("every secret under the sealing key", SETTLE, || async {
        let metrics = pipeline.metrics_of(Service::Ingest).await;
        let under = |key: &str| {
            sum(
                &metrics,
                "hookstream_sealed_secrets_by_key",
                &format!("key=\"{key}\""),
            )
        };
        let current = sum(&metrics, "hookstream_sealed_secrets", "state=\"current\"")?;
        let all_keys = sum(&metrics, "hookstream_sealed_secrets_by_key", "")?;
        let sealing = sum(
            &metrics,
            "hookstream_sealing_key_info",
            &format!("key=\"{key}\""),
        )?;
        (sealing == 1.0 && current == secrets && under(key)? == secrets && all_keys == secrets)
            .then_some(())
    })
    .await;
}

/// Issue 24, item 4: the key sealing signing secrets at rest is rotated the documented way,
/// one service at a time, while webhooks are sent: from the single key to a ring holding it,
/// then to a new key first, then without the old key. Every webhook is signed with both of
/// the endpoint's secrets (it is in a secret rotation's overlap: the previous secret is
/// re-sealed too) throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sealing_key_rotates_service_by_service_while_webhooks_go_on() {
    const NEW_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_RESEAL_EVERY", "200ms")]).await;
    let receiver = Receiver::start().await;
    let endpoint = pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    let id = endpoint["id"].as_str().expect("an id").to_owned();
    let previous = endpoint["secret"].as_str().expect("a secret").to_owned();
    let rotated = pipeline
        .api
        .call("POST", &format!("/v1/endpoints/{id}/secret/rotate"), None)
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let secret = rotated.body["secret"]
        .as_str()
        .expect("the new secret")
        .to_owned();
    let mut sent = 0;
    let mut send_and_check = async |pipeline: &Pipeline| {
        sent += 1;
        let answer = pipeline
            .api
            .send_event("acme", "order.created", json!({"n": sent}), None)
            .await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        let webhooks = receiver.wait_for(sent, SETTLE).await;
        let webhook = &webhooks[sent - 1];
        verify_with_reference_library(&[(webhook, secret.as_str()), (webhook, previous.as_str())]);
    };
    send_and_check(&pipeline).await;
    all_sealed_under(&pipeline, "unnamed", 2.0).await;
    assert!(stored_secrets(&pipeline)[0].starts_with("enc:v1:"));

    // One: a ring with the same key under an id, the new key after it. Ingest goes first and
    // re-seals with the key id while the dispatcher still has the single key, which opens it.
    pipeline.set_env("HOOKSTREAM_SECRET_KEY", None);
    let step_one = format!("2026-06={},2026-12={NEW_KEY}", seed::SECRET_KEY);
    pipeline.set_env("HOOKSTREAM_SECRET_KEYS", Some(&step_one));
    pipeline.stop_service(Service::Ingest).await;
    pipeline.start_service(Service::Ingest).await;
    all_sealed_under(&pipeline, "2026-06", 2.0).await;
    assert!(stored_secrets(&pipeline)[0].starts_with("enc:v2:2026-06:"));
    send_and_check(&pipeline).await;
    pipeline.stop_service(Service::Dispatcher).await;
    pipeline.start_service(Service::Dispatcher).await;
    send_and_check(&pipeline).await;

    // Two: the new key first. Ingest re-seals under it; the dispatcher, still on step one,
    // opens it.
    let step_two = format!("2026-12={NEW_KEY},2026-06={}", seed::SECRET_KEY);
    pipeline.set_env("HOOKSTREAM_SECRET_KEYS", Some(&step_two));
    pipeline.stop_service(Service::Ingest).await;
    pipeline.start_service(Service::Ingest).await;
    all_sealed_under(&pipeline, "2026-12", 2.0).await;
    assert!(stored_secrets(&pipeline)[0].starts_with("enc:v2:2026-12:"));
    send_and_check(&pipeline).await;
    pipeline.stop_service(Service::Dispatcher).await;
    pipeline.start_service(Service::Dispatcher).await;
    let dispatcher = pipeline.metrics_of(Service::Dispatcher).await;
    assert_eq!(
        sum(
            &dispatcher,
            "hookstream_sealing_key_info",
            "key=\"2026-12\""
        ),
        Some(1.0),
        "every service shows the key it seals with"
    );

    // Three: the old key removed everywhere. Old secrets open, and new endpoints seal under
    // the new key.
    pipeline.set_env(
        "HOOKSTREAM_SECRET_KEYS",
        Some(&format!("2026-12={NEW_KEY}")),
    );
    roll(&mut pipeline).await;
    send_and_check(&pipeline).await;
    let second = Receiver::start().await;
    let created = pipeline
        .api
        .create_endpoint("globex", &second.url, &[])
        .await;
    let stored = stored_secrets(&pipeline);
    assert!(
        stored.iter().all(|s| s.starts_with("enc:v2:2026-12:")),
        "{stored:?}"
    );
    pipeline
        .api
        .send_event("globex", "order.created", json!({"n": 1}), None)
        .await;
    let webhook = second.wait_for(1, SETTLE).await;
    verify_with_reference_library(&[(&webhook[0], created["secret"].as_str().expect("a secret"))]);
    all_sealed_under(&pipeline, "2026-12", 3.0).await;
    assert_eq!(receiver.received().len(), sent, "one webhook per event");

    // Both variables at once, or a ring that does not parse: the service does not start, and
    // says why without printing the key.
    pipeline.set_env("HOOKSTREAM_SECRET_KEY", Some(seed::SECRET_KEY));
    let both = pipeline.run_to_exit_failing("hookstream-ingest").await;
    assert!(both.contains("set one of them"), "{both}");
    pipeline.set_env("HOOKSTREAM_SECRET_KEY", None);
    pipeline.set_env("HOOKSTREAM_SECRET_KEYS", Some(NEW_KEY));
    let bad = pipeline.run_to_exit_failing("hookstream-ingest").await;
    assert!(bad.contains("HOOKSTREAM_SECRET_KEYS (entry 1)"), "{bad}");
    assert!(
        !bad.contains(&NEW_KEY[..20]),
        "the key is not printed: {bad}"
    );
}
