//! Fault tests of the ScyllaDB store: statements fail (as a node timing out would) at chosen
//! points of a real write to the CQL node.

use super::*;

async fn open(backend: &Backend) -> ScyllaStore {
    let Backend::Scylla(at) = backend else {
        unreachable!("a ScyllaDB backend")
    };
    ScyllaStore::open(at, Duration::from_secs(30 * 86_400), sealer())
        .await
        .unwrap()
}

fn request(tenant_name: &str, ep: &Endpoint, other: &Endpoint) -> Vec<NewEvent> {
    let keyed = |key: &str| new_event(tenant_name, Some(key), &[ep, other]);
    vec![
        keyed("k-a"),
        new_event(tenant_name, None, &[ep, other]),
        keyed("k-b"),
    ]
}

async fn deliveries_of(store: &dyn Store, tenant_name: &str) -> Vec<Delivery> {
    let filter = DeliveryFilter {
        tenant: Some(tenant(tenant_name)),
        ..Default::default()
    };
    store
        .list_deliveries(&filter, &PageRequest::default())
        .await
        .unwrap()
        .items
}

async fn outbox_ids(store: &dyn Store) -> Vec<EventId> {
    let cutoff = OffsetDateTime::now_utc() + Duration::from_secs(1);
    store
        .unpublished_events(cutoff, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|(event, _)| event.id)
        .collect()
}

/// Every service opens the store at start-up, migrating a new keyspace together: an
/// `ALTER TABLE … ADD` that a racing instance ran first must not fail the others' start.
#[tokio::test]
async fn services_opening_a_new_keyspace_together_all_start() {
    let backend = Backend::scylla();
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let Backend::Scylla(at) = &backend else {
                unreachable!("a ScyllaDB backend")
            };
            let at = at.clone();
            tokio::spawn(async move {
                ScyllaStore::open(&at, Duration::from_secs(86_400), sealer()).await
            })
        })
        .collect();
    for opened in opening {
        if let Err(err) = opened.await.expect("the opening task ran to its end") {
            panic!("a store failed to open beside the others: {err}");
        }
    }
}

/// Issue 19: a batch stored one event at a time stopped at the first error, so a client
/// retrying after the 503 got the first events twice under different ids.
#[tokio::test]
async fn a_batch_that_fails_anywhere_stores_nothing_and_its_retry_stores_it_once() {
    let backend = Backend::scylla();
    let store = open(&backend).await;
    let window = IdempotencyWindow::default();
    let ep = endpoint("acme", &[]);
    let other = endpoint("acme", &[]);
    let mut failures = 0;
    // Every statement of the request fails once in turn, until one plan is never reached.
    for nth in 1.. {
        let name = format!("tenant-{nth}");
        let first_try = request(&name, &ep, &other);
        store.fail_statements(nth, 1);
        let result = store.create_events(&first_try, window).await;
        store.fail_statements(0, 0);
        let Err(err) = result else {
            // Stored: all of it, once.
            assert_eq!(deliveries_of(&store, &name).await.len(), 6, "at {nth}");
            let waiting = outbox_ids(&store).await;
            for new in &first_try {
                assert!(waiting.contains(&new.event.id), "at {nth}");
                store.mark_event_published(new.event.id).await.unwrap();
            }
            if nth > 60 {
                break;
            }
            continue;
        };
        failures += 1;
        assert!(err.to_string().contains("planned fault"), "at {nth}: {err}");
        assert!(
            deliveries_of(&store, &name).await.is_empty(),
            "statement {nth} failed, yet deliveries are listed"
        );
        let waiting = outbox_ids(&store).await;
        for new in &first_try {
            assert!(!waiting.contains(&new.event.id), "at {nth}: in the outbox");
            for d in &new.deliveries {
                assert!(
                    store.get_delivery(d.id).await.unwrap().is_none(),
                    "at {nth}"
                );
            }
        }
        // The client's retry: new ids, the same keys.
        let retry = request(&name, &ep, &other);
        let outcomes = store.create_events(&retry, window).await.unwrap();
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, CreateEventOutcome::Created)),
            "at {nth}: {outcomes:?}"
        );
        assert_eq!(deliveries_of(&store, &name).await.len(), 6, "at {nth}");
        for new in &retry {
            store.mark_event_published(new.event.id).await.unwrap();
        }
    }
    assert!(
        failures > 30,
        "every step of the request was tried: {failures}"
    );
}

/// A plain session on the test's cluster, to plant what the store itself would not write.
async fn raw_session(at: &ScyllaLocation) -> ::scylla::client::session::Session {
    ::scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&at.nodes)
        .build()
        .await
        .unwrap()
}

/// An endpoint created before the settings column existed has it null: a change of its
/// settings compares against that null and applies.
#[tokio::test]
async fn settings_change_on_an_endpoint_older_than_the_settings_column() {
    let backend = Backend::scylla();
    let Backend::Scylla(at) = &backend else {
        unreachable!("a ScyllaDB backend")
    };
    let store = open(&backend).await;
    let ep = endpoint("acme", &[]);
    store.create_endpoint(&ep).await.unwrap();
    let raw = raw_session(at).await;
    raw.use_keyspace(&at.keyspace, false).await.unwrap();
    raw.query_unpaged(
        "UPDATE endpoints SET shaping = null WHERE id = ?",
        (ep.id.to_string(),),
    )
    .await
    .unwrap();
    let read = store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.shaping, Shaping::default());

    let changes = EndpointChanges {
        ordering: Some(Ordering::None),
        max_in_flight: Some(Some(12)),
        ..Default::default()
    };
    let changed = store
        .change_endpoint(ep.id, &changes, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .expect("the endpoint, changed");
    assert_eq!(changed.shaping.ordering, Ordering::None);
    assert_eq!(changed.shaping.concurrency(), 12);
}

