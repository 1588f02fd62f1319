//! An event request held inside ingest, for tests of what happens while requests are in
//! progress: the store takes no writes (its write lock is taken from outside) until released.

use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;

use crate::{Answer, Pipeline, Service};

/// A `POST /v1/events` of one tenant, waiting on the store's write lock inside ingest.
pub struct HeldRequest {
    store: rusqlite::Connection,
    request: JoinHandle<Answer>,
}

impl Pipeline {
    /// Sends an event of `tenant` while the store takes no writes, and returns once ingest is
    /// handling it (`hookstream_http_requests_in_progress` shows it).
    pub async fn hold_an_event_request(&self, tenant: &str) -> HeldRequest {
        let store = rusqlite::Connection::open(self.store_path()).expect("the store file");
        store
            .execute_batch("BEGIN EXCLUSIVE")
            .expect("the store's write lock");
        let request = {
            let api = self.api.clone();
            let tenant = tenant.to_owned();
            tokio::spawn(async move {
                api.send_event(&tenant, "order.created", json!({"held": true}), None)
                    .await
            })
        };
        crate::eventually(
            "the held request in progress",
            Duration::from_secs(30),
            || async {
                let metrics = self.metrics_of(Service::Ingest).await;
                (crate::sample(&metrics, "hookstream_http_requests_in_progress")? >= 1.0)
                    .then_some(())
            },
        )
        .await;
        HeldRequest { store, request }
    }
}

impl HeldRequest {
    /// Lets the store take writes again; the request's answer.
    pub async fn release(self) -> Answer {
        self.store
            .execute_batch("ROLLBACK")
            .expect("releasing the lock");
        self.request.await.expect("the held request")
    }
}
