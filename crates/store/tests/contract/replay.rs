//! Dead letters indexed and listed, and replay batches.

use super::*;

pub(crate) async fn dead_letters_are_indexed_once_and_listed_by_filter_and_page(backend: Backend) {
    let f = backend.fixture().await;
    let a = endpoint("acme", &[]);
    let b = endpoint("acme", &[]);
    f.store.create_endpoint(&a).await.unwrap();
    f.store.create_endpoint(&b).await.unwrap();
    let of_a = dead_letters(&f, &a, 5, AttemptClass::Http4xxPermanent).await;
    let of_b = dead_letters(&f, &b, 2, AttemptClass::NetworkError).await;
    // Read again after a crash: indexing the same letter changes nothing.
    f.store.index_dead_letter(&of_a[0]).await.unwrap();

    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    let filter = DeadLetterFilter {
        endpoint_id: Some(a.id),
        ..Default::default()
    };
    loop {
        let got = f.store.list_dead_letters(&filter, &page).await.unwrap();
        seen.extend(got.items.iter().map(|d| d.letter.task.delivery_id));
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    let expected: Vec<DeliveryId> = of_a.iter().map(|l| l.task.delivery_id).collect();
    assert_eq!(
        seen, expected,
        "every letter of the endpoint once, in the order they died"
    );

    let by_class = DeadLetterFilter {
        class: Some(AttemptClass::NetworkError),
        ..Default::default()
    };
    let got = f
        .store
        .list_dead_letters(&by_class, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(got.items.len(), of_b.len());
    let window = DeadLetterFilter {
        endpoint_id: Some(a.id),
        since: Some(of_a[1].dead_lettered_at),
        until: Some(of_a[3].dead_lettered_at),
        ..Default::default()
    };
    let got = f
        .store
        .list_dead_letters(&window, &PageRequest::default())
        .await
        .unwrap();
    let ids: Vec<DeliveryId> = got
        .items
        .iter()
        .map(|d| d.letter.task.delivery_id)
        .collect();
    assert_eq!(
        ids,
        vec![of_a[1].task.delivery_id, of_a[2].task.delivery_id]
    );
    let one = f
        .store
        .get_dead_letter(of_b[0].task.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.letter, of_b[0]);
    assert_eq!(one.replays, 0);
}

pub(crate) async fn a_batch_replays_each_dead_letter_once_unless_repeats_are_allowed(
    backend: Backend,
) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let letters = dead_letters(&f, &ep, 3, AttemptClass::Http4xxPermanent).await;

    let first = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&first, &pending_items(&letters))
        .await
        .unwrap();
    assert_eq!(f.store.running_batches().await.unwrap(), vec![first.id]);
    let mut created = Vec::new();
    for position in 0..3 {
        let replay = DeliveryId::generate();
        let step = f
            .store
            .replay_item(first.id, position, replay)
            .await
            .unwrap();
        assert_eq!(
            step,
            ReplayStep::Decided(ItemOutcome::Created {
                delivery_id: replay,
                published: false
            })
        );
        // A runner that crashed after the write and tries again gets the same answer, and
        // nothing new.
        let again = f
            .store
            .replay_item(first.id, position, DeliveryId::generate())
            .await
            .unwrap();
        assert_eq!(again, step);
        created.push(replay);
    }
    for id in &created {
        let delivery = f.store.get_delivery(*id).await.unwrap().unwrap();
        assert_eq!(delivery.status, DeliveryStatus::Pending);
    }
    // Created but not yet on Kafka: still unfinished, until marked published.
    assert_eq!(
        f.store
            .unfinished_items(first.id, None, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    f.store.mark_item_published(first.id, 0).await.unwrap();
    let left = f.store.unfinished_items(first.id, None, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|i| i.position).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let done = f
        .store
        .finish_batch(first.id, BatchStatus::Completed, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, BatchStatus::Completed);
    assert_eq!(done.counts.created, 3);
    assert!(done.finished_at.is_some());
    assert!(f.store.running_batches().await.unwrap().is_empty());
    let letter = f
        .store
        .get_dead_letter(letters[0].task.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(letter.replays, 1);

    // A second batch over the same letters skips them all...
    let second = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&second, &pending_items(&letters))
        .await
        .unwrap();
    for position in 0..3 {
        let step = f
            .store
            .replay_item(second.id, position, DeliveryId::generate())
            .await
            .unwrap();
        assert_eq!(
            step,
            ReplayStep::Decided(ItemOutcome::Skipped(SkipReason::AlreadyReplayed))
        );
    }
    let counts = f.store.get_batch(second.id).await.unwrap().unwrap().counts;
    assert_eq!(counts.skipped, vec![(SkipReason::AlreadyReplayed, 3)]);
    // ...unless it asks for repeats.
    let third = batch(
        BatchSelection::Deliveries(vec![letters[0].task.delivery_id]),
        true,
    );
    f.store
        .create_batch(&third, &pending_items(&letters[..1]))
        .await
        .unwrap();
    let step = f
        .store
        .replay_item(third.id, 0, DeliveryId::generate())
        .await
        .unwrap();
    assert!(matches!(
        step,
        ReplayStep::Decided(ItemOutcome::Created { .. })
    ));
    let read = f.store.get_batch(third.id).await.unwrap().unwrap();
    assert_eq!(read.selection, third.selection);
    assert!(read.allow_repeat);
}

pub(crate) async fn a_cancelled_batch_creates_nothing_more(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let letters = dead_letters(&f, &ep, 2, AttemptClass::Http4xxPermanent).await;
    let b = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&b, &pending_items(&letters))
        .await
        .unwrap();
    let step = f
        .store
        .replay_item(b.id, 0, DeliveryId::generate())
        .await
        .unwrap();
    assert!(matches!(
        step,
        ReplayStep::Decided(ItemOutcome::Created { .. })
    ));
    let cancelled = f
        .store
        .finish_batch(b.id, BatchStatus::Cancelled, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.status, BatchStatus::Cancelled);
    let replay = DeliveryId::generate();
    let step = f.store.replay_item(b.id, 1, replay).await.unwrap();
    assert_eq!(step, ReplayStep::BatchStopped(BatchStatus::Cancelled));
    assert!(f.store.get_delivery(replay).await.unwrap().is_none());
    // Finishing again changes nothing: a cancelled batch does not become completed.
    let again = f
        .store
        .finish_batch(b.id, BatchStatus::Completed, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.status, BatchStatus::Cancelled);
    let items = f
        .store
        .list_batch_items(b.id, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(items.items[0].outcome.kind(), "created");
    assert_eq!(items.items[1].outcome, ItemOutcome::Pending);
}

pub(crate) async fn replays_skip_deleted_and_disabled_endpoints(backend: Backend) {
    let f = backend.fixture().await;
    let mut disabled = endpoint("acme", &[]);
    let deleted = endpoint("acme", &[]);
    f.store.create_endpoint(&disabled).await.unwrap();
    f.store.create_endpoint(&deleted).await.unwrap();
    let mut letters = dead_letters(&f, &disabled, 1, AttemptClass::Http4xxPermanent).await;
    letters.extend(dead_letters(&f, &deleted, 1, AttemptClass::Http4xxPermanent).await);
    disabled.disabled = true;
    f.store.update_endpoint(&disabled).await.unwrap();
    f.store.delete_endpoint(deleted.id).await.unwrap();
    let b = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&b, &pending_items(&letters))
        .await
        .unwrap();
    let first = f
        .store
        .replay_item(b.id, 0, DeliveryId::generate())
        .await
        .unwrap();
    let second = f
        .store
        .replay_item(b.id, 1, DeliveryId::generate())
        .await
        .unwrap();
    assert_eq!(
        first,
        ReplayStep::Decided(ItemOutcome::Skipped(SkipReason::EndpointDisabled))
    );
    assert_eq!(
        second,
        ReplayStep::Decided(ItemOutcome::Skipped(SkipReason::EndpointDeleted))
    );
}

pub(crate) async fn batches_are_listed_for_everyone_or_for_one_tenant(backend: Backend) {
    let f = backend.fixture().await;
    let acme = Tenant::parse("acme", "tenant").unwrap();
    let globex = Tenant::parse("globex", "tenant").unwrap();
    let mut created = Vec::new();
    for tenant in [Some(&acme), None, Some(&globex), Some(&acme)] {
        let mut b = batch(
            BatchSelection::Deliveries(vec![DeliveryId::generate()]),
            false,
        );
        b.tenant = tenant.cloned();
        b.status = BatchStatus::Completed;
        f.store.create_batch(&b, &[]).await.unwrap();
        created.push(b.id);
    }
    let ids = |page: hookstream_store::Page<Batch>| -> Vec<BatchId> {
        page.items.iter().map(|b| b.id).collect()
    };
    let all = f
        .store
        .list_batches(None, &PageRequest::first(10))
        .await
        .unwrap();
    // Newest first by id (ids made within one millisecond sort at random among themselves).
    let mut newest_first = created.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids(all), newest_first);
    let mut acme_ids = [created[0], created[3]];
    acme_ids.sort_by(|a, b| b.cmp(a));

    let first = f
        .store
        .list_batches(Some(&acme), &PageRequest::first(1))
        .await
        .unwrap();
    assert_eq!(first.items[0].tenant.as_ref(), Some(&acme));
    let next = first.next.clone().expect("a second page");
    assert_eq!(ids(first), vec![acme_ids[0]]);
    let second = f
        .store
        .list_batches(
            Some(&acme),
            &PageRequest {
                limit: 1,
                after: Some(next),
            },
        )
        .await
        .unwrap();
    assert!(second.next.is_none());
    assert_eq!(ids(second), vec![acme_ids[1]]);
    let stored = f.store.get_batch(created[2]).await.unwrap().unwrap();
    assert_eq!(stored.tenant.as_ref(), Some(&globex));
}

