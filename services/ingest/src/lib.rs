//! Hookstream ingest as a library: the API, the intake, the source-topic decoders. The
//! `hookstream-ingest` binary runs them; the fuzz targets drive the parsers directly.

pub mod api;
pub mod api_key_token;
pub mod config;
pub mod console;
pub mod fanout;
pub mod intake;
pub mod metrics;
pub mod outbox;
pub mod portal_link;
pub mod published_marks;
pub mod queues;
pub mod rate_limit;
pub mod replay_plan;
pub mod resealing;
pub mod retention;
pub mod source;
pub mod tenant_concurrency;
