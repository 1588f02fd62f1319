//! Tenant API keys end to end: the admin creates a key per tenant; each key sees and changes
//! only its own tenant's endpoints, events, deliveries, dead letters and batches (another
//! tenant's ids answer 404 on every route, other tenants named in a request answer 403); admin
//! routes refuse tenant keys; a revoked or forged key authenticates nothing.

use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{Answer, Api, Pipeline, Receiver, Service, eventually};

const SETTLE: Duration = Duration::from_secs(60);

/// Creates a key for `tenant` with the admin token; returns its id and the key.
async fn create_key(admin: &Api, tenant: &str, name: &str) -> (String, String) {
    let answer = admin
        .call(
            "POST",
            &format!("/v1/tenants/{tenant}/api-keys"),
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(answer.status, 201, "creating a key: {:?}", answer.body);
    assert_eq!(answer.body["tenant"], tenant);
    let key = answer.body["key"].as_str().expect("the key, shown once");
    assert!(key.starts_with("hsk_"), "{key}");
    let id = answer.body["id"].as_str().expect("a key id");
    (id.to_owned(), key.to_owned())
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` in {value}"))
}

/// Ids of everything one tenant has: an endpoint, a dead-lettered delivery and a batch.
struct Owned {
    endpoint: String,
    delivery: String,
    batch: String,
}

/// Through `api` (acme's key): an endpoint that refuses everything for good, an event that
/// dead-letters there, and a dry-run batch over it.
async fn acme_resources(api: &Api, receiver: &Receiver) -> Owned {
    receiver.respond_with(400, "no such customer");
    let endpoint = api
        .create_endpoint("acme", &receiver.url, &["order.created"])
        .await;
    let endpoint = str_of(&endpoint, "id").to_owned();
    let sent = api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    assert_eq!(sent.status, 202, "{:?}", sent.body);
    let delivery = eventually("the dead letter to be listed", SETTLE, || async {
        let answer = api.call("GET", "/v1/dead-letters", None).await;
        answer.body["data"]
            .as_array()
            .and_then(|d| d.first())
            .map(|d| str_of(d, "delivery_id").to_owned())
    })
    .await;
    let batch = api
        .call(
            "POST",
            "/v1/batches",
            Some(json!({"filter": {}, "dry_run": true})),
        )
        .await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);
    assert_eq!(batch.body["tenant"], "acme");
    assert_eq!(batch.body["count"], 1);
    Owned {
        endpoint,
        delivery,
        batch: str_of(&batch.body, "id").to_owned(),
    }
}

/// Every route that names one of a tenant's resources by id, with what its owner gets. The
/// owner's calls run in this order, so the delete comes last.
fn routes_by_id(o: &Owned) -> Vec<(&'static str, String, Option<Value>, u16)> {
    let (ep, dlv, bat) = (&o.endpoint, &o.delivery, &o.batch);
    vec![
        ("GET", format!("/v1/endpoints/{ep}"), None, 200),
        ("GET", format!("/v1/endpoints/{ep}/health"), None, 200),
        (
            "PATCH",
            format!("/v1/endpoints/{ep}"),
            Some(json!({"max_attempts": 3})),
            200,
        ),
        ("POST", format!("/v1/endpoints/{ep}/pause"), None, 200),
        ("POST", format!("/v1/endpoints/{ep}/resume"), None, 200),
        (
            "POST",
            format!("/v1/endpoints/{ep}/secret/rotate"),
            Some(json!({"overlap": "0s"})),
            200,
        ),
        (
            "POST",
            format!("/v1/endpoints/{ep}/recover"),
            Some(json!({"since": "2020-01-01T00:00:00Z", "dry_run": true})),
            200,
        ),
        ("GET", format!("/v1/deliveries/{dlv}"), None, 200),
        ("GET", format!("/v1/deliveries/{dlv}/attempts"), None, 200),
        (
            "POST",
            format!("/v1/deliveries/{dlv}/resend"),
            Some(json!({"dry_run": true})),
            200,
        ),
        ("GET", format!("/v1/dead-letters/{dlv}"), None, 200),
        ("GET", format!("/v1/batches/{bat}"), None, 200),
        ("GET", format!("/v1/batches/{bat}/items"), None, 200),
        ("POST", format!("/v1/batches/{bat}/cancel"), None, 200),
        ("DELETE", format!("/v1/endpoints/{ep}"), None, 204),
    ]
}

/// Routes only the admin token may use, each answering 403 to a tenant key.
fn admin_routes(endpoint: &str) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", format!("/v1/endpoints/{endpoint}/secret"), None),
        ("GET", "/v1/control".into(), None),
        ("POST", "/v1/control/pause".into(), None),
        ("POST", "/v1/control/resume".into(), None),
        ("POST", "/v1/tenants/acme/api-keys".into(), Some(json!({}))),
        ("GET", "/v1/tenants/acme/api-keys".into(), None),
        (
            "DELETE",
            "/v1/tenants/acme/api-keys/key_01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            None,
        ),
    ]
}

/// Requests naming another tenant in a body or query, each answering 403 to a tenant key.
fn other_tenant_requests() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        (
            "POST",
            "/v1/endpoints",
            Some(json!({"tenant": "acme", "url": "https://example.com/hook"})),
        ),
        ("GET", "/v1/endpoints?tenant=acme", None),
        (
            "POST",
            "/v1/events",
            Some(json!({"tenant": "acme", "type": "order.created", "payload": {}})),
        ),
        ("GET", "/v1/deliveries?tenant=acme", None),
        ("GET", "/v1/dead-letters?tenant=acme", None),
        ("GET", "/v1/batches?tenant=acme", None),
        (
            "POST",
            "/v1/batches",
            Some(json!({"filter": {"tenant": "acme"}, "dry_run": true})),
        ),
    ]
}

fn list_len(answer: &Answer) -> usize {
    answer.body["data"].as_array().map_or(usize::MAX, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_key_sees_and_changes_only_its_own_tenant() {
    let mut pipeline = Pipeline::start(&[]).await;
    pipeline.start_service(Service::Replay).await;
    let admin = pipeline.api.clone();
    let (_, acme_key) = create_key(&admin, "acme", "acme ci").await;
    let (_, globex_key) = create_key(&admin, "globex", "globex ci").await;
    let acme = Api::new(admin.base.clone(), &acme_key);
    let globex = Api::new(admin.base.clone(), &globex_key);

    let receiver = Receiver::start().await;
    let owned = acme_resources(&acme, &receiver).await;
    let cross_tenant = admin
        .call(
            "POST",
            "/v1/batches",
            Some(json!({"filter": {}, "dry_run": true})),
        )
        .await;
    assert_eq!(cross_tenant.status, 200, "{:?}", cross_tenant.body);
    assert_eq!(cross_tenant.body["tenant"], Value::Null);
    assert_eq!(cross_tenant.body["created_by"], "admin");

    // Another tenant's ids do not exist for globex, on every route.
    let routes = routes_by_id(&owned);
    for (method, path, body, _) in &routes {
        let answer = globex.call(method, path, body.clone()).await;
        assert_eq!(
            answer.status, 404,
            "globex {method} {path}: {:?}",
            answer.body
        );
    }
    let admin_batch = format!("/v1/batches/{}", str_of(&cross_tenant.body, "id"));
    assert_eq!(acme.call("GET", &admin_batch, None).await.status, 404);

    // Naming acme does not help globex; its lists hold nothing of acme's.
    for (method, path, body) in other_tenant_requests() {
        let answer = globex.call(method, path, body).await;
        assert_eq!(
            answer.status, 403,
            "globex {method} {path}: {:?}",
            answer.body
        );
    }
    let batch_of_events = globex
        .call(
            "POST",
            "/v1/events:batch",
            Some(json!({"events": [
                {"tenant": "acme", "type": "order.created", "payload": {}},
                {"tenant": "globex", "type": "order.created", "payload": {}},
            ]})),
        )
        .await;
    assert_eq!(batch_of_events.status, 200, "{:?}", batch_of_events.body);
    assert_eq!(batch_of_events.body["results"][0]["status"], 403);
    assert_eq!(batch_of_events.body["results"][1]["status"], 202);
    for path in [
        "/v1/endpoints",
        "/v1/deliveries",
        "/v1/dead-letters",
        "/v1/batches",
    ] {
        let answer = globex.call("GET", path, None).await;
        assert_eq!(answer.status, 200, "globex GET {path}: {:?}", answer.body);
        assert_eq!(list_len(&answer), 0, "globex GET {path}: {:?}", answer.body);
    }
    let named = globex
        .call(
            "POST",
            "/v1/batches",
            Some(json!({"delivery_ids": [owned.delivery], "dry_run": true})),
        )
        .await;
    assert_eq!(named.status, 400, "{:?}", named.body);
    assert_eq!(named.body["field"], "delivery_ids");

    // Admin routes are the admin's.
    for (method, path, body) in admin_routes(&owned.endpoint) {
        let answer = acme.call(method, &path, body).await;
        assert_eq!(
            answer.status, 403,
            "acme {method} {path}: {:?}",
            answer.body
        );
    }

    // The owner gets what the routes are for, and its lists hold its own.
    for path in ["/v1/deliveries", "/v1/dead-letters", "/v1/batches"] {
        let answer = acme.call("GET", path, None).await;
        assert_eq!(list_len(&answer), 1, "acme GET {path}: {:?}", answer.body);
    }
    for (method, path, body, status) in &routes {
        let answer = acme.call(method, path, body.clone()).await;
        assert_eq!(
            answer.status, *status,
            "acme {method} {path}: {:?}",
            answer.body
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_or_forged_key_authenticates_nothing() {
    let pipeline = Pipeline::start(&[]).await;
    let admin = pipeline.api.clone();
    let (id, key) = create_key(&admin, "acme", "to revoke").await;
    let (_, kept) = create_key(&admin, "acme", "to keep").await;
    let acme = Api::new(admin.base.clone(), &key);
    assert_eq!(acme.call("GET", "/v1/endpoints", None).await.status, 200);

    // The listing shows both keys but neither key's text.
    let listed = admin.call("GET", "/v1/tenants/acme/api-keys", None).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(list_len(&listed), 2);
    assert!(!listed.body.to_string().contains(&key));
    assert!(listed.body["data"][0].get("key").is_none());

    // A key is revoked only through its own tenant.
    let wrong = admin
        .call("DELETE", &format!("/v1/tenants/globex/api-keys/{id}"), None)
        .await;
    assert_eq!(wrong.status, 404, "{:?}", wrong.body);
    let revoked = admin
        .call("DELETE", &format!("/v1/tenants/acme/api-keys/{id}"), None)
        .await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    assert!(revoked.body["revoked_at"].is_string());

    let refused = acme.call("GET", "/v1/endpoints", None).await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    assert_eq!(refused.content_type, "application/problem+json");
    let live = Api::new(admin.base.clone(), &kept);
    assert_eq!(live.call("GET", "/v1/endpoints", None).await.status, 200);

    // A live key's id with another secret is no key.
    let (body, last) = kept.split_at(kept.len() - 1);
    let forged = format!("{body}{}", if last == "x" { "y" } else { "x" });
    let answer = Api::new(admin.base.clone(), &forged)
        .call("GET", "/v1/endpoints", None)
        .await;
    assert_eq!(answer.status, 401);
}
