//! Kafka plumbing shared by the services.
//!
//! Nothing here depends on a particular broker: it speaks the Kafka protocol through librdkafka
//! (Apache Kafka, which the tests run on, and Redpanda or any other broker that serves it).

mod agreement;
mod clients;
mod lag;
mod offsets;
pub mod ops_events;
mod schemas;
mod settings;
mod shutdown;
pub mod task_publisher;
mod topics;
pub mod trace_headers;

pub use agreement::{
    Disagreement, check_written_tiers, compare_tiers, existing_tiers, record_read_tiers,
};
pub use clients::{KafkaError, broker_reachable, consumer, consumer_with_fetch_wait, producer};
pub use lag::{LagReader, PartitionLag};
pub use offsets::{OffsetTracker, store_position};
pub use schemas::{SchemaRegistry, register_schemas, schema_key};
pub use settings::{KafkaSettings, parse_duration, parse_positive_duration};
pub use shutdown::commit_and_close;
pub use topics::{TopicSpec, Topics, ensure_topics};
