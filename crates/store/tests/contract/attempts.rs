//! Attempt claims and records: numbering, one copy sending, final states that never change.

use super::*;

pub(crate) async fn attempts_are_numbered_in_order_and_move_the_delivery(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    let new = new_event("acme", None, &[&ep]);
    f.store
        .create_event(&new, IdempotencyWindow::default())
        .await
        .unwrap();
    let id = new.deliveries[0].id;

    let first = match f.store.claim_attempt(id, 0, LEASE).await.unwrap() {
        ClaimOutcome::Claimed { delivery, claim } => {
            assert_eq!(delivery.status, DeliveryStatus::Delivering);
            claim
        }
        other => panic!("not claimed: {other:?}"),
    };
    assert_eq!(first.number, 1);
    let started = f.store.get_delivery(id).await.unwrap().unwrap();
    assert_eq!(started.status, DeliveryStatus::Delivering);
    let due = OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap();
    let mut failed = attempt(id, AttemptClass::Http5xxRetryable, Some(503));
    failed.next_attempt_at = Some(due);
    failed.tier = Some("5s".into());
    f.store
        .record_attempt(&first, &failed, DeliveryStatus::Retrying)
        .await
        .unwrap();
    let retrying = f.store.get_delivery(id).await.unwrap().unwrap();
    assert_eq!(retrying.status, DeliveryStatus::Retrying);
    assert_eq!(retrying.next_attempt_at, Some(due));
    assert_eq!(retrying.next_tier.as_deref(), Some("5s"));
    let second = claim(&*f.store, id, 1).await;
    assert_eq!(second.number, 2);
    f.store
        .record_attempt(
            &second,
            &attempt(id, AttemptClass::Http2xxDelivered, Some(200)),
            DeliveryStatus::Delivered,
        )
        .await
        .unwrap();

    let delivery = f.store.get_delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    assert_eq!(delivery.attempts, 2);
    let attempts = f.store.list_attempts(id).await.unwrap();
    let classes: Vec<_> = attempts
        .iter()
        .map(|a| (a.number, a.class, a.status_code))
        .collect();
    assert_eq!(
        classes,
        vec![
            (1, AttemptClass::Http5xxRetryable, Some(503)),
            (2, AttemptClass::Http2xxDelivered, Some(200)),
        ]
    );
    assert_eq!(attempts[0].next_attempt_at, Some(due));
    assert_eq!(attempts[0].tier.as_deref(), Some("5s"));
    assert_eq!(delivery.next_attempt_at, None, "delivered: nothing is due");

    // A final delivery is claimed by no copy, whatever its attempt count.
    for made in [0, 1, 2, 3] {
        assert!(matches!(
            f.store.claim_attempt(id, made, LEASE).await.unwrap(),
            ClaimOutcome::Final(d) if d.status == DeliveryStatus::Delivered
        ));
    }
    assert_eq!(
        f.store
            .claim_attempt(DeliveryId::generate(), 0, LEASE)
            .await
            .unwrap(),
        ClaimOutcome::Missing
    );
}

/// Two copies of one task: only one may send while its claim holds, and a copy behind the
/// store's count is stale.
pub(crate) async fn one_copy_claims_an_attempt_and_a_stale_copy_none(backend: Backend) {
    let f = backend.fixture().await;
    let new = new_event("acme", None, &[&endpoint("acme", &[])]);
    f.store
        .create_event(&new, IdempotencyWindow::default())
        .await
        .unwrap();
    let id = new.deliveries[0].id;

    // Racing copies: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = f.store.clone();
            tokio::spawn(async move { store.claim_attempt(id, 0, LEASE).await.unwrap() })
        })
        .collect();
    let mut claims = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            ClaimOutcome::Claimed { claim, .. } => claims.push(claim),
            ClaimOutcome::Busy { until } => assert!(until > OffsetDateTime::now_utc()),
            other => panic!("a racing copy got {other:?}"),
        }
    }
    assert_eq!(claims.len(), 1, "exactly one copy claims the attempt");
    let winner = claims.remove(0);

    // A claim given back unused is free at once, under the same number.
    f.store.release_claim(&winner).await.unwrap();
    let again = claim(&*f.store, id, 0).await;
    assert_eq!(again.number, winner.number);
    assert_ne!(again.token, winner.token);
    // The released claim cannot record over the one that replaced it.
    let late = attempt(id, AttemptClass::Http5xxRetryable, Some(503));
    assert_eq!(
        f.store
            .record_attempt(&winner, &late, DeliveryStatus::Retrying)
            .await
            .unwrap(),
        RecordOutcome::ClaimLost
    );
    f.store
        .record_attempt(&again, &late, DeliveryStatus::Retrying)
        .await
        .unwrap();
    assert!(matches!(
        f.store.claim_attempt(id, 0, LEASE).await.unwrap(),
        ClaimOutcome::Stale(d) if d.attempts == 1
    ));
    assert_eq!(claim(&*f.store, id, 1).await.number, 2);
}

