//! The first path end to end: an event goes in over HTTP and comes out as a signed webhook,
//! through a real broker, with real processes, talking only to the public API.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, Service, TOKEN, verify_with_reference_library};

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_get_exactly_the_events_they_subscribed_to_signed() {
    let pipeline = Pipeline::start(&[]).await;
    let orders = Receiver::start().await;
    let invoices = Receiver::start().await;
    let api = &pipeline.api;
    let orders_ep = api
        .create_endpoint("acme", &orders.url, &["order.created"])
        .await;
    let invoices_ep = api
        .create_endpoint("acme", &invoices.url, &["invoice.paid"])
        .await;
    // Another tenant's endpoint for the same type must get nothing of acme's.
    let other = Receiver::start().await;
    api.create_endpoint("globex", &other.url, &["*"]).await;

    let mut event_ids = Vec::new();
    for i in 0..3 {
        let answer = api
            .send_event("acme", "order.created", json!({"order": i}), None)
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        assert_eq!(answer.body["deliveries"], 1);
        event_ids.push(answer.body["id"].as_str().unwrap().to_owned());
    }
    for i in 0..2 {
        let answer = api
            .send_event("acme", "invoice.paid", json!({"invoice": i}), None)
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        event_ids.push(answer.body["id"].as_str().unwrap().to_owned());
    }
    // A type nobody subscribed to is accepted with no deliveries.
    let unheard = api
        .send_event("acme", "user.deleted", json!({}), None)
        .await;
    assert_eq!(unheard.status, 202);
    assert_eq!(unheard.body["deliveries"], 0);

    let mut delivery_ids = HashSet::new();
    for id in &event_ids {
        for delivery in api.settled_deliveries(id, SETTLE).await {
            assert_eq!(delivery["status"], "delivered", "{delivery}");
            delivery_ids.insert(delivery["id"].as_str().unwrap().to_owned());
        }
    }

    let got_orders = orders.wait_for(3, SETTLE).await;
    let got_invoices = invoices.wait_for(2, SETTLE).await;
    assert_eq!(got_orders.len(), 3, "each order event exactly once");
    assert_eq!(got_invoices.len(), 2, "each invoice event exactly once");
    assert!(
        other.received().is_empty(),
        "another tenant's endpoint got acme's events"
    );

    for (webhooks, endpoint, event_type) in [
        (&got_orders, &orders_ep, "order.created"),
        (&got_invoices, &invoices_ep, "invoice.paid"),
    ] {
        for webhook in webhooks.iter() {
            let body = webhook.json();
            assert_eq!(body["type"], event_type);
            assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
            assert!(body["data"].is_object());
            assert!(
                delivery_ids.contains(webhook.header("webhook-id")),
                "webhook-id is the delivery id"
            );
            assert!(
                webhook.signature_verifies(endpoint["secret"].as_str().unwrap()),
                "signature of {} does not verify",
                webhook.header("webhook-id")
            );
            assert_eq!(webhook.header("content-type"), "application/json");
            assert!(webhook.header("user-agent").starts_with("Hookstream/"));
        }
    }
    let mut order_numbers: Vec<i64> = got_orders
        .iter()
        .map(|w| w.json()["data"]["order"].as_i64().unwrap())
        .collect();
    order_numbers.sort();
    assert_eq!(order_numbers, vec![0, 1, 2]);

    // And by a verifier nobody here wrote.
    let orders_secret = orders_ep["secret"].as_str().unwrap();
    let invoices_secret = invoices_ep["secret"].as_str().unwrap();
    let signed: Vec<_> = got_orders
        .iter()
        .map(|w| (w, orders_secret))
        .chain(got_invoices.iter().map(|w| (w, invoices_secret)))
        .collect();
    verify_with_reference_library(&signed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_endpoint_does_not_delay_others_and_each_endpoint_keeps_its_order() {
    // One partition, so both endpoints' tasks share it.
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", "1"),
        ("HOOKSTREAM_REQUEST_TIMEOUT", "60s"),
    ])
    .await;
    let stuck = Receiver::start().await;
    stuck.hold();
    let fast = Receiver::start().await;
    let api = &pipeline.api;
    api.create_endpoint("acme", &stuck.url, &["slow.thing"])
        .await;
    api.create_endpoint("acme", &fast.url, &["fast.thing"])
        .await;

    // The stuck endpoint's task comes first on the partition.
    let slow = api
        .send_event("acme", "slow.thing", json!({"n": 0}), None)
        .await;
    assert_eq!(slow.status, 202);
    stuck.wait_for(1, SETTLE).await;
    for n in 0..10 {
        let answer = api
            .send_event("acme", "fast.thing", json!({"n": n}), None)
            .await;
        assert_eq!(answer.status, 202);
    }
    // All of the fast endpoint's webhooks arrive while the stuck one still has not answered.
    let got = fast.wait_for(10, SETTLE).await;
    assert_eq!(stuck.received().len(), 1);
    let order: Vec<i64> = got
        .iter()
        .map(|w| w.json()["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(
        order,
        (0..10).collect::<Vec<_>>(),
        "one endpoint's webhooks arrive in order"
    );

    // Released, the stuck endpoint's delivery completes too.
    stuck.release();
    let settled = api
        .settled_deliveries(slow.body["id"].as_str().unwrap(), SETTLE)
        .await;
    assert_eq!(settled[0]["status"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_repost_creates_nothing_new() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let api = &pipeline.api;
    api.create_endpoint("acme", &receiver.url, &[]).await;

    let first = api
        .send_event(
            "acme",
            "order.created",
            json!({"order": 1}),
            Some("order-1"),
        )
        .await;
    assert_eq!(first.status, 202);
    let id = first.body["id"].as_str().unwrap().to_owned();
    let again = api
        .send_event(
            "acme",
            "order.created",
            json!({"order": 1}),
            Some("order-1"),
        )
        .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(
        again.body["id"],
        id.as_str(),
        "the repeat answers with the original id"
    );

    // The same key with a different request is refused, not silently merged.
    let different = api
        .send_event(
            "acme",
            "order.created",
            json!({"order": 2}),
            Some("order-1"),
        )
        .await;
    assert_eq!(different.status, 409);
    assert_eq!(different.body["field"], "idempotency_key");

    // The same key for another tenant is a different event.
    let other_tenant = api
        .send_event(
            "globex",
            "order.created",
            json!({"order": 1}),
            Some("order-1"),
        )
        .await;
    assert_eq!(other_tenant.status, 202);
    assert_ne!(other_tenant.body["id"], id.as_str());

    let deliveries = api.settled_deliveries(&id, SETTLE).await;
    assert_eq!(deliveries.len(), 1);
    let webhooks = receiver.wait_for(1, SETTLE).await;
    // Delivery is at least once: under load an attempt may be sent again (same `webhook-id`,
    // which receivers deduplicate on). What the repeat must not make is a second webhook.
    let ids: HashSet<&str> = webhooks.iter().map(|w| w.header("webhook-id")).collect();
    assert_eq!(
        ids.len(),
        1,
        "the repeat created no second webhook: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_problems_and_change_nothing() {
    let pipeline = Pipeline::start(&[("HOOKSTREAM_MAX_BODY_BYTES", "2048")]).await;
    let api = &pipeline.api;
    let valid = json!({"tenant": "acme", "type": "order.created", "payload": {}}).to_string();

    // No token, wrong token.
    let none = api
        .raw("POST", "/v1/events", Some(valid.clone().into_bytes()), None)
        .await;
    assert_eq!(none.status, 401);
    assert_eq!(none.content_type, "application/problem+json");
    let wrong = api
        .raw(
            "POST",
            "/v1/events",
            Some(valid.clone().into_bytes()),
            Some("not-the-token"),
        )
        .await;
    assert_eq!(wrong.status, 401);

    // Malformed JSON, missing and invalid fields name the field.
    let malformed = api
        .raw(
            "POST",
            "/v1/events",
            Some(b"{\"tenant\": ".to_vec()),
            Some(TOKEN),
        )
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.body["field"], "body");
    assert_eq!(
        malformed.body["type"],
        "urn:hookstream:problem:invalid-request"
    );
    let missing = api
        .call(
            "POST",
            "/v1/events",
            Some(json!({"tenant": "acme", "payload": {}})),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["field"], "type");
    assert!(missing.body["detail"].as_str().unwrap().contains("type"));
    let bad_tenant = api
        .call(
            "POST",
            "/v1/events",
            Some(json!({"tenant": "a b", "type": "x", "payload": {}})),
        )
        .await;
    assert_eq!(bad_tenant.body["field"], "tenant");

    // Over the body limit.
    let big =
        json!({"tenant": "acme", "type": "order.created", "payload": {"blob": "x".repeat(4096)}});
    let too_large = api.call("POST", "/v1/events", Some(big)).await;
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.content_type, "application/problem+json");

    // Endpoints: internal destinations outside the allow-list, bad URLs, unknown ids.
    let internal = api
        .call(
            "POST",
            "/v1/endpoints",
            Some(json!({"tenant": "acme", "url": "http://10.1.2.3/hook"})),
        )
        .await;
    assert_eq!(internal.status, 400);
    assert_eq!(internal.body["field"], "url");
    let bad_types = api
        .call(
            "POST",
            "/v1/endpoints",
            Some(
                json!({"tenant": "acme", "url": "http://127.0.0.1:1/h", "event_types": ["ok", 5]}),
            ),
        )
        .await;
    assert_eq!(bad_types.body["field"], "event_types[1]");
    let unknown = api
        .call("GET", "/v1/endpoints/ep_01ARZ3NDEKTSV4RRFFQ69G5FAV", None)
        .await;
    assert_eq!(unknown.status, 404);
    let not_an_id = api.call("GET", "/v1/deliveries/whatever", None).await;
    assert_eq!(not_an_id.status, 404);
    let bad_filter = api.call("GET", "/v1/deliveries?status=lost", None).await;
    assert_eq!(bad_filter.body["field"], "status");

    // Nothing above created anything.
    let all = api.call("GET", "/v1/deliveries", None).await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 0);
    let endpoints = api.call("GET", "/v1/endpoints?tenant=acme", None).await;
    assert_eq!(endpoints.body["data"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_can_be_read_listed_updated_and_deleted() {
    let pipeline = Pipeline::start(&[]).await;
    let api = &pipeline.api;
    let receiver = Receiver::start().await;
    let created = api
        .create_endpoint("acme", &receiver.url, &["order.created"])
        .await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("ep_"));
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));

    let read = api.call("GET", &format!("/v1/endpoints/{id}"), None).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["url"], receiver.url.as_str());
    assert!(
        read.body.get("secret").is_none(),
        "the secret is shown once, at creation"
    );

    let patched = api
        .call(
            "PATCH",
            &format!("/v1/endpoints/{id}"),
            Some(json!({"event_types": ["*"], "disabled": true})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.body["event_types"], json!(["*"]));
    assert_eq!(patched.body["disabled"], true);

    // A disabled endpoint is still subscribed: its delivery is kept, unsent, until it is
    // enabled again, not lost.
    let event = api
        .send_event("acme", "order.created", json!({}), None)
        .await;
    assert_eq!(event.body["deliveries"], 1);

    let list = api.call("GET", "/v1/endpoints?tenant=acme", None).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    let deleted = api
        .call("DELETE", &format!("/v1/endpoints/{id}"), None)
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        api.call("GET", &format!("/v1/endpoints/{id}"), None)
            .await
            .status,
        404
    );
    assert_eq!(
        api.call("DELETE", &format!("/v1/endpoints/{id}"), None)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_accepted_before_a_stop_are_delivered_after_the_start() {
    let mut pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;

    // Delivered before anything stops.
    let early = pipeline
        .api
        .send_event("acme", "order.created", json!({"n": -1}), None)
        .await;
    pipeline
        .api
        .settled_deliveries(early.body["id"].as_str().unwrap(), SETTLE)
        .await;
    receiver.wait_for(1, SETTLE).await;

    // With the dispatcher stopped, ingest still accepts: Kafka holds the tasks.
    pipeline.stop_service(Service::Dispatcher).await;
    let mut accepted = Vec::new();
    for n in 0..20 {
        let answer = pipeline
            .api
            .send_event("acme", "order.created", json!({"n": n}), None)
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        accepted.push(answer.body["id"].as_str().unwrap().to_owned());
    }
    // Ingest crashes after acknowledging; nothing it acknowledged may be lost.
    pipeline.kill_service(Service::Ingest).await;
    pipeline.start_service(Service::Ingest).await;
    pipeline.start_service(Service::Dispatcher).await;

    for id in &accepted {
        for delivery in pipeline.api.settled_deliveries(id, SETTLE).await {
            assert_eq!(delivery["status"], "delivered", "{delivery}");
        }
    }
    let webhooks = receiver.wait_for(21, SETTLE).await;
    let ids: HashSet<&str> = webhooks.iter().map(|w| w.header("webhook-id")).collect();
    assert_eq!(
        webhooks.len(),
        21,
        "every event once: {}",
        pipeline.log_tail(Service::Dispatcher)
    );
    assert_eq!(ids.len(), 21, "no webhook sent twice");
}
