//! Writes a valid delivery task and dead letter into the `topic_messages` fuzz corpus, so the
//! fuzzer starts past the codec's schema fingerprint: `cargo run -p hookstream-model --example
//! fuzz_seeds -- fuzz/corpus/topic_messages`.

use std::path::PathBuf;

use time::OffsetDateTime;

use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::delivery::AttemptClass;
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::{EventType, Tenant};
use hookstream_model::task::DeliveryTask;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: fuzz_seeds CORPUS_DIR")?,
    );
    std::fs::create_dir_all(&dir)?;
    let task = DeliveryTask {
        delivery_id: DeliveryId::generate(),
        event_id: EventId::generate(),
        endpoint_id: EndpointId::generate(),
        tenant: Tenant::parse("acme", "tenant")?,
        event_type: EventType::parse("order.created", "type")?,
        event_created_at: OffsetDateTime::from_unix_timestamp(1_795_400_000)?,
        payload: r#"{"order": 1}"#.into(),
        attempts_made: 2,
        due_at: Some(OffsetDateTime::from_unix_timestamp(1_795_400_030)?),
    };
    let letter = DeadLetter {
        task: task.clone(),
        reason: "endpoint answered HTTP 400".into(),
        last_class: AttemptClass::Http4xxPermanent,
        last_status_code: Some(400),
        last_error: None,
        last_response_snippet: "no".into(),
        dead_lettered_at: OffsetDateTime::from_unix_timestamp(1_795_400_060)?,
    };
    std::fs::write(dir.join("seed-task"), task.encode()?)?;
    std::fs::write(dir.join("seed-dead-letter"), letter.encode()?)?;
    Ok(())
}