pub(crate) async fn dead_letters_are_listed_by_words_of_their_reason(backend: Backend) {
    let f = backend.fixture().await;
    let a = endpoint("acme", &[]);
    f.store.create_endpoint(&a).await.unwrap();
    // On SQLite, more letters than one list reads to match reasons (2,000), so a page ends
    // early and the next goes on; on ScyllaDB fewer (each is several writes).
    let n: u64 = match backend {
        Backend::Sqlite(_) => 2_100,
        Backend::Scylla(_) => 250,
    };
    let start = OffsetDateTime::now_utc() - Duration::from_secs(3 * 3600);
    let mut gave_up = Vec::new();
    for i in 0..n {
        let new = new_event("acme", None, &[&a]);
        let at = start + Duration::from_secs(i);
        let mut letter = dead_letter_of(&new.deliveries[0], AttemptClass::Timeout, at);
        // One in three gave up after its retries, and none of the last eighth.
        if i % 3 == 0 && i + n / 8 < n {
            letter.reason = "gave up after 13 attempts; the last was TIMEOUT".into();
            gave_up.push(letter.task.delivery_id);
        }
        f.store.index_dead_letter(&letter).await.unwrap();
    }
    // Every page followed to its end: what each filter lists, and how many pages it took.
    let listed = |filter: DeadLetterFilter, limit: u32| {
        let store = f.store.clone();
        async move {
            let mut seen = Vec::new();
            let mut pages = 0;
            let mut page = PageRequest::first(limit);
            loop {
                let got = store.list_dead_letters(&filter, &page).await.unwrap();
                assert!(got.items.len() <= limit as usize);
                pages += 1;
                seen.extend(got.items.iter().map(|d| d.letter.task.delivery_id));
                match got.next {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
            (seen, pages)
        }
    };
    // Ignoring case, each once, in the order they died, across pages of many reads.
    let by_words = DeadLetterFilter {
        endpoint_id: Some(a.id),
        reason: Some("GAVE UP".into()),
        ..Default::default()
    };
    let (seen, _) = listed(by_words.clone(), 50).await;
    assert_eq!(seen, gave_up);
    let (none, pages) = listed(
        DeadLetterFilter {
            reason: Some("no such words".into()),
            ..Default::default()
        },
        50,
    )
    .await;
    assert!(none.is_empty());
    if matches!(backend, Backend::Sqlite(_)) {
        assert!(
            pages >= 2,
            "a list that found nothing in 2,000 rows goes on in another page"
        );
    }

    // A batch keeps its filter's words.
    let planned = batch(BatchSelection::Filter(by_words.clone()), false);
    f.store.create_batch(&planned, &[]).await.unwrap();
    let stored = f.store.get_batch(planned.id).await.unwrap().unwrap();
    assert_eq!(stored.selection, BatchSelection::Filter(by_words));
}
