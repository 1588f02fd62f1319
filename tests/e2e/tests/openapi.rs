//! The OpenAPI document at `/v1/openapi.json`, built from the handlers: it describes every
//! route, and schemathesis (PyPI) drives the API with property-based inputs generated from it,
//! checking that no input gets a server error and that every answer matches the document.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{Answer, Api, Broker, DnsServer, Pipeline, Service, TOKEN};

/// Examples per operation in the coverage phase; the fuzzing phase goes on until the time
/// bound, which keeps the run to a few minutes on a 2-core machine.
const MAX_EXAMPLES: &str = "20";
/// The whole run's bound.
const MAX_SECONDS: u64 = 150;

/// Every route the API serves, as the document must name it.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/endpoints"),
    ("get", "/v1/endpoints"),
    ("get", "/v1/endpoints/{id}"),
    ("patch", "/v1/endpoints/{id}"),
    ("delete", "/v1/endpoints/{id}"),
    ("get", "/v1/endpoints/{id}/health"),
    ("post", "/v1/endpoints/{id}/pause"),
    ("post", "/v1/endpoints/{id}/resume"),
    ("post", "/v1/endpoints/{id}/recover"),
    ("get", "/v1/endpoints/{id}/secret"),
    ("post", "/v1/endpoints/{id}/secret/rotate"),
    ("post", "/v1/tenants/{tenant}/api-keys"),
    ("get", "/v1/tenants/{tenant}/api-keys"),
    ("delete", "/v1/tenants/{tenant}/api-keys/{id}"),
    ("post", "/v1/tenants/{tenant}/portal-links"),
    ("get", "/v1/whoami"),
    ("get", "/v1/queues"),
    ("get", "/v1/overview"),
    ("delete", "/v1/tenants/{tenant}/portal-links/{id}"),
    ("get", "/v1/control"),
    ("post", "/v1/control/pause"),
    ("post", "/v1/control/resume"),
    ("post", "/v1/events"),
    ("post", "/v1/events:batch"),
    ("get", "/v1/deliveries"),
    ("get", "/v1/deliveries/{id}"),
    ("get", "/v1/deliveries/{id}/attempts"),
    ("post", "/v1/deliveries/{id}/resend"),
    ("get", "/v1/dead-letters"),
    ("get", "/v1/dead-letters/{id}"),
    ("post", "/v1/batches"),
    ("get", "/v1/batches"),
    ("get", "/v1/batches/{id}"),
    ("get", "/v1/batches/{id}/items"),
    ("post", "/v1/batches/{id}/cancel"),
];

/// Ingest alone (nothing is sent anywhere), resolving names only through a DNS server on
/// 127.0.0.1 that knows none, so generated endpoint URLs lead nowhere.
async fn ingest_alone(dns: &DnsServer) -> Pipeline {
    let broker = Broker::start().await;
    let address = broker.address.clone();
    Pipeline::start_only(
        Some(broker),
        &address,
        &[("HOOKSTREAM_DNS_SERVER", dns.address.as_str())],
        &[Service::Ingest],
    )
    .await
}

async fn document(pipeline: &Pipeline) -> Value {
    // Served without a token: tools read it before they have one.
    let answer = pipeline
        .api
        .raw("GET", "/v1/openapi.json", None, None)
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_names_every_route_and_its_authentication() {
    let dns = DnsServer::start().await;
    let pipeline = ingest_alone(&dns).await;
    let doc = document(&pipeline).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item");
            methods
                .keys()
                .filter(|m| ["get", "post", "patch", "put", "delete"].contains(&m.as_str()))
                .map(|m| (m.clone(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());

    // Each documented route is served (with the admin token it never answers the fallback's
    // "route not found").
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{id}", "ep_01ARZ3NDEKTSV4RRFFQ69G5FAV")
            .replace("{tenant}", "acme");
        let answer = pipeline
            .api
            .raw(&method.to_uppercase(), &concrete, None, Some(TOKEN))
            .await;
        assert_ne!(
            answer.body["detail"], "route not found",
            "{method} {path} is documented but not served"
        );
    }
}

fn id_of(answer: &Answer) -> String {
    answer.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id in {:?}", answer.body))
        .to_owned()
}

/// Creates one of each resource and names their ids in a schemathesis config, so the operations
/// on `{id}` reach real resources (generated ids would nearly all answer 404). The endpoint
/// that `DELETE` removes is a second one, so the first stays for the other operations.
async fn config_with_live_ids(api: &Api) -> String {
    let endpoint = |path: &'static str| async move {
        let answer = api
            .call(
                "POST",
                "/v1/endpoints",
                Some(json!({"tenant": "acme", "url": format!("http://127.0.0.1:9/{path}")})),
            )
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        id_of(&answer)
    };
    let kept = endpoint("kept").await;
    let deleted = endpoint("deleted").await;
    let event = api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    assert_eq!(event.status, 202, "{:?}", event.body);
    let delivery = api.deliveries_of(&id_of(&event)).await[0]["id"]
        .as_str()
        .expect("a delivery id")
        .to_owned();
    let batch = api
        .call(
            "POST",
            "/v1/batches",
            Some(json!({"delivery_ids": [delivery], "dry_run": true})),
        )
        .await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);
    let key = api
        .call("POST", "/v1/tenants/acme/api-keys", Some(json!({})))
        .await;
    assert_eq!(key.status, 201, "{:?}", key.body);
    let link = api
        .call("POST", "/v1/tenants/acme/portal-links", Some(json!({})))
        .await;
    assert_eq!(link.status, 201, "{:?}", link.body);
    let (batch, key, link) = (id_of(&batch), id_of(&key), id_of(&link));
    let operation = |path: &str, method: &str, id: &str| {
        format!(
            "[[operations]]\ninclude-path = \"{path}\"\ninclude-method = \"{method}\"\n\
             parameters = {{ id = \"{id}\", tenant = \"acme\" }}\n\n"
        )
    };
    let mut config = String::new();
    for (method, path) in ROUTES.iter().filter(|(_, p)| p.contains("{id}")) {
        let id = match (*method, *path) {
            ("delete", "/v1/endpoints/{id}") => &deleted,
            (_, p) if p.starts_with("/v1/endpoints/") => &kept,
            (_, p) if p.starts_with("/v1/batches/") => &batch,
            (_, p) if p.contains("/portal-links/") => &link,
            (_, p) if p.starts_with("/v1/tenants/") => &key,
            _ => &delivery,
        };
        config.push_str(&operation(path, &method.to_uppercase(), id));
    }
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let dns = DnsServer::start().await;
    let pipeline = ingest_alone(&dns).await;
    let schema = format!("{}/v1/openapi.json", pipeline.api.base);
    let reports = tempfile::tempdir().expect("a folder for the report");
    // Schemathesis reads `schemathesis.toml` from where it runs.
    let config = config_with_live_ids(&pipeline.api).await;
    std::fs::write(reports.path().join("schemathesis.toml"), config).expect("writing the config");
    let run = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "run", &schema])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", "20261123"])
        .args(["--workers", "1", "--request-timeout", "10", "--no-color"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-time", &MAX_SECONDS.to_string()])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(reports.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(MAX_SECONDS + 60), run)
        .await
        .expect("schemathesis finishes within its time budget")
        .expect("schemathesis runs (make tools installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The summary, for the test log: what was run and how many cases.
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}\n--- ingest log ---\n{}",
        pipeline.log_tail(Service::Ingest)
    );
    // A run that tested nothing would also succeed.
    assert!(
        stdout.contains("passed") && !stdout.contains("No operations"),
        "{stdout}"
    );
}