/// Issue 19, item 7: one event that does not decode stopped every sweep.
#[tokio::test]
async fn the_sweep_sets_aside_an_event_that_does_not_decode() {
    let backend = Backend::scylla();
    let Backend::Scylla(at) = &backend else {
        unreachable!("a ScyllaDB backend")
    };
    let store = open(&backend).await;
    let ep = endpoint("acme", &[]);
    let damaged = new_event("acme", None, &[&ep]);
    let fine = new_event("acme", None, &[&ep]);
    store
        .create_events(
            &[damaged.clone(), fine.clone()],
            IdempotencyWindow::default(),
        )
        .await
        .unwrap();
    let raw = raw_session(at).await;
    raw.use_keyspace(&at.keyspace, false).await.unwrap();
    raw.query_unpaged(
        "UPDATE events SET payload = 'not json' WHERE id = ?",
        (damaged.event.id.to_string(),),
    )
    .await
    .unwrap();

    let waiting = outbox_ids(&store).await;
    assert_eq!(waiting, vec![fine.event.id]);
    assert_eq!(outbox_ids(&store).await, waiting, "set aside for good");
}

/// Issue 19, item 8: dead letters shared one partition per day across tenants, so one
/// tenant's list read every tenant's letters of the day. A tenant's list now reads its own
/// partition: with the shared day's rows gone, it still finds its letters.
#[tokio::test]
async fn a_tenants_dead_letters_are_read_from_its_own_partition() {
    let backend = Backend::scylla();
    let Backend::Scylla(at) = &backend else {
        unreachable!("a ScyllaDB backend")
    };
    let raw = raw_session(at).await;
    // A keyspace that has kept dead letters per tenant since yesterday.
    open(&backend).await;
    raw.use_keyspace(&at.keyspace, false).await.unwrap();
    let yesterday = (OffsetDateTime::now_utc().unix_timestamp() / 86_400 - 1).to_string();
    raw.query_unpaged(
        "UPDATE control SET value = ? WHERE name = 'dead_letters_by_tenant_from'",
        (yesterday,),
    )
    .await
    .unwrap();
    let store = open(&backend).await;

    let now = OffsetDateTime::now_utc() - Duration::from_secs(60);
    let mut letters = Vec::new();
    for tenant_name in ["acme", "other"] {
        let ep = endpoint(tenant_name, &[]);
        let new = new_event(tenant_name, None, &[&ep]);
        let letter = dead_letter_of(&new.deliveries[0], AttemptClass::Http4xxPermanent, now);
        store.index_dead_letter(&letter).await.unwrap();
        letters.push(letter);
    }
    let today = OffsetDateTime::now_utc().unix_timestamp() / 86_400;
    raw.query_unpaged(
        "DELETE FROM dead_letters_by_day WHERE day = ?",
        (i32::try_from(today).unwrap(),),
    )
    .await
    .unwrap();

    let acme = DeadLetterFilter {
        tenant: Some(tenant("acme")),
        ..Default::default()
    };
    let listed = store
        .list_dead_letters(&acme, &PageRequest::default())
        .await
        .unwrap();
    let ids: Vec<DeliveryId> = listed
        .items
        .iter()
        .map(|d| d.letter.task.delivery_id)
        .collect();
    assert_eq!(ids, vec![letters[0].task.delivery_id]);
    let everyone = store
        .list_dead_letters(&DeadLetterFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert!(
        everyone.items.is_empty(),
        "an operator's list reads the shared day"
    );
}

/// Issue 19: an event whose key was claimed before its outbox row was written, by a process
/// that then died, was never published and held its key for the whole window.
#[tokio::test]
async fn a_request_that_died_half_way_frees_its_key_and_is_swept_away() {
    let backend = Backend::scylla();
    let ep = endpoint("acme", &[]);
    let window = IdempotencyWindow::default();
    let dying = open(&backend).await;
    let mut keyed = new_event("acme", Some("k-1"), &[&ep]);
    let mut unkeyed = new_event("acme", None, &[&ep]);
    // Created long enough ago for the sweep to give up on them.
    for new in [&mut keyed, &mut unkeyed] {
        new.event.created_at -= Duration::from_secs(600);
    }
    // The process dies after staging the first event (key claimed), mid-way through the second.
    dying.fail_statements(12, u64::MAX);
    assert!(
        dying
            .create_events(&[keyed.clone(), unkeyed.clone()], window)
            .await
            .is_err()
    );

    let alive = open(&backend).await;
    // The event holds its key, staged, with nobody left to decide it: the retry waits for
    // it briefly, abandons it and takes the key.
    let retry = new_event("acme", Some("k-1"), &[&ep]);
    assert!(matches!(
        alive.create_event(&retry, window).await.unwrap(),
        CreateEventOutcome::Created
    ));
    // The sweep never publishes the dead request's events; it removes them.
    let waiting = outbox_ids(&alive).await;
    assert!(waiting.contains(&retry.event.id));
    for new in [&keyed, &unkeyed] {
        assert!(!waiting.contains(&new.event.id));
        for d in &new.deliveries {
            assert!(alive.get_delivery(d.id).await.unwrap().is_none());
        }
    }
    assert_eq!(outbox_ids(&alive).await.len(), waiting.len());
}
