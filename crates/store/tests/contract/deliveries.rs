//! Deliveries listed by filter, and data that survives reopening the store.

use super::*;

pub(crate) async fn deliveries_filter_by_event_endpoint_and_status(backend: Backend) {
    let f = backend.fixture().await;
    let a = endpoint("acme", &[]);
    let b = endpoint("acme", &[]);
    let first = new_event("acme", None, &[&a, &b]);
    let second = new_event("acme", None, &[&a]);
    for new in [&first, &second] {
        f.store
            .create_event(new, IdempotencyWindow::default())
            .await
            .unwrap();
    }
    delivered(&*f.store, first.deliveries[0].id).await;

    let count = |filter: DeliveryFilter| {
        let store = f.store.clone();
        async move {
            store
                .list_deliveries(&filter, &PageRequest::default())
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(
        count(DeliveryFilter {
            event_id: Some(first.event.id),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(DeliveryFilter {
            endpoint_id: Some(a.id),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(DeliveryFilter {
            tenant: Some(tenant("acme")),
            status: Some(DeliveryStatus::Delivered),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(DeliveryFilter {
            tenant: Some(tenant("acme")),
            status: Some(DeliveryStatus::Pending),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(DeliveryFilter {
            tenant: Some(tenant("other")),
            ..Default::default()
        })
        .await,
        0
    );

    let acme = DeliveryFilter {
        tenant: Some(tenant("acme")),
        ..Default::default()
    };
    let page = f
        .store
        .list_deliveries(&acme, &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = f
        .store
        .list_deliveries(
            &acme,
            &PageRequest {
                after: page.next,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next.is_none());

    // ScyllaDB reads deliveries through index tables keyed by tenant, event or endpoint, and
    // refuses a listing that names none rather than scan the whole table.
    let unfiltered = f
        .store
        .list_deliveries(&DeliveryFilter::default(), &PageRequest::default())
        .await;
    match backend {
        Backend::Sqlite(_) => assert_eq!(unfiltered.unwrap().items.len(), 3),
        Backend::Scylla(_) => assert!(
            matches!(&unfiltered, Err(hookstream_store::StoreError::Backend(m)) if m.contains("needs a tenant, event or endpoint filter")),
            "{unfiltered:?}"
        ),
    }
}

pub(crate) async fn data_survives_reopening_the_file(backend: Backend) {
    let ep = endpoint("acme", &[]);
    {
        let store = backend.open().await;
        store.create_endpoint(&ep).await.unwrap();
    }
    let reopened = backend.open().await;
    assert!(reopened.get_endpoint(ep.id).await.unwrap().is_some());
}

pub(crate) async fn deliveries_filter_by_event_type_and_time(backend: Backend) {
    let f = backend.fixture().await;
    let a = endpoint("acme", &[]);
    let mut order = new_event("acme", None, &[&a]);
    let mut refund = new_event("acme", None, &[&a]);
    refund.event.event_type = event_type("refund.issued");
    refund.deliveries[0].event_type = event_type("refund.issued");
    // The refund two hours after the order, to the millisecond both stores keep.
    let at = now_millis() - time::Duration::hours(3);
    order.event.created_at = at;
    order.deliveries[0].created_at = at;
    refund.event.created_at = at + time::Duration::hours(2);
    refund.deliveries[0].created_at = at + time::Duration::hours(2);
    for new in [&order, &refund] {
        f.store
            .create_event(new, IdempotencyWindow::default())
            .await
            .unwrap();
    }
    let ids = |filter: DeliveryFilter| {
        let store = f.store.clone();
        async move {
            store
                .list_deliveries(&filter, &PageRequest::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|d| d.id)
                .collect::<Vec<_>>()
        }
    };
    let of_acme = || DeliveryFilter {
        tenant: Some(tenant("acme")),
        ..Default::default()
    };
    assert_eq!(
        ids(DeliveryFilter {
            event_type: Some(event_type("refund.issued")),
            ..of_acme()
        })
        .await,
        [refund.deliveries[0].id]
    );
    assert_eq!(
        ids(DeliveryFilter {
            endpoint_id: Some(a.id),
            event_type: Some(event_type("order.created")),
            ..Default::default()
        })
        .await,
        [order.deliveries[0].id]
    );
    // `since` takes what was created at or after it, `until` what was created before it.
    assert_eq!(
        ids(DeliveryFilter {
            since: Some(at + time::Duration::hours(2)),
            ..of_acme()
        })
        .await,
        [refund.deliveries[0].id]
    );
    assert_eq!(
        ids(DeliveryFilter {
            until: Some(at + time::Duration::hours(2)),
            ..of_acme()
        })
        .await,
        [order.deliveries[0].id]
    );
    assert_eq!(
        ids(DeliveryFilter {
            since: Some(at),
            until: Some(at + time::Duration::hours(3)),
            ..of_acme()
        })
        .await
        .len(),
        2
    );
    assert!(
        ids(DeliveryFilter {
            since: Some(at + time::Duration::hours(2) + time::Duration::milliseconds(1)),
            ..of_acme()
        })
        .await
        .is_empty()
    );
}
