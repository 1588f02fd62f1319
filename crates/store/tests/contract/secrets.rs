//! Signing secrets sealed at rest, refused when planted, re-sealed under a newer key.

use super::*;

#[tokio::test]
pub(crate) async fn secrets_are_sealed_in_the_file_and_open_only_with_the_key() {
    let backend = Backend::sqlite();
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let rotated_to = SigningSecret::generate().unwrap();
    let until = OffsetDateTime::now_utc() + Duration::from_secs(60);
    f.store
        .rotate_secret(ep.id, &rotated_to, until)
        .await
        .unwrap();
    let Backend::Sqlite(dir) = &backend else {
        unreachable!("an embedded backend")
    };
    // Whatever is on disk, the database and its write-ahead log, holds neither secret.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for secret in [ep.secret.expose(), rotated_to.expose()] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret in plain text on disk"
            );
        }
    }
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.secret, rotated_to);
    assert_eq!(read.previous_secret.unwrap().secret, ep.secret);

    let path = dir.path().join("store.db");
    let wrong_key =
        SecretSealer::from_base64_key("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
    let other = SqliteStore::open(&path, wrong_key).await.unwrap();
    assert!(matches!(
        other.get_endpoint(ep.id).await,
        Err(hookstream_store::StoreError::Corrupt { .. })
    ));
    let no_key = SqliteStore::open(&path, SecretSealer::plaintext())
        .await
        .unwrap();
    assert!(no_key.get_endpoint(ep.id).await.is_err());
}

/// Issue 19, item 9: a plain secret in the store was accepted although a key was set, so anyone
/// who could write the database could plant one and forge webhooks; and one secret that did not
/// open failed intake for the whole tenant.
pub(crate) async fn a_planted_plain_secret_is_refused_and_stops_only_its_endpoint(
    backend: Backend,
) {
    // An install from before the key: its secrets are refused until the operator has them
    // sealed (one start with HOOKSTREAM_SEAL_PLAIN_SECRETS).
    let older = backend.open_without_key().await;
    let from_before = endpoint("acme", &[]);
    older.create_endpoint(&from_before).await.unwrap();
    let refused = backend.open().await.get_endpoint(from_before.id).await;
    assert!(refused.is_err(), "plain text is refused with a key");
    backend
        .open_with(
            Duration::from_secs(30 * 86_400),
            sealer().sealing_plain_secrets_on_open(),
        )
        .await;
    let sealed = backend.open().await;
    let read = sealed.get_endpoint(from_before.id).await.unwrap().unwrap();
    assert_eq!(read.secret, from_before.secret, "sealed, and opens");

    // Planted after that: refused, also by every later start.
    let planted = endpoint("acme", &[]);
    older.create_endpoint(&planted).await.unwrap();
    for store in [sealed.clone(), backend.open().await] {
        let refused = store.get_endpoint(planted.id).await.unwrap_err();
        assert!(refused.to_string().contains("plain text"), "{refused}");
    }
    // Intake reads no secret: the tenant's events still fan out, to both endpoints (the
    // dispatcher refuses the planted one's deliveries).
    let mut subscribed: Vec<_> = sealed
        .subscriptions(&tenant("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    subscribed.sort();
    let mut want = vec![from_before.id, planted.id];
    want.sort();
    assert_eq!(subscribed, want);

    // Rotating gets rid of it: the planted secret does not stay on as the previous one.
    let fresh = SigningSecret::generate().unwrap();
    let until = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let rotated = sealed
        .rotate_secret(planted.id, &fresh, until)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret, fresh);
    assert!(rotated.previous_secret.is_none());
}

/// Issue 24, item 4: the sealing key rotates. Secrets sealed under the single key (the form
/// without a key id) or an older key of the ring are re-sealed under the ring's first key,
/// current and previous secrets of live endpoints (a deleted one's is never read again); after
/// that the old key can go.
pub(crate) async fn secrets_under_an_older_key_are_resealed_so_the_old_key_can_go(
    backend: Backend,
) {
    let new_key = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    let ring = |text: &str| SecretSealer::from_key_ring(text).unwrap();
    let days = Duration::from_secs(30 * 86_400);
    let single = backend.open().await;
    let (kept, rotated, deleted) = (
        endpoint("acme", &[]),
        endpoint("acme", &[]),
        endpoint("globex", &[]),
    );
    for ep in [&kept, &rotated, &deleted] {
        single.create_endpoint(ep).await.unwrap();
    }
    let until = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let rotated = single
        .rotate_secret(rotated.id, &SigningSecret::generate().unwrap(), until)
        .await
        .unwrap()
        .unwrap();
    single.delete_endpoint(deleted.id).await.unwrap();
    // A secret planted in plain text is counted, not sealed: it stays refused.
    let planted = endpoint("acme", &[]);
    backend
        .open_without_key()
        .await
        .create_endpoint(&planted)
        .await
        .unwrap();
    let census = single.reseal_secrets().await.unwrap();
    assert_eq!(
        (census.resealed, census.current, census.plain),
        (0, 3, 1),
        "one key: nothing to re-seal; {census:?}"
    );
    let by_key = |pairs: &[(&str, u64)]| -> std::collections::BTreeMap<String, u64> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    };
    assert_eq!(census.by_key, by_key(&[("unnamed", 3)]));

    // The new key first, the old one after it: everything opens, and one pass re-seals.
    let rotating = backend
        .open_with(
            days,
            ring(&format!("2026-12={new_key},2026-06={SECRET_KEY}")),
        )
        .await;
    assert_eq!(secret_of(&rotating, kept.id).await, kept.secret);
    let census = rotating.reseal_secrets().await.unwrap();
    assert_eq!(
        (
            census.resealed,
            census.current,
            census.older_key,
            census.plain
        ),
        (3, 3, 0, 1),
        "{census:?}"
    );
    assert_eq!(census.by_key, by_key(&[("2026-12", 3)]));
    let again = rotating.reseal_secrets().await.unwrap();
    assert_eq!((again.resealed, again.current), (0, 3), "{again:?}");

    // The old key removed: every secret still opens, the previous one too.
    let new_only = backend
        .open_with(days, ring(&format!("2026-12={new_key}")))
        .await;
    assert_eq!(secret_of(&new_only, kept.id).await, kept.secret);
    let read = new_only.get_endpoint(rotated.id).await.unwrap().unwrap();
    assert_eq!(read.secret, rotated.secret);
    assert_eq!(read.previous_secret, rotated.previous_secret);
    let census = new_only.reseal_secrets().await.unwrap();
    assert_eq!((census.current, census.unopenable), (3, 0), "{census:?}");
    let refused = new_only.get_endpoint(planted.id).await.unwrap_err();
    assert!(refused.to_string().contains("plain text"), "{refused}");
    // A service left on the old key alone opens none of them, and says so.
    assert!(single.get_endpoint(kept.id).await.is_err());
    let stale = backend.open().await.reseal_secrets().await.unwrap();
    assert_eq!((stale.current, stale.unopenable), (0, 3), "{stale:?}");
    assert!(stale.by_key.is_empty(), "{stale:?}");
}