/// A copy whose lease ran out while it was still sending (or a stale copy of any kind) cannot
/// turn a recorded final status into another, and a retried record counts once.
pub(crate) async fn final_states_never_change_and_a_retried_record_counts_once(backend: Backend) {
    let f = backend.fixture().await;
    let new = new_event("acme", None, &[&endpoint("acme", &[])]);
    f.store
        .create_event(&new, IdempotencyWindow::default())
        .await
        .unwrap();
    let id = new.deliveries[0].id;

    // The first copy's lease is over at once; a second copy claims the same attempt.
    let slow = match f.store.claim_attempt(id, 0, Duration::ZERO).await.unwrap() {
        ClaimOutcome::Claimed { claim, .. } => claim,
        other => panic!("not claimed: {other:?}"),
    };
    let fast = claim(&*f.store, id, 0).await;
    assert_eq!(fast.number, slow.number);
    let ok = attempt(id, AttemptClass::Http2xxDelivered, Some(200));
    for _ in 0..2 {
        assert_eq!(
            f.store
                .record_attempt(&fast, &ok, DeliveryStatus::Delivered)
                .await
                .unwrap(),
            RecordOutcome::Recorded,
            "recording again with the same claim is answered, not counted"
        );
    }
    for (class, code, status) in [
        (
            AttemptClass::Http5xxRetryable,
            503,
            DeliveryStatus::Retrying,
        ),
        (
            AttemptClass::Http4xxPermanent,
            400,
            DeliveryStatus::DeadLettered,
        ),
    ] {
        assert_eq!(
            f.store
                .record_attempt(&slow, &attempt(id, class, Some(code)), status)
                .await
                .unwrap(),
            RecordOutcome::ClaimLost
        );
    }
    let delivery = f.store.get_delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    assert_eq!(delivery.attempts, 1);
    let attempts = f.store.list_attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(200));

    // Dead-lettered is as final as delivered.
    let other = new_event("acme", None, &[&endpoint("acme", &[])]);
    f.store
        .create_event(&other, IdempotencyWindow::default())
        .await
        .unwrap();
    let gone = other.deliveries[0].id;
    record(
        &*f.store,
        gone,
        0,
        AttemptClass::Http4xxPermanent,
        400,
        DeliveryStatus::DeadLettered,
    )
    .await;
    assert!(matches!(
        f.store.claim_attempt(gone, 1, LEASE).await.unwrap(),
        ClaimOutcome::Final(d) if d.status == DeliveryStatus::DeadLettered
    ));
}

pub(crate) async fn concurrent_writes_all_land_and_a_failing_one_fails_alone(backend: Backend) {
    let ep = endpoint("acme", &[]);
    let news: Vec<NewEvent> = (0..100).map(|_| new_event("acme", None, &[&ep])).collect();
    let ids: Vec<DeliveryId> = news.iter().map(|n| n.deliveries[0].id).collect();
    {
        let store = backend.open().await;
        store
            .create_events(&news, IdempotencyWindow::default())
            .await
            .unwrap();
        let mut claims = Vec::new();
        for &id in &ids {
            claims.push(claim(&*store, id, 0).await);
        }
        // Queued together, so the embedded store commits them in shared transactions.
        let mut writes = Vec::new();
        for claim in claims {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                let delivered =
                    attempt(claim.delivery_id, AttemptClass::Http2xxDelivered, Some(200));
                store
                    .record_attempt(&claim, &delivered, DeliveryStatus::Delivered)
                    .await
            }));
        }
        let missing = DeliveryId::generate();
        let doomed = {
            let store = store.clone();
            tokio::spawn(async move {
                let claim = AttemptClaim {
                    delivery_id: missing,
                    number: 1,
                    token: "never taken".into(),
                    until: OffsetDateTime::now_utc(),
                };
                let lost = attempt(missing, AttemptClass::Http2xxDelivered, Some(200));
                store
                    .record_attempt(&claim, &lost, DeliveryStatus::Delivered)
                    .await
            })
        };
        for write in writes {
            assert_eq!(write.await.unwrap().unwrap(), RecordOutcome::Recorded);
        }
        assert!(matches!(
            doomed.await.unwrap(),
            Err(hookstream_store::StoreError::NotFound(_))
        ));
        assert!(store.get_delivery(missing).await.unwrap().is_none());
    }
    // What was acknowledged is on disk.
    let reopened = backend.open().await;
    for id in ids {
        let delivery = reopened.get_delivery(id).await.unwrap().unwrap();
        assert_eq!(delivery.status, DeliveryStatus::Delivered);
        assert_eq!(reopened.list_attempts(id).await.unwrap().len(), 1);
    }
}
