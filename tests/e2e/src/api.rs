//! A client of Hookstream's public HTTP API.

use std::time::Duration;

use serde_json::{Value, json};

use crate::eventually;

/// Talks to the ingest API with a bearer token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    token: String,
    client: reqwest::Client,
}

/// An API answer: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    /// The `Retry-After` header, if there was one.
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Api {
    pub fn new(base: String, token: &str) -> Self {
        Self {
            base,
            token: token.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// Sends a request with any body and token (`None`: no Authorization header).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.expect("the API body");
        Answer {
            status,
            content_type,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// POSTs with the token, answering `None` when ingest cannot be reached (it may be down).
    pub async fn try_raw(&self, method: &str, path: &str, body: Vec<u8>) -> Option<Answer> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .timeout(std::time::Duration::from_secs(30))
            .body(body)
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let text = response.text().await.ok()?;
        Some(Answer {
            status,
            content_type: String::new(),
            retry_after: None,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        })
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string().into_bytes());
        self.raw(method, path, body, Some(&self.token.clone()))
            .await
    }

    /// Creates an endpoint and returns its representation (with `id` and `secret`).
    pub async fn create_endpoint(&self, tenant: &str, url: &str, event_types: &[&str]) -> Value {
        let answer = self
            .call(
                "POST",
                "/v1/endpoints",
                Some(json!({"tenant": tenant, "url": url, "event_types": event_types})),
            )
            .await;
        assert_eq!(
            answer.status, 201,
            "creating an endpoint: {:?}",
            answer.body
        );
        answer.body
    }

    /// Creates an endpoint of `tenant` for `event_types` with extra `settings` (an object of
    /// create fields, such as `{"ordering": "strict"}`); returns its id.
    pub async fn create_endpoint_with(
        &self,
        tenant: &str,
        url: &str,
        event_types: &[&str],
        settings: Value,
    ) -> String {
        let mut body = json!({"tenant": tenant, "url": url, "event_types": event_types});
        if let (Some(body), Value::Object(settings)) = (body.as_object_mut(), settings) {
            body.extend(settings);
        }
        let created = self.call("POST", "/v1/endpoints", Some(body)).await;
        assert_eq!(
            created.status, 201,
            "creating an endpoint: {}",
            created.body
        );
        created.body["id"]
            .as_str()
            .expect("an endpoint id")
            .to_owned()
    }

    /// Sends one event of `event_type` per number in `numbers`, payload `{"n": number}`, in
    /// one batch request, in order; each must be accepted.
    pub async fn send_numbered(
        &self,
        tenant: &str,
        event_type: &str,
        numbers: std::ops::Range<usize>,
    ) {
        let events: Vec<Value> = numbers
            .map(|n| json!({"tenant": tenant, "type": event_type, "payload": {"n": n}}))
            .collect();
        let answer = self
            .call("POST", "/v1/events:batch", Some(json!({"events": events})))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let results = answer.body["results"].as_array().expect("results");
        assert!(
            results.iter().all(|r| r["status"] == 202),
            "{}",
            answer.body
        );
    }

    /// Waits until the endpoint has exactly `count` deliveries, all recorded delivered, and
    /// returns them.
    pub async fn delivered_to(
        &self,
        endpoint_id: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        eventually("the deliveries to be recorded", timeout, || async {
            let deliveries = self
                .all_deliveries(&format!("endpoint_id={endpoint_id}"))
                .await;
            (deliveries.len() == count && deliveries.iter().all(|d| d["status"] == "delivered"))
                .then_some(deliveries)
        })
        .await
    }

    /// Waits until the endpoint has exactly `count` dead letters listed (the replay service
    /// indexes them), and returns them.
    pub async fn dead_letters_of(
        &self,
        endpoint_id: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        eventually("the dead letters to be listed", timeout, || async {
            let answer = self
                .call(
                    "GET",
                    &format!("/v1/dead-letters?endpoint_id={endpoint_id}&limit=500"),
                    None,
                )
                .await;
            let data = answer.body["data"].as_array().cloned().unwrap_or_default();
            (data.len() == count).then_some(data)
        })
        .await
    }

    /// Sends an event and returns the answer.
    pub async fn send_event(
        &self,
        tenant: &str,
        event_type: &str,
        payload: Value,
        key: Option<&str>,
    ) -> Answer {
        let mut body = json!({"tenant": tenant, "type": event_type, "payload": payload});
        if let Some(key) = key {
            body["idempotency_key"] = json!(key);
        }
        self.call("POST", "/v1/events", Some(body)).await
    }

    /// Every attempt of a delivery, first first.
    pub async fn attempts(&self, delivery_id: &str) -> Vec<Value> {
        let answer = self
            .call(
                "GET",
                &format!("/v1/deliveries/{delivery_id}/attempts"),
                None,
            )
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.body["data"].as_array().cloned().unwrap_or_default()
    }

    /// The deliveries of an event.
    pub async fn deliveries_of(&self, event_id: &str) -> Vec<Value> {
        let answer = self
            .call("GET", &format!("/v1/deliveries?event_id={event_id}"), None)
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.body["data"].as_array().cloned().unwrap_or_default()
    }

    /// Every delivery matching `query` (e.g. `status=delivered`), through all pages.
    pub async fn all_deliveries(&self, query: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let answer = self
                .call(
                    "GET",
                    &format!("/v1/deliveries?{query}&limit=500{after}"),
                    None,
                )
                .await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            all.extend(answer.body["data"].as_array().cloned().unwrap_or_default());
            match answer.body["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => return all,
            }
        }
    }

    /// Waits until every delivery of the event has a final status, and returns them.
    pub async fn settled_deliveries(&self, event_id: &str, timeout: Duration) -> Vec<Value> {
        eventually(
            &format!("the deliveries of {event_id} to settle"),
            timeout,
            || async {
                let deliveries = self.deliveries_of(event_id).await;
                deliveries
                    .iter()
                    .all(|d| matches!(d["status"].as_str(), Some("delivered" | "dead_lettered")))
                    .then_some(deliveries)
            },
        )
        .await
    }
}
