//! Retention: what outlives it and what goes.

use super::*;

pub(crate) async fn rows_past_their_retention_are_removed(backend: Backend) {
    let retention = Duration::from_secs(2);
    let window = IdempotencyWindow(Duration::from_secs(2));
    let store = backend.open_with_retention(retention).await;
    let ep = endpoint("acme", &[]);
    store.create_endpoint(&ep).await.unwrap();
    let new = new_event("acme", Some("kept-briefly"), &[&ep]);
    store.create_event(&new, window).await.unwrap();
    let id = new.deliveries[0].id;
    delivered(&*store, id).await;

    // The embedded store purges on request (here with its clock moved past the retention);
    // ScyllaDB expires the rows by TTL on its own, so that lane waits for the clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let later = OffsetDateTime::now_utc() + Duration::from_secs(3);
        store.purge_expired(later, retention).await.unwrap();
        if store.get_delivery(id).await.unwrap().is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(store.list_attempts(id).await.unwrap().is_empty());
    let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    assert!(
        store
            .unpublished_events(later, 10)
            .await
            .unwrap()
            .is_empty(),
        "the event went with its deliveries"
    );
    // The key is free again: a different request under it is a new event, not a conflict.
    let mut reuse = new_event("acme", Some("kept-briefly"), &[&ep]);
    reuse.event.payload = json!({"order": 2});
    assert!(matches!(
        store.create_event(&reuse, window).await.unwrap(),
        CreateEventOutcome::Created
    ));
    assert_eq!(
        store.get_endpoint(ep.id).await.unwrap().map(|e| e.id),
        Some(ep.id),
        "endpoints are configuration, not traffic: kept"
    );
}

#[tokio::test]
pub(crate) async fn the_embedded_purge_removes_old_dead_letters_and_finished_batches_only() {
    let backend = Backend::sqlite();
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    // Dead letters from an hour ago, purged with a retention of a minute.
    let letters = dead_letters(&f, &ep, 2, AttemptClass::Http4xxPermanent).await;
    let finished = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&finished, &pending_items(&letters))
        .await
        .unwrap();
    f.store
        .finish_batch(finished.id, BatchStatus::Cancelled, None)
        .await
        .unwrap();
    let running = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&running, &pending_items(&letters))
        .await
        .unwrap();
    let later = OffsetDateTime::now_utc() + Duration::from_secs(120);
    let purged = f
        .store
        .purge_expired(later, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((purged.dead_letters, purged.batches), (2, 1));
    assert!(f.store.get_batch(finished.id).await.unwrap().is_none());
    assert!(
        f.store.get_batch(running.id).await.unwrap().is_some(),
        "a running batch is never purged"
    );
    let left = f
        .store
        .list_dead_letters(&DeadLetterFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert!(left.items.is_empty());
}

/// A delivery still under way (an endpoint paused for longer than the retention, say) outlives
/// the retention, while a finished one of the same age goes: its task would otherwise come back
/// to a store that forgot it. (The embedded purge skips it; ScyllaDB writes it without a TTL
/// until it is final, and then the whole row with one.)
pub(crate) async fn deliveries_under_way_outlive_the_retention(backend: Backend) {
    let retention = Duration::from_secs(2);
    let store = backend.open_with_retention(retention).await;
    let ep = endpoint("acme", &[]);
    store.create_endpoint(&ep).await.unwrap();
    let waiting = new_event("acme", None, &[&ep]);
    let untouched = new_event("acme", None, &[&ep]);
    let done = new_event("acme", None, &[&ep]);
    for new in [&waiting, &untouched, &done] {
        store
            .create_event(new, IdempotencyWindow::default())
            .await
            .unwrap();
    }
    let retrying = waiting.deliveries[0].id;
    let pending = untouched.deliveries[0].id;
    let finished = done.deliveries[0].id;
    record(
        &*store,
        retrying,
        0,
        AttemptClass::Http5xxRetryable,
        503,
        DeliveryStatus::Retrying,
    )
    .await;
    delivered(&*store, finished).await;

    // The embedded store purges on request (its clock moved a year on); ScyllaDB expires rows by
    // TTL on its own, so that lane waits until the finished delivery is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let much_later = OffsetDateTime::now_utc() + Duration::from_secs(365 * 86_400);
        store.purge_expired(much_later, retention).await.unwrap();
        if store.get_delivery(finished).await.unwrap().is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the finished delivery outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(store.list_attempts(finished).await.unwrap().is_empty());
    let kept = store.get_delivery(retrying).await.unwrap().unwrap();
    assert_eq!(kept.status, DeliveryStatus::Retrying);
    assert_eq!(kept.attempts, 1);
    assert_eq!(
        store.get_delivery(pending).await.unwrap().map(|d| d.status),
        Some(DeliveryStatus::Pending)
    );
    // Their tasks, coming back, still claim their next attempts; and once final, they go too.
    assert_eq!(claim(&*store, retrying, 1).await.number, 2);
    delivered(&*store, pending).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let much_later = OffsetDateTime::now_utc() + Duration::from_secs(365 * 86_400);
        store.purge_expired(much_later, retention).await.unwrap();
        if store.get_delivery(pending).await.unwrap().is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a delivery finished late outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
pub(crate) async fn the_embedded_purge_keeps_what_is_within_retention() {
    let backend = Backend::sqlite();
    let store = backend.open().await;
    let ep = endpoint("acme", &[]);
    let new = new_event("acme", Some("fresh"), &[&ep]);
    store
        .create_event(&new, IdempotencyWindow::default())
        .await
        .unwrap();
    let purged = store
        .purge_expired(OffsetDateTime::now_utc(), Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(purged, hookstream_store::Purged::default());
    assert!(
        store
            .get_delivery(new.deliveries[0].id)
            .await
            .unwrap()
            .is_some()
    );
    let again = store
        .create_event(&new, IdempotencyWindow::default())
        .await
        .unwrap();
    assert!(
        matches!(again, CreateEventOutcome::Repeat { .. }),
        "key still live"
    );
}
