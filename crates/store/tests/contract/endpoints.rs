//! Endpoints: written, read, changed side by side, their secrets rotated, listed, subscribed.

use super::*;

pub(crate) async fn endpoints_are_created_read_updated_listed_and_deleted(backend: Backend) {
    let f = backend.fixture().await;
    let mut ep = endpoint("acme", &["order.created"]);
    f.store.create_endpoint(&ep).await.unwrap();
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.url, ep.url);
    assert_eq!(read.secret, ep.secret);
    assert_eq!(read.subscription, ep.subscription);

    ep.subscription = Subscription::All;
    ep.disabled = true;
    assert!(f.store.update_endpoint(&ep).await.unwrap());
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.subscription, Subscription::All);
    assert!(read.disabled);

    assert!(f.store.delete_endpoint(ep.id).await.unwrap());
    assert!(f.store.get_endpoint(ep.id).await.unwrap().is_none());
    assert!(!f.store.delete_endpoint(ep.id).await.unwrap());
    assert!(!f.store.update_endpoint(&ep).await.unwrap());
}

/// An endpoint's delivery settings are kept as written, and cleared when set back.
pub(crate) async fn delivery_settings_are_stored_with_the_endpoint(backend: Backend) {
    let f = backend.fixture().await;
    let mut ep = endpoint("acme", &["order.created"]);
    ep.shaping.rate_limit = Some(RateLimit::new(2.5, Some(4), "rate_limit").unwrap());
    f.store.create_endpoint(&ep).await.unwrap();
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.shaping, ep.shaping);

    ep.shaping.rate_limit = Some(RateLimit::new(100.0, None, "rate_limit").unwrap());
    assert!(f.store.update_endpoint(&ep).await.unwrap());
    let listed = f
        .store
        .list_endpoints(&tenant("acme"), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.items[0].shaping, ep.shaping);

    ep.shaping = Shaping::default();
    assert!(f.store.update_endpoint(&ep).await.unwrap());
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.shaping.rate_limit, None);
}

/// An endpoint's health is replaced by each write and read back as written, by any handle;
/// endpoints with none are left out.
pub(crate) async fn endpoint_health_is_replaced_and_read_back(backend: Backend) {
    let f = backend.fixture().await;
    let other = backend.open().await;
    let (a, b, none) = (
        EndpointId::generate(),
        EndpointId::generate(),
        EndpointId::generate(),
    );
    assert!(f.store.endpoint_health(&[a]).await.unwrap().is_empty());
    let at = OffsetDateTime::now_utc();
    let mut health = EndpointHealth::default();
    health.record(at, Some(12), AttemptClass::Timeout);
    f.store
        .put_endpoint_health(&[(a, health.clone())])
        .await
        .unwrap();
    health.record(at, Some(8), AttemptClass::Http2xxDelivered);
    let mut failing = EndpointHealth::default();
    failing.record(at, None, AttemptClass::DestinationBlocked);
    f.store
        .put_endpoint_health(&[(a, health.clone()), (b, failing.clone())])
        .await
        .unwrap();

    let mut read = other.endpoint_health(&[none, a, b]).await.unwrap();
    read.sort_by_key(|(id, _)| *id == b);
    assert_eq!(read, vec![(a, health), (b, failing)]);
}

/// Each dispatcher's report of a minute replaces its earlier one; reports are read from the
/// minute asked, from another handle, breakers and all.
pub(crate) async fn traffic_reports_are_replaced_per_minute_and_reporter(backend: Backend) {
    let f = backend.fixture().await;
    let other = backend.open().await;
    let now = now_millis();
    let minute = minute_of(now);
    let report = |reporter: &str, minute: i64, attempts: u64| TrafficReport {
        reporter: reporter.into(),
        minute,
        attempts,
        succeeded: attempts - 1,
        open_breakers: Vec::new(),
        more_breakers: false,
        written_at: now,
    };
    let mut a_now = report("a", minute, 5);
    let before = report("a", minute - 1, 7);
    let b_now = report("b", minute, 3);
    let too_old = report("a", minute - 10, 100);
    f.store
        .put_traffic_reports(&[a_now.clone(), before.clone(), b_now.clone(), too_old])
        .await
        .unwrap();
    // The minute grew and a breaker opened: the same row, written again.
    a_now.attempts = 9;
    a_now.open_breakers = vec![EndpointId::generate(), EndpointId::generate()];
    a_now.more_breakers = true;
    f.store.put_traffic_reports(&[a_now.clone()]).await.unwrap();

    let mut read = other.traffic_reports(minute - 1).await.unwrap();
    read.sort_by_key(|r| (r.minute, r.reporter.clone()));
    assert_eq!(read, vec![before, a_now, b_now]);
    assert!(other.traffic_reports(minute + 1).await.unwrap().is_empty());
}

