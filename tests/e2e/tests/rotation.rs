//! Secret rotation: during the overlap both the new and the old secret sign every webhook
//! (checked with the reference Standard Webhooks library), afterwards only the new one.

use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, verify_with_reference_library};

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
