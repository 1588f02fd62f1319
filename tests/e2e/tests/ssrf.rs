//! Outbound safety: endpoint host names are resolved and checked against the destination
//! policy when an endpoint is created and again at every attempt, so a name re-bound to an
//! internal address after creation is refused (`DESTINATION_BLOCKED`, dead-lettered), and every
//! internal address family is refused, literal or behind a name.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{DnsServer, Pipeline, Receiver};

const SETTLE: Duration = Duration::from_secs(60);

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_checked_at_creation_and_at_every_attempt() {
    let dns = DnsServer::start().await;
    // Only 127.0.0.1 itself is opened for the test's receiver; the rest of 127/8 stays closed.
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_DNS_SERVER", dns.address.as_str()),
        ("HOOKSTREAM_ALLOWED_DESTINATIONS", "127.0.0.1/32"),
    ])
    .await;
    let api = &pipeline.api;
    let receiver = Receiver::start().await;
    let port = receiver
        .url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("the receiver's port")
        .to_owned();

    dns.set("hooks.test", &[ip("127.0.0.1")]);
    let url = format!("http://hooks.test:{port}/hook");
    let endpoint = api.create_endpoint("acme", &url, &[]).await;
    let endpoint_id = endpoint["id"].as_str().expect("an id").to_owned();
    let first = api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    receiver.wait_for(1, SETTLE).await;
    let delivered = api
        .settled_deliveries(first.body["id"].as_str().expect("an event id"), SETTLE)
        .await;
    assert_eq!(delivered[0]["status"], "delivered");

    // Rebinding: the same name now points inside. The next attempt resolves again and refuses.
    dns.set("hooks.test", &[ip("127.0.0.2")]);
    let second = api
        .send_event("acme", "order.created", json!({"n": 2}), None)
        .await;
    let refused = api
        .settled_deliveries(second.body["id"].as_str().expect("an event id"), SETTLE)
        .await;
    assert_eq!(refused[0]["status"], "dead_lettered", "{refused:?}");
    let attempts = api
        .call(
            "GET",
            &format!(
                "/v1/deliveries/{}/attempts",
                refused[0]["id"].as_str().unwrap_or_default()
            ),
            None,
        )
        .await;
    assert_eq!(attempts.body["data"][0]["class"], "DESTINATION_BLOCKED");
    assert!(
        attempts.body["data"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.2")),
        "{:?}",
        attempts.body
    );
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing reached the re-bound address"
    );
    assert_eq!(refused[0]["endpoint_id"], endpoint_id.as_str());

    // At creation: every internal family, behind a name or literal, is refused with 400.
    let internal = [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        // Issue 19, item 5: ranges that were missed.
        "64:ff9b::a00:5",
        "64:ff9b:1::a00:5",
        "2002:a00:5::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "::10.0.0.5",
        "fec0::1",
        "192.0.0.1",
        "198.18.0.1",
        "240.0.0.1",
    ];
    for (n, address) in internal.iter().enumerate() {
        let name = format!("internal{n}.test");
        dns.set(&name, &[ip(address)]);
        let answer = api
            .call(
                "POST",
                "/v1/endpoints",
                Some(json!({"tenant": "acme", "url": format!("http://{name}/hook")})),
            )
            .await;
        assert_eq!(
            answer.status, 400,
            "{address} behind a name: {:?}",
            answer.body
        );
        assert_eq!(answer.body["field"], "url");
        let literal = match ip(address) {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let answer = api
            .call(
                "POST",
                "/v1/endpoints",
                Some(json!({"tenant": "acme", "url": format!("http://{literal}/hook")})),
            )
            .await;
        assert_eq!(answer.status, 400, "{address} literal: {:?}", answer.body);
    }
    // One internal address among public ones is enough to refuse.
    dns.set("mixed.test", &[ip("93.184.216.34"), ip("10.1.1.1")]);
    let answer = api
        .call(
            "POST",
            "/v1/endpoints",
            Some(json!({"tenant": "acme", "url": "http://mixed.test/hook"})),
        )
        .await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    // Changing an endpoint's URL is checked the same way.
    dns.set("later.test", &[ip("10.9.9.9")]);
    let answer = api
        .call(
            "PATCH",
            &format!("/v1/endpoints/{endpoint_id}"),
            Some(json!({"url": "http://later.test/hook"})),
        )
        .await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
}
