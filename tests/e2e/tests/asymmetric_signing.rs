//! Asymmetric signatures (Standard Webhooks `v1a`, ed25519): an endpoint created or rotated
//! with `"signing": "ed25519"` gets webhooks its receiver verifies with the public key alone,
//! checked by code Hookstream did not write (the README's verifiers, on Python's `cryptography`
//! and Node's `crypto`), and the secret key never leaves the store, not even for the admin.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{
    Pipeline, Receiver, verify_v1a_with_cryptography, verify_with_reference_library,
};

const SETTLE: Duration = Duration::from_secs(60);

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/verify")
}

fn public_key_of(endpoint: &Value) -> String {
    let key = endpoint["public_key"].as_str().expect("a public key");
    assert!(key.starts_with("whpk_"), "{key}");
    key.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ed25519_endpoint_is_verified_with_its_public_key_alone() {
    let pipeline = Pipeline::start(&[]).await;
    let api = &pipeline.api;
    let receiver = Receiver::start().await;
    let created = api
        .call(
            "POST",
            "/v1/endpoints",
            Some(json!({"tenant": "acme", "url": receiver.url, "signing": "ed25519"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["signing"], "ed25519");
    assert!(
        created.body.get("secret").is_none(),
        "the secret key never leaves: {}",
        created.body
    );
    let public_key = public_key_of(&created.body);
    let id = created.body["id"].as_str().expect("an id").to_owned();
    let read = api.call("GET", &format!("/v1/endpoints/{id}"), None).await;
    assert_eq!(
        read.body["public_key"],
        public_key.as_str(),
        "shown on every read"
    );

    api.send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    let webhooks = receiver.wait_for(1, SETTLE).await;
    let signature = webhooks[0].header("webhook-signature");
    assert!(
        signature.starts_with("v1a,") && !signature.contains(' '),
        "{signature}"
    );
    verify_v1a_with_cryptography(&[(&webhooks[0], public_key.as_str())]);

    // Bad input names the field.
    let bad = api
        .call(
            "POST",
            "/v1/endpoints",
            Some(json!({"tenant": "acme", "url": receiver.url, "signing": "rsa"})),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.body["field"], "signing");
    let hmac = api.create_endpoint("acme", &receiver.url, &[]).await;
    assert_eq!(hmac["signing"], "hmac-sha256", "the default stays HMAC");
    assert!(hmac["public_key"].is_null());
    assert!(hmac["secret"].as_str().unwrap_or("").starts_with("whsec_"));
}

/// Moving an endpoint from HMAC to ed25519 by a rotation: during the overlap each webhook
/// carries both a `v1` and a `v1a` signature, so receivers switch at their own pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_to_ed25519_signs_with_both_schemes_during_the_overlap() {
    let pipeline = Pipeline::start(&[]).await;
    let api = &pipeline.api;
    let receiver = Receiver::start().await;
    let endpoint = api.create_endpoint("acme", &receiver.url, &[]).await;
    let id = endpoint["id"].as_str().expect("an id").to_owned();
    let old = endpoint["secret"].as_str().expect("a secret").to_owned();

    let rotate = format!("/v1/endpoints/{id}/secret/rotate");
    let refused = api
        .call("POST", &rotate, Some(json!({"signing": "v1a"})))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.body["field"], "signing");
    let rotated = api
        .call("POST", &rotate, Some(json!({"signing": "ed25519"})))
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["signing"], "ed25519");
    assert!(rotated.body.get("secret").is_none(), "{}", rotated.body);
    let public_key = public_key_of(&rotated.body);
    assert!(rotated.body["previous_public_key"].is_null(), "HMAC before");

    api.send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    let webhooks = receiver.wait_for(1, SETTLE).await;
    let during = &webhooks[0];
    let signature = during.header("webhook-signature");
    assert!(
        signature.contains("v1,") && signature.contains("v1a,"),
        "{signature}"
    );
    verify_with_reference_library(&[(during, old.as_str())]);
    verify_v1a_with_cryptography(&[(during, public_key.as_str())]);

    // Rotating again without naming a scheme keeps ed25519; with no overlap only it signs.
    let again = api
        .call("POST", &rotate, Some(json!({"overlap": "0s"})))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["signing"], "ed25519");
    assert_eq!(again.body["previous_public_key"], public_key.as_str());
    let newest = public_key_of(&again.body);
    assert_ne!(newest, public_key);
    let revealed = api
        .call("GET", &format!("/v1/endpoints/{id}/secret"), None)
        .await;
    assert_eq!(revealed.status, 200, "{}", revealed.body);
    assert!(
        revealed.body["secret"].is_null() && revealed.body["previous_secret"].is_null(),
        "not even the admin reads an ed25519 secret key: {}",
        revealed.body
    );
    assert_eq!(revealed.body["public_key"], newest.as_str());
    assert_eq!(revealed.body["previous_public_key"], public_key.as_str());

    api.send_event("acme", "order.created", json!({"n": 2}), None)
        .await;
    let webhooks = receiver.wait_for(2, SETTLE).await;
    let after = &webhooks[1];
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    verify_v1a_with_cryptography(&[(after, newest.as_str())]);

    // And back to HMAC: its secret is shown again, once.
    let back = api
        .call("POST", &rotate, Some(json!({"signing": "hmac-sha256"})))
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.body["signing"], "hmac-sha256");
    assert!(back.body["public_key"].is_null());
    assert_eq!(back.body["previous_public_key"], newest.as_str());
    let hmac = back.body["secret"].as_str().expect("the new HMAC secret");
    api.send_event("acme", "order.created", json!({"n": 3}), None)
        .await;
    let webhooks = receiver.wait_for(3, SETTLE).await;
    let back_again = &webhooks[2];
    verify_with_reference_library(&[(back_again, hmac)]);
    verify_v1a_with_cryptography(&[(back_again, newest.as_str())]);
    assert_eq!(receiver.received().len(), 3, "one webhook per event");
}

