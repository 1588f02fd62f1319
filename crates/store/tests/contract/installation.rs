//! Settings the services of an installation must agree on, recorded once.

use super::*;

/// The topic prefix every service must share: the first one ingest records stays, whichever
/// of several racing processes gives it; a process that only checks records nothing, accepts
/// the same prefix and refuses another; the kill switch beside it in the store is untouched.
pub(crate) async fn the_first_topic_prefix_recorded_is_the_installations(backend: Backend) {
    let checker = backend.open().await;
    assert!(
        !agree_on_topic_prefix(checker.as_ref(), "other.", PrefixRole::Checks)
            .await
            .expect("nothing recorded to check against"),
        "a checking service records nothing"
    );
    let handles: Vec<Arc<dyn Store>> = join_all((0..4).map(|_| backend.open())).await;
    // Side by side, as pods started together do.
    let recorded: Vec<String> = join_all(handles.iter().enumerate().map(|(n, store)| {
        let store = Arc::clone(store);
        async move {
            store
                .record_installation_setting("topic_prefix", &format!("racer{n}."))
                .await
                .unwrap()
        }
    }))
    .await;
    assert!(
        recorded.iter().all(|r| *r == recorded[0]) && recorded[0].starts_with("racer"),
        "racing first records agree on one: {recorded:?}"
    );
    let installation = recorded[0].clone();
    assert!(
        agree_on_topic_prefix(checker.as_ref(), &installation, PrefixRole::Checks)
            .await
            .expect("the same prefix")
    );
    assert!(
        agree_on_topic_prefix(handles[0].as_ref(), &installation, PrefixRole::Records)
            .await
            .expect("ingest again with the same prefix")
    );
    match agree_on_topic_prefix(checker.as_ref(), "other.", PrefixRole::Checks).await {
        Err(InstallationMismatch::TopicPrefix { recorded, given }) => {
            assert_eq!((recorded, given.as_str()), (installation.clone(), "other."))
        }
        other => panic!("another prefix must be refused, got {other:?}"),
    }
    match agree_on_topic_prefix(handles[1].as_ref(), "later.", PrefixRole::Records).await {
        Err(InstallationMismatch::TopicPrefix { recorded, .. }) => {
            assert_eq!(recorded, installation, "the first record stays")
        }
        other => panic!("a later ingest with another prefix must be refused, got {other:?}"),
    }
    assert!(!checker.sending_paused().await.unwrap());
}