/// A strict endpoint's queue gives its tasks back in position order, whatever order they were
/// put in; putting one again replaces it; endpoints are found by partition until forgotten.
pub(crate) async fn ordered_queues_keep_position_order_per_endpoint(backend: Backend) {
    let f = backend.fixture().await;
    let (a, b) = (EndpointId::generate(), EndpointId::generate());
    assert_eq!(f.store.queue_head(a, -1).await.unwrap(), None);
    for position in [7, 3, 12] {
        f.store.enqueue_task(&queued(a, 2, position)).await.unwrap();
    }
    f.store.enqueue_task(&queued(b, 2, 1)).await.unwrap();
    // Read again after a crash: the same record goes back to its place, not to the end.
    f.store.enqueue_task(&queued(a, 2, 3)).await.unwrap();
    let mut listed = f.store.queued_endpoints(2).await.unwrap();
    listed.sort_by_key(ToString::to_string);
    let mut expected = vec![a, b];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(listed, expected);
    assert!(f.store.queued_endpoints(3).await.unwrap().is_empty());

    let mut seen = Vec::new();
    let mut after = -1;
    while let Some(head) = f.store.queue_head(a, after).await.unwrap() {
        assert_eq!(head, queued(a, 2, head.position));
        seen.push(head.position);
        f.store.dequeue_task(a, head.position).await.unwrap();
        after = head.position;
    }
    assert_eq!(seen, [3, 7, 12]);
    assert_eq!(f.store.queue_head(a, -1).await.unwrap(), None);
    // Removing what is gone already changes nothing.
    f.store.dequeue_task(a, 7).await.unwrap();
    assert_eq!(
        f.store.queue_head(b, -1).await.unwrap(),
        Some(queued(b, 2, 1))
    );

    // Progress is kept per endpoint and partition, and a task queued later leaves it alone.
    assert_eq!(f.store.queue_progress(2, a).await.unwrap(), -1);
    f.store.record_queue_progress(2, a, 12).await.unwrap();
    f.store.enqueue_task(&queued(a, 2, 20)).await.unwrap();
    assert_eq!(f.store.queue_progress(2, a).await.unwrap(), 12);
    assert_eq!(f.store.queue_progress(3, a).await.unwrap(), -1);
    assert_eq!(
        f.store.queue_head(a, 12).await.unwrap(),
        Some(queued(a, 2, 20))
    );
    f.store.dequeue_task(a, 20).await.unwrap();

    f.store.forget_queued_endpoint(2, a).await.unwrap();
    assert_eq!(f.store.queued_endpoints(2).await.unwrap(), vec![b]);
    assert_eq!(f.store.queue_progress(2, a).await.unwrap(), -1);
    // Another handle (a restarted dispatcher) sees the same queue.
    let reopened = backend.open().await;
    assert_eq!(
        reopened.queue_head(b, -1).await.unwrap(),
        Some(queued(b, 2, 1))
    );
}

/// Every change to an endpoint made through another handle (another process) shows in the next
/// read here, though this handle has read the endpoint before (the embedded store keeps what it
/// read and checks it against a counter every change moves).
pub(crate) async fn endpoint_reads_show_changes_made_by_another_handle(backend: Backend) {
    let f = backend.fixture().await;
    let other = backend.open().await;
    let ep = endpoint("acme", &["order.created"]);
    f.store.create_endpoint(&ep).await.unwrap();
    let read = || async { f.store.get_endpoint(ep.id).await.unwrap() };
    assert_eq!(read().await.unwrap().secret, ep.secret);
    assert_eq!(
        read().await.unwrap().secret,
        ep.secret,
        "read twice, unchanged"
    );
    let subscribers = || async {
        let list = f.store.subscriptions(&ep.tenant).await.unwrap();
        list.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
    };
    assert_eq!(subscribers().await, vec![ep.id]);
    assert_eq!(subscribers().await, vec![ep.id], "read twice, unchanged");
    let second = endpoint("acme", &["order.created"]);
    other.create_endpoint(&second).await.unwrap();
    let mut both = vec![ep.id, second.id];
    both.sort();
    assert_eq!(
        subscribers().await,
        both,
        "an endpoint created elsewhere subscribes"
    );

    let now = OffsetDateTime::now_utc();
    let pause = EndpointChanges {
        paused: Some(true),
        ..Default::default()
    };
    other.change_endpoint(ep.id, &pause, now).await.unwrap();
    assert!(read().await.unwrap().paused, "the pause shows");
    let moved = EndpointUrl::parse("https://moved.example.com/hook", "url").unwrap();
    let move_it = EndpointChanges {
        url: Some(moved.clone()),
        ..Default::default()
    };
    other.change_endpoint(ep.id, &move_it, now).await.unwrap();
    assert_eq!(read().await.unwrap().url, moved, "the new URL shows");

    let new = SigningSecret::generate().unwrap();
    other
        .rotate_secret(ep.id, &new, now + time::Duration::hours(1))
        .await
        .unwrap();
    let rotated = read().await.unwrap();
    assert_eq!(rotated.secret, new, "the new secret signs");
    assert_eq!(
        rotated.previous_secret.map(|retiring| retiring.secret),
        Some(ep.secret.clone())
    );

    other
        .set_circuit(
            ep.id,
            &CircuitView {
                state: CircuitState::Open,
                open_until: Some(now + time::Duration::minutes(5)),
            },
        )
        .await
        .unwrap();
    assert_eq!(read().await.unwrap().circuit.state, CircuitState::Open);

    assert!(other.disable_endpoint(ep.id, now).await.unwrap());
    assert!(read().await.unwrap().disabled, "the disabling shows");
    assert_eq!(
        subscribers().await,
        both,
        "a disabled endpoint still gets its new deliveries (kept until it is enabled)"
    );

    assert!(other.delete_endpoint(ep.id).await.unwrap());
    assert!(read().await.is_none(), "the deletion shows");
}

