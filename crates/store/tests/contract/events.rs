//! Events under the idempotency window, and the outbox of events not yet published.

use super::*;

pub(crate) async fn an_idempotent_repeat_returns_the_original_and_creates_nothing(
    backend: Backend,
) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let window = IdempotencyWindow::default();

    let first = new_event("acme", Some("k-1"), &[&ep]);
    assert!(matches!(
        f.store.create_event(&first, window).await.unwrap(),
        CreateEventOutcome::Created
    ));
    let again = new_event("acme", Some("k-1"), &[&ep]);
    match f.store.create_event(&again, window).await.unwrap() {
        CreateEventOutcome::Repeat {
            event,
            state,
            deliveries,
        } => {
            assert_eq!(event.id, first.event.id);
            assert_eq!(state, PublishState::Publishing);
            assert_eq!(deliveries.len(), 1);
            assert_eq!(deliveries[0].id, first.deliveries[0].id);
        }
        other => panic!("expected a repeat, got {other:?}"),
    }

    f.store.mark_event_published(first.event.id).await.unwrap();
    match f.store.create_event(&again, window).await.unwrap() {
        CreateEventOutcome::Repeat { state, .. } => assert_eq!(state, PublishState::Published),
        other => panic!("expected a repeat, got {other:?}"),
    }
    let acme = DeliveryFilter {
        tenant: Some(tenant("acme")),
        ..Default::default()
    };
    let all = f
        .store
        .list_deliveries(&acme, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1, "the repeat created no delivery");

    // The same key under another tenant is another request.
    let other_ep = endpoint("other", &[]);
    let other = new_event("other", Some("k-1"), &[&other_ep]);
    assert!(matches!(
        f.store.create_event(&other, window).await.unwrap(),
        CreateEventOutcome::Created
    ));
}

