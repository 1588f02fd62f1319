//! A consumed source record, apart from the Kafka client, so decoders are tested on plain values.

/// What a decoder needs of a Kafka record.
#[derive(Debug, Clone, Default)]
pub struct SourceRecord {
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: Option<Vec<u8>>,
}

impl SourceRecord {
    /// The first header named `name` (case-insensitive, as Kafka clients differ), as text.
    pub fn header(&self, name: &str) -> Result<Option<&str>, Rejection> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| {
                std::str::from_utf8(value)
                    .map_err(|_| Rejection::new(format!("header `{name}` is not UTF-8")))
            })
            .transpose()
    }
}

/// Why a record could not become an event. Permanent: the record goes to `ingest.rejected`
/// with this reason and the source offset moves on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}