/// A change applies to the endpoint as it stands: changes made side by side, or in between (a
/// `410` disabling it), are all kept, and a deleted endpoint is not changed.
pub(crate) async fn endpoint_changes_made_side_by_side_are_all_kept(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &["order.created"]);
    f.store.create_endpoint(&ep).await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(f.store.disable_endpoint(ep.id, now).await.unwrap());
    let moved = EndpointUrl::parse("https://moved.example.com/hook", "url").unwrap();
    let changed = f
        .store
        .change_endpoint(
            ep.id,
            &EndpointChanges {
                url: Some(moved.clone()),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(changed.disabled, "the disabling made meanwhile is kept");
    assert_eq!(changed.url, moved);

    let limit = RateLimit::new(3.0, None, "rate_limit").unwrap();
    let batch = Batching {
        max_events: 40,
        max_wait_ms: 1_500,
    };
    let changes = [
        EndpointChanges {
            paused: Some(true),
            ..Default::default()
        },
        EndpointChanges {
            rate_limit: Some(Some(limit)),
            ..Default::default()
        },
        EndpointChanges {
            max_attempts: Some(Some(4)),
            ..Default::default()
        },
        EndpointChanges {
            subscription: Some(Subscription::All),
            ..Default::default()
        },
        EndpointChanges {
            disabled: Some(false),
            ..Default::default()
        },
        // Settings kept in one document with the rate limit, changed side by side with it.
        EndpointChanges {
            ordering: Some(Ordering::None),
            ..Default::default()
        },
        EndpointChanges {
            max_in_flight: Some(Some(7)),
            ..Default::default()
        },
        EndpointChanges {
            batch: Some(Some(batch)),
            ..Default::default()
        },
    ];
    let at = OffsetDateTime::now_utc();
    let change = |n: usize| f.store.change_endpoint(ep.id, &changes[n], at);
    let results = tokio::join!(
        change(0),
        change(1),
        change(2),
        change(3),
        change(4),
        change(5),
        change(6),
        change(7)
    );
    let results = [
        results.0, results.1, results.2, results.3, results.4, results.5, results.6, results.7,
    ];
    assert!(
        results.iter().all(|r| matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert!(read.paused);
    assert_eq!(read.shaping.rate_limit, Some(limit));
    assert_eq!(read.shaping.ordering, Ordering::None);
    assert_eq!(read.shaping.max_in_flight, Some(7));
    assert_eq!(read.shaping.batch, Some(batch));
    assert_eq!(read.max_attempts, Some(4));
    assert_eq!(read.subscription, Subscription::All);
    assert!(!read.disabled);
    assert_eq!(read.url, moved);

    // A `410` disabling it while a change of another field is made: both are kept.
    for n in 0..5 {
        let url = EndpointUrl::parse(&format!("https://moved.example.com/{n}"), "url").unwrap();
        let changes = EndpointChanges {
            url: Some(url.clone()),
            disabled: None,
            ..Default::default()
        };
        let enable = EndpointChanges {
            disabled: Some(false),
            ..Default::default()
        };
        f.store.change_endpoint(ep.id, &enable, at).await.unwrap();
        let (disabled, changed) = tokio::join!(
            f.store.disable_endpoint(ep.id, at),
            f.store.change_endpoint(ep.id, &changes, at)
        );
        assert!(disabled.unwrap());
        assert!(changed.unwrap().is_some());
        let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
        assert!(read.disabled, "round {n}: the disabling is kept");
        assert_eq!(read.url, url, "round {n}: the change is kept");
    }

    assert!(f.store.delete_endpoint(ep.id).await.unwrap());
    let gone = f
        .store
        .change_endpoint(ep.id, &changes[0], at)
        .await
        .unwrap();
    assert!(gone.is_none());
}

/// A `410 Gone` disables the endpoint as it stands: an edit made while the request was out (a
/// new URL, a pause) is kept.
pub(crate) async fn disabling_an_endpoint_keeps_an_edit_made_meanwhile(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &["order.created"]);
    f.store.create_endpoint(&ep).await.unwrap();
    let mut edited = ep.clone();
    edited.url = EndpointUrl::parse("https://moved.example.com/hook", "url").unwrap();
    edited.paused = true;
    assert!(f.store.update_endpoint(&edited).await.unwrap());

    assert!(
        f.store
            .disable_endpoint(ep.id, OffsetDateTime::now_utc())
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .disable_endpoint(ep.id, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        "disabled already: not disabled by this call"
    );
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert!(read.disabled);
    assert!(read.paused, "the pause made meanwhile stays");
    assert_eq!(read.url, edited.url, "the URL set meanwhile stays");

    assert!(f.store.delete_endpoint(ep.id).await.unwrap());
    assert!(
        !f.store
            .disable_endpoint(ep.id, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        "a deleted endpoint stays deleted"
    );
}

pub(crate) async fn a_rotated_secret_is_kept_as_previous_until_it_expires(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let new = SigningSecret::generate().unwrap();
    let until = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let rotated = f
        .store
        .rotate_secret(ep.id, &new, until)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret, new);
    let previous = rotated.previous_secret.clone().unwrap();
    assert_eq!(previous.secret, ep.secret);
    assert_eq!(millis(previous.expires_at), millis(until));
    let now = OffsetDateTime::now_utc();
    assert_eq!(rotated.signing_secrets(now), vec![&new, &ep.secret]);
    assert_eq!(
        rotated.signing_secrets(until),
        vec![&new],
        "expired: only the new one"
    );
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.previous_secret, rotated.previous_secret);
    // Rotating again retires the secret that was current, not the one before it.
    let newest = SigningSecret::generate().unwrap();
    let again = f
        .store
        .rotate_secret(ep.id, &newest, until)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.previous_secret.unwrap().secret, new);
    f.store.delete_endpoint(ep.id).await.unwrap();
    assert!(
        f.store
            .rotate_secret(ep.id, &newest, until)
            .await
            .unwrap()
            .is_none()
    );
}

pub(crate) async fn endpoint_lists_are_per_tenant_and_paged(backend: Backend) {
    let f = backend.fixture().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let ep = endpoint("acme", &[]);
        f.store.create_endpoint(&ep).await.unwrap();
        ids.push(ep.id);
    }
    f.store
        .create_endpoint(&endpoint("other", &[]))
        .await
        .unwrap();

    let first = f
        .store
        .list_endpoints(&tenant("acme"), &PageRequest::first(3))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    let second = f
        .store
        .list_endpoints(
            &tenant("acme"),
            &PageRequest {
                after: first.next.clone(),
                limit: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 2);
    assert!(second.next.is_none());
    let mut seen: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|e| e.id)
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
}