pub(crate) async fn unpublished_events_are_listed_until_marked_published(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    let mut old = new_event("acme", None, &[&ep]);
    old.event.created_at -= Duration::from_secs(120);
    let fresh = new_event("acme", None, &[&ep]);
    for new in [&old, &fresh] {
        f.store
            .create_event(new, IdempotencyWindow::default())
            .await
            .unwrap();
    }
    let cutoff = OffsetDateTime::now_utc() - Duration::from_secs(60);
    let stale = f.store.unpublished_events(cutoff, 10).await.unwrap();
    assert_eq!(stale.len(), 1, "only the event older than the cutoff");
    assert_eq!(stale[0].0.id, old.event.id);
    assert_eq!(stale[0].1.len(), 1);
    assert_eq!(stale[0].1[0].id, old.deliveries[0].id);

    f.store.mark_event_published(old.event.id).await.unwrap();
    assert!(
        f.store
            .unpublished_events(cutoff, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn a_batch_judges_each_key_against_the_events_before_it(backend: Backend) {
    let f = backend.fixture().await;
    let window = IdempotencyWindow::default();
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let first = new_event("acme", Some("k-1"), &[&ep]);
    let mut repeat = new_event("acme", Some("k-1"), &[&ep]);
    repeat.event.created_at = first.event.created_at;
    let mut conflicting = new_event("acme", Some("k-1"), &[&ep]);
    conflicting.event.payload = json!({"order": 2});
    let unkeyed = new_event("acme", None, &[&ep]);

    let outcomes = f
        .store
        .create_events(
            &[first.clone(), repeat, conflicting, unkeyed.clone()],
            window,
        )
        .await
        .unwrap();
    assert!(matches!(outcomes[0], CreateEventOutcome::Created));
    match &outcomes[1] {
        CreateEventOutcome::Repeat { event, .. } => assert_eq!(event.id, first.event.id),
        other => panic!("expected a repeat, got {other:?}"),
    }
    assert!(matches!(
        outcomes[2],
        CreateEventOutcome::Conflict { original } if original == first.event.id
    ));
    assert!(matches!(outcomes[3], CreateEventOutcome::Created));

    let cutoff = OffsetDateTime::now_utc() + Duration::from_secs(1);
    assert_eq!(
        f.store.unpublished_events(cutoff, 10).await.unwrap().len(),
        2
    );
    f.store
        .mark_events_published(&[first.event.id, unkeyed.event.id])
        .await
        .unwrap();
    assert!(
        f.store
            .unpublished_events(cutoff, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn a_different_request_under_a_live_key_conflicts(backend: Backend) {
    let f = backend.fixture().await;
    let window = IdempotencyWindow::default();
    let first = new_event("acme", Some("k-1"), &[]);
    f.store.create_event(&first, window).await.unwrap();
    let mut different = new_event("acme", Some("k-1"), &[]);
    different.event.payload = json!({"order": 2});
    match f.store.create_event(&different, window).await.unwrap() {
        CreateEventOutcome::Conflict { original } => assert_eq!(original, first.event.id),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

pub(crate) async fn an_expired_key_creates_a_new_event(backend: Backend) {
    let f = backend.fixture().await;
    let window = IdempotencyWindow(Duration::from_secs(60));
    let mut first = new_event("acme", Some("k-1"), &[]);
    first.event.created_at -= Duration::from_secs(61);
    f.store.create_event(&first, window).await.unwrap();
    let second = new_event("acme", Some("k-1"), &[]);
    assert!(matches!(
        f.store.create_event(&second, window).await.unwrap(),
        CreateEventOutcome::Created
    ));
}

pub(crate) async fn racing_requests_with_one_key_create_exactly_one_event(backend: Backend) {
    // Two store handles on one database, as two processes have.
    let a = backend.open().await;
    let b = backend.open().await;
    let window = IdempotencyWindow::default();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let new = new_event("acme", Some("race"), &[]);
            store.create_event(&new, window).await.unwrap()
        }));
    }
    let mut created = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), CreateEventOutcome::Created) {
            created += 1;
        }
    }
    assert_eq!(created, 1);
}

pub(crate) async fn an_event_set_aside_leaves_the_outbox_for_good(backend: Backend) {
    let f = backend.fixture().await;
    let window = IdempotencyWindow::default();
    let ep = endpoint("acme", &[]);
    let refused = new_event("acme", Some("too-big"), &[&ep]);
    let fine = new_event("acme", None, &[&ep]);
    f.store
        .create_events(&[refused.clone(), fine.clone()], window)
        .await
        .unwrap();
    f.store
        .set_aside_event(refused.event.id, "kafka refuses the record: too large")
        .await
        .unwrap();

    let cutoff = OffsetDateTime::now_utc() + Duration::from_secs(1);
    let waiting = f.store.unpublished_events(cutoff, 10).await.unwrap();
    let ids: Vec<EventId> = waiting.iter().map(|(event, _)| event.id).collect();
    assert_eq!(ids, vec![fine.event.id], "the sweep goes on without it");
    let again = new_event("acme", Some("too-big"), &[&ep]);
    match f.store.create_event(&again, window).await.unwrap() {
        CreateEventOutcome::Repeat { event, state, .. } => {
            assert_eq!(event.id, refused.event.id);
            assert_eq!(
                state,
                PublishState::SetAside,
                "a repeat is not published again"
            );
        }
        other => panic!("expected a repeat, got {other:?}"),
    }
    assert!(matches!(
        f.store.set_aside_event(EventId::generate(), "x").await,
        Err(hookstream_store::StoreError::NotFound(_))
    ));
}

/// Issue 19, item 7: one event that does not decode stopped every sweep.
#[tokio::test]
pub(crate) async fn the_embedded_sweep_sets_aside_an_event_that_does_not_decode() {
    let backend = Backend::sqlite();
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    let mut damaged = new_event("acme", None, &[&ep]);
    damaged.event.created_at -= Duration::from_secs(120);
    let fine = new_event("acme", None, &[&ep]);
    f.store
        .create_events(
            &[damaged.clone(), fine.clone()],
            IdempotencyWindow::default(),
        )
        .await
        .unwrap();
    let Backend::Sqlite(dir) = &backend else {
        unreachable!("an embedded backend")
    };
    let raw = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    raw.execute(
        "UPDATE events SET payload = 'not json' WHERE id = ?1",
        [damaged.event.id.to_string()],
    )
    .unwrap();

    let cutoff = OffsetDateTime::now_utc() + Duration::from_secs(1);
    let waiting = f.store.unpublished_events(cutoff, 10).await.unwrap();
    let ids: Vec<EventId> = waiting.iter().map(|(event, _)| event.id).collect();
    assert_eq!(ids, vec![fine.event.id]);
    let state: String = raw
        .query_row(
            "SELECT publish_state FROM events WHERE id = ?1",
            [damaged.event.id.to_string()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(state, "set_aside");
}
