//! The web console, served by a real pipeline's ingest at `/console` and driven in a real
//! browser: Debian's Chromium through Playwright (`console/tests/browser.mjs`, which signs in,
//! creates an endpoint, follows a delivery, forces a failure, dry-runs and replays the dead
//! letter, and checks a tenant key sees only its tenant). Here: the pipeline, the console's
//! files as served (no token needed, a strict content security policy), what a portal link
//! may and may not do on every kind of route, and the browser run.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Api, Pipeline, Service, TOKEN};

/// The browser run's bound: its own waits are 60 s each, the whole run takes well under this.
const BROWSER_RUN: Duration = Duration::from_secs(300);

fn console_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../console")
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let console = console_dir();
    let dist = console.join("dist");
    assert!(
        dist.join("index.html").is_file() && console.join("node_modules/playwright-core").is_dir(),
        "the console is not built in {}: run `make console` (`make test` does)",
        console.display()
    );
    let dist_text = dist.to_string_lossy().into_owned();
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_CONSOLE_DIR", dist_text.as_str())]).await;
    pipeline.start_service(Service::Replay).await;
    let base = pipeline.api.base.clone();

    // The app's files need no token (they hold no data), and forbid what the app never does.
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{base}/console/"))
        .send()
        .await
        .expect("GET /console/");
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("a policy")
        .to_owned();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"),
        "{policy}"
    );
    assert!(
        page.text()
            .await
            .expect("the page")
            .contains("/console/app.js")
    );
    let script = http
        .get(format!("{base}/console/app.js"))
        .send()
        .await
        .expect("GET /console/app.js");
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.contains("javascript")),
        "{:?}",
        script.headers()
    );
    let missing = http
        .get(format!("{base}/console/no-such-file.js"))
        .send()
        .await
        .expect("GET a missing file");
    assert_eq!(missing.status(), 404);
    // The API beside it still wants its token.
    let api = http
        .get(format!("{base}/v1/whoami"))
        .send()
        .await
        .expect("GET /v1/whoami");
    assert_eq!(api.status(), 401);

    portal_links_act_for_their_tenant_alone(&pipeline.api).await;
    queues_show_each_topic_of_the_delivery_path(&pipeline.api).await;

    let mut browser = tokio::process::Command::new("node");
    browser
        .arg("tests/browser.mjs")
        .current_dir(&console)
        .env("HOOKSTREAM_API_URL", &base)
        .env("HOOKSTREAM_API_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let run = tokio::time::timeout(BROWSER_RUN, browser.output())
        .await
        .expect("the browser run finishes within its bound")
        .expect("node runs (installed by `make tools`)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "the browser test failed:\n{said}\n--- ingest log ---\n{}",
        pipeline.log_tail(Service::Ingest)
    );
    assert!(said.contains("console browser test passed"), "{said}");
}