pub(crate) async fn only_live_subscribed_endpoints_disabled_ones_too_receive_an_event_type(
    backend: Backend,
) {
    let f = backend.fixture().await;
    let orders = endpoint("acme", &["order.created"]);
    let everything = endpoint("acme", &["*"]);
    let invoices = endpoint("acme", &["invoice.paid"]);
    let mut disabled = endpoint("acme", &["order.created"]);
    disabled.disabled = true;
    let other_tenant = endpoint("other", &["order.created"]);
    let deleted = endpoint("acme", &["order.created"]);
    for ep in [
        &orders,
        &everything,
        &invoices,
        &disabled,
        &other_tenant,
        &deleted,
    ] {
        f.store.create_endpoint(ep).await.unwrap();
    }
    f.store.delete_endpoint(deleted.id).await.unwrap();

    let subscriptions = f.store.subscriptions(&tenant("acme")).await.unwrap();
    let ids: Vec<_> = subscriptions.iter().map(|(id, _)| *id).collect();
    // A disabled endpoint's deliveries are kept (queued, unsent, by the dispatcher), not lost.
    let mut want = vec![orders.id, everything.id, invoices.id, disabled.id];
    want.sort();
    assert_eq!(ids, want, "the live endpoints of the tenant, in id order");
    let mut got: Vec<_> = subscriptions
        .iter()
        .filter(|(_, subscription)| subscription.matches(&event_type("order.created")))
        .map(|(id, _)| *id)
        .collect();
    got.sort();
    let mut want = vec![orders.id, everything.id, disabled.id];
    want.sort();
    assert_eq!(got, want);
}
