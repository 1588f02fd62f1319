//! Tenant API keys.

use super::*;

pub(crate) async fn api_keys_are_kept_per_tenant_and_revoked_once(backend: Backend) {
    let f = backend.fixture().await;
    let acme = Tenant::parse("acme", "tenant").unwrap();
    let globex = Tenant::parse("globex", "tenant").unwrap();
    let ci = api_key(&acme, "ci", 1);
    let mut deploy = api_key(&acme, "deploy", 2);
    // Created a moment later, so the list order is defined.
    deploy.created_at = ci.created_at + time::Duration::milliseconds(1);
    let other = api_key(&globex, "ci", 3);
    for key in [&ci, &deploy, &other] {
        f.store.create_api_key(key).await.unwrap();
    }
    assert_eq!(
        f.store.get_api_key(ci.id).await.unwrap().as_ref(),
        Some(&ci)
    );
    assert_eq!(
        f.store.get_api_key(ApiKeyId::generate()).await.unwrap(),
        None
    );
    assert_eq!(
        f.store.list_api_keys(&acme).await.unwrap(),
        vec![ci.clone(), deploy.clone()]
    );

    // Another tenant's key cannot be revoked through this tenant.
    let at = now_millis();
    assert_eq!(
        f.store.revoke_api_key(&acme, other.id, at).await.unwrap(),
        None
    );
    assert!(
        !f.store
            .get_api_key(other.id)
            .await
            .unwrap()
            .unwrap()
            .is_revoked()
    );

    let revoked = f
        .store
        .revoke_api_key(&acme, ci.id, at)
        .await
        .unwrap()
        .expect("acme's key");
    assert_eq!(revoked.revoked_at, Some(at));
    let later = at + time::Duration::minutes(5);
    let again = f.store.revoke_api_key(&acme, ci.id, later).await.unwrap();
    assert_eq!(
        again.and_then(|k| k.revoked_at),
        Some(at),
        "the first revocation stands"
    );
    assert_eq!(
        f.store
            .get_api_key(ci.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at)
    );
    assert!(
        !f.store
            .get_api_key(deploy.id)
            .await
            .unwrap()
            .unwrap()
            .is_revoked()
    );
}

/// A revoked portal link is found by its id from another handle; revoking it again keeps the
/// first time; another link is not revoked.
pub(crate) async fn portal_link_revocations_are_kept_and_found(backend: Backend) {
    let f = backend.fixture().await;
    let other = backend.open().await;
    let acme = Tenant::parse("acme", "tenant").unwrap();
    let link = format!("pl_{}", EventId::generate());
    assert_eq!(other.portal_link_revoked(&link).await.unwrap(), None);
    let at = now_millis();
    let keep_until = at + time::Duration::hours(24);
    f.store
        .revoke_portal_link(&acme, &link, at, keep_until)
        .await
        .unwrap();
    f.store
        .revoke_portal_link(&acme, &link, at + time::Duration::seconds(5), keep_until)
        .await
        .unwrap();
    assert_eq!(other.portal_link_revoked(&link).await.unwrap(), Some(at));
    assert_eq!(
        other
            .portal_link_revoked(&format!("pl_{}", EventId::generate()))
            .await
            .unwrap(),
        None
    );
}