/// A portal link, at the API: its tenant's management routes, as a tenant key; no events, no
/// admin routes; its id in what it creates; an altered link refused saying so.
async fn portal_links_act_for_their_tenant_alone(admin: &Api) {
    let issued = admin
        .call(
            "POST",
            "/v1/tenants/acme/portal-links",
            Some(json!({"expires_in": 600})),
        )
        .await;
    assert_eq!(issued.status, 201, "{:?}", issued.body);
    let token = issued.body["token"].as_str().expect("a token").to_owned();
    let link_id = issued.body["id"].as_str().expect("a link id").to_owned();
    assert!(
        token.starts_with("hsp_") && link_id.starts_with("pl_"),
        "{:?}",
        issued.body
    );
    assert_eq!(
        issued.body["path"].as_str(),
        Some(format!("/console/#portal={token}").as_str())
    );
    let call = |method: &'static str, path: String, body: Option<serde_json::Value>| {
        let (admin, token) = (admin.clone(), token.clone());
        async move {
            admin
                .raw(
                    method,
                    &path,
                    body.map(|b| b.to_string().into_bytes()),
                    Some(&token),
                )
                .await
        }
    };

    let me = call("GET", "/v1/whoami".into(), None).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["role"], "portal");
    assert_eq!(me.body["tenant"], "acme");
    assert_eq!(me.body["key_id"], format!("portal:{link_id}"));

    // Its tenant's management routes, as a tenant key would.
    let endpoint = call(
        "POST",
        "/v1/endpoints".into(),
        Some(json!({"tenant": "acme", "url": "http://127.0.0.1:9/hooks"})),
    )
    .await;
    assert_eq!(endpoint.status, 201, "{:?}", endpoint.body);
    let batch = call(
        "POST",
        "/v1/batches".into(),
        Some(json!({"filter": {}, "dry_run": true})),
    )
    .await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);
    assert_eq!(batch.body["tenant"], "acme");
    assert_eq!(batch.body["created_by"], format!("portal:{link_id}"));

    // Nothing of another tenant's, no events, no admin routes.
    let foreign = call(
        "POST",
        "/v1/endpoints".into(),
        Some(json!({"tenant": "globex", "url": "http://127.0.0.1:9/hooks"})),
    )
    .await;
    assert_eq!(foreign.status, 403, "{:?}", foreign.body);
    let event = json!({"tenant": "acme", "type": "order.created", "payload": {}});
    let id = endpoint.body["id"].as_str().expect("an endpoint id");
    for (method, path, body) in [
        ("POST", "/v1/events".to_owned(), Some(event.clone())),
        (
            "POST",
            "/v1/events:batch".to_owned(),
            Some(json!({"events": [event]})),
        ),
        ("GET", "/v1/control".to_owned(), None),
        ("GET", "/v1/queues".to_owned(), None),
        ("POST", "/v1/control/pause".to_owned(), None),
        ("GET", format!("/v1/endpoints/{id}/secret"), None),
        ("GET", "/v1/tenants/acme/api-keys".to_owned(), None),
        (
            "POST",
            "/v1/tenants/acme/api-keys".to_owned(),
            Some(json!({})),
        ),
        (
            "POST",
            "/v1/tenants/acme/portal-links".to_owned(),
            Some(json!({})),
        ),
        (
            "DELETE",
            format!("/v1/tenants/acme/portal-links/{link_id}"),
            None,
        ),
    ] {
        let answer = call(method, path.clone(), body).await;
        assert_eq!(answer.status, 403, "{method} {path}: {:?}", answer.body);
    }

    // An altered link (one character of its claims changed): 401, saying it is not valid.
    let mut altered = token.clone().into_bytes();
    altered[8] = if altered[8] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).expect("ASCII");
    let refused = admin.raw("GET", "/v1/whoami", None, Some(&altered)).await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("portal link is not valid")),
        "{:?}",
        refused.body
    );
    let deleted = admin
        .call("DELETE", &format!("/v1/endpoints/{id}"), None)
        .await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);

    // Revoked before it expires: 401 from then on, saying so; another link still works; a
    // second revocation changes nothing; a malformed id is refused.
    let other = admin
        .call("POST", "/v1/tenants/acme/portal-links", None)
        .await;
    assert_eq!(other.status, 201, "{:?}", other.body);
    let revoke = format!("/v1/tenants/acme/portal-links/{link_id}");
    for _ in 0..2 {
        let revoked = admin.call("DELETE", &revoke, None).await;
        assert_eq!(revoked.status, 204, "{:?}", revoked.body);
    }
    let refused = call("GET", "/v1/whoami".into(), None).await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("portal link was revoked")),
        "{:?}",
        refused.body
    );
    let still = admin
        .raw("GET", "/v1/whoami", None, other.body["token"].as_str())
        .await;
    assert_eq!(still.status, 200, "{:?}", still.body);
    let malformed = admin
        .call("DELETE", "/v1/tenants/acme/portal-links/pl_short", None)
        .await;
    assert_eq!(malformed.status, 400, "{:?}", malformed.body);
    assert_eq!(malformed.body["field"], "id", "{:?}", malformed.body);
}

/// `GET /v1/queues`: the deliveries topic, each retry tier's and the dead-letter topic, each
/// with its readers' group and a depth read from the broker.
async fn queues_show_each_topic_of_the_delivery_path(admin: &Api) {
    let answer = admin.call("GET", "/v1/queues", None).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let queues = answer.body["data"].as_array().expect("a list");
    let by_topic = |topic: &str| {
        queues
            .iter()
            .find(|q| q["topic"] == topic)
            .unwrap_or_else(|| panic!("{topic} in {queues:?}"))
    };
    let deliveries = by_topic("hookstream.deliveries");
    assert_eq!(deliveries["kind"], "deliveries");
    assert_eq!(deliveries["group"], "hookstream-dispatcher");
    assert_eq!(deliveries["partitions"], 4, "{deliveries}");
    assert!(
        deliveries["lag"].is_i64() && deliveries["error"].is_null(),
        "{deliveries}"
    );
    // The test pipeline's schedule (300ms, 600ms, 1s) and the hold tier (1s).
    for tier in ["300ms", "600ms", "1s"] {
        let retry = by_topic(&format!("hookstream.retry.{tier}"));
        assert_eq!(retry["kind"], "retry");
        assert_eq!(retry["group"], "hookstream-retry-tier");
    }
    assert_eq!(by_topic("hookstream.dlq")["group"], "hookstream-replay");
    assert_eq!(queues.len(), 5, "{queues:?}");
}
