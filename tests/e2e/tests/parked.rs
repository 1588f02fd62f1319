//! A retry task written with an absurd due time (by a dispatcher from before Retry-After was
//! capped, issue 18 item 1) does not park its tier partition: the retry tier holds it to its
//! tier's delay after it was written, and the task queued behind it is not held up either.

use std::time::Duration;

use time::OffsetDateTime;

use hookstream_e2e::{Pipeline, Receiver, seed};
use hookstream_model::delivery::DeliveryStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_parked_until_9999_is_released_after_its_tiers_delay() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let store = seed::open_store(&pipeline).await;
    let endpoint = seed::endpoint(&store, &receiver.url).await;

    // Two deliveries attempted once, each with its retry task on the 1 s tier: the first
    // asks for the year 9999, the second is due now, behind it on the same partition.
    let events: Vec<_> = (0..2)
        .map(|_| seed::event(&endpoint, DeliveryStatus::Retrying, 1, Duration::ZERO))
        .collect();
    seed::store_published(&store, &events).await;
    let year_9999 = OffsetDateTime::from_unix_timestamp(253_370_764_800).expect("a date");
    for (new, due) in events.iter().zip([year_9999, OffsetDateTime::now_utc()]) {
        let task = seed::task(new, 1, Some(due));
        seed::publish_task(&pipeline, "hookstream.retry.1s", &task).await;
    }

    // Held at most 1.5 s (the tier, stretched by the largest jitter) after it was written.
    let webhooks = receiver.wait_for(2, Duration::from_secs(30)).await;
    let ids: Vec<&str> = webhooks.iter().map(|w| w.header("webhook-id")).collect();
    for new in &events {
        assert!(ids.contains(&new.deliveries[0].id.to_string().as_str()));
    }
}