/// The README's verifiers, in Python and in JavaScript, verify the published vector (signed by
/// Python's `cryptography`; the signing crate's tests check Hookstream signs the same bytes),
/// and refuse it changed or late. The README shows each verifier as it is in docs/verify.
#[test]
fn the_readme_verifiers_check_the_published_vector() {
    let vector = docs().join("ed25519-vector.json");
    for (program, script) in [("python3", "verify_v1a.py"), ("node", "verify_v1a.mjs")] {
        let output = Command::new(program)
            .arg(docs().join(script))
            .arg(&vector)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            output.status.success(),
            "{script}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let readme = std::fs::read_to_string(docs().join("../../README.md")).expect("the README");
    for (script, start) in [
        ("verify_v1a.py", "def verify_v1a"),
        ("verify_v1a.mjs", "export function verifyV1a"),
    ] {
        let text = std::fs::read_to_string(docs().join(script)).expect("the verifier");
        let function = top_level_block(&text, start);
        assert!(function.lines().count() > 10, "{script}: {function}");
        assert!(
            readme.contains(&function),
            "the README shows {script}'s function as it is:\n{function}"
        );
    }
}

/// The lines from the one starting with `start` up to the next line that begins at column 0
/// (a JavaScript function's closing brace is kept, a Python block ends before it).
fn top_level_block(text: &str, start: &str) -> String {
    let mut lines = text.lines().skip_while(|line| !line.starts_with(start));
    let mut block: Vec<&str> = lines.next().into_iter().collect();
    for line in lines {
        if line.starts_with('}') {
            block.push(line);
            break;
        }
        if !line.is_empty() && !line.starts_with(' ') {
            break;
        }
        block.push(line);
    }
    while block.last().is_some_and(|line| line.is_empty()) {
        block.pop();
    }
    block.join("\n") + "\n"
}
