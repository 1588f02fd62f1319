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
