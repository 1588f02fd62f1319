//! Avro single-object encoding for topic messages, with schema evolution.
//!
//! A record is `C3 01`, the writer schema's 8-byte CRC-64-AVRO fingerprint, then the Avro datum.
//! The reader looks the writer schema up by fingerprint among every version it knows and resolves
//! the datum to its own (newest) schema, so old and new records can share a topic.
//!
//! A reader can also learn a writer schema newer than itself (registered on the schemas topic by
//! the newer service that writes it), so during a rolling upgrade an older reader still reads
//! what a newer writer wrote, as long as the change is one Avro resolution allows.

use std::sync::RwLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use time::OffsetDateTime;

const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not an Avro single-object record (bad magic bytes or too short)")]
    NotSingleObject,
    #[error("written with a schema this reader does not know (fingerprint {0:02x?})")]
    UnknownSchema([u8; 8]),
    #[error("Avro: {0}")]
    Avro(String),
    #[error("field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("writer schema refused: {0}")]
    Schema(String),
}

impl From<apache_avro::Error> for CodecError {
    fn from(err: apache_avro::Error) -> Self {
        Self::Avro(err.to_string())
    }
}

/// Encodes with the newest schema of one message type; decodes any version it knows.
#[derive(Debug)]
pub struct SchemaVersions {
    /// Oldest first; the last is the one written and read into.
    versions: Vec<(Schema, [u8; 8])>,
    /// The newest version's text, as it is registered for readers that do not know it.
    current_text: String,
    /// Writer schemas learned at run time (newer than this build), each checked to resolve.
    learned: RwLock<Vec<(Schema, [u8; 8])>>,
}

impl SchemaVersions {
    /// Parses the `.avsc` texts of one message type, oldest first.
    ///
    /// # Panics
    /// If a schema does not parse: the schemas are compiled into the binary, so that is a
    /// build defect that every test catches, not a runtime condition.
    pub fn new(avsc_oldest_first: &[&str]) -> Self {
        assert!(!avsc_oldest_first.is_empty(), "at least one schema version");
        let versions = avsc_oldest_first
            .iter()
            .map(|text| {
                let schema = Schema::parse_str(text).expect("bundled Avro schema parses");
                let fingerprint = fingerprint(&schema);
                (schema, fingerprint)
            })
            .collect();
        Self {
            versions,
            current_text: avsc_oldest_first[avsc_oldest_first.len() - 1].to_owned(),
            learned: RwLock::new(Vec::new()),
        }
    }

    /// The schema this build writes: its fingerprint and its text.
    pub fn current_schema(&self) -> ([u8; 8], &str) {
        (self.current().1, &self.current_text)
    }

    /// Whether records written with `fingerprint` can be decoded (bundled or learned).
    pub fn knows(&self, fingerprint: [u8; 8]) -> bool {
        self.versions.iter().any(|(_, fp)| *fp == fingerprint)
            || self
                .learned
                .read()
                .is_ok_and(|learned| learned.iter().any(|(_, fp)| *fp == fingerprint))
    }

    /// Learns a writer schema registered under `fingerprint`, once it is shown to be that
    /// schema and to resolve to this build's own; records written with it decode from then on.
    pub fn learn(&self, fingerprint: [u8; 8], avsc: &str) -> Result<(), CodecError> {
        let schema = Schema::parse_str(avsc).map_err(|e| CodecError::Schema(e.to_string()))?;
        let actual = self::fingerprint(&schema);
        if actual != fingerprint {
            return Err(CodecError::Schema(format!(
                "registered under {fingerprint:02x?} but its fingerprint is {actual:02x?}"
            )));
        }
        SchemaCompatibility::can_read(&schema, &self.current().0).map_err(|e| {
            CodecError::Schema(format!("does not resolve to this version's schema: {e}"))
        })?;
        extends(&schema, &self.current().0)?;
        if !self.knows(fingerprint) {
            let mut learned = self
                .learned
                .write()
                .map_err(|_| CodecError::Schema("the learned schemas lock is poisoned".into()))?;
            learned.push((schema, fingerprint));
        }
        Ok(())
    }

    fn current(&self) -> &(Schema, [u8; 8]) {
        self.versions.last().expect("at least one schema version")
    }

    pub fn encode(&self, value: Value) -> Result<Vec<u8>, CodecError> {
        let (schema, fingerprint) = self.current();
        let datum = GenericDatumWriter::builder(schema)
            .build()?
            .write_value_to_vec(value)?;
        let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(fingerprint);
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// Decodes a record written with any known version into the current schema's shape.
    pub fn decode(&self, bytes: &[u8]) -> Result<Value, CodecError> {
        if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
            return Err(CodecError::NotSingleObject);
        }
        let mut written_with = [0u8; 8];
        written_with.copy_from_slice(&bytes[2..HEADER_LEN]);
        let datum = &bytes[HEADER_LEN..];
        if let Some((writer, _)) = self.versions.iter().find(|(_, fp)| *fp == written_with) {
            return self.read(writer, datum);
        }
        let learned = self
            .learned
            .read()
            .map_err(|_| CodecError::Schema("the learned schemas lock is poisoned".into()))?;
        let (writer, _) = learned
            .iter()
            .find(|(_, fp)| *fp == written_with)
            .ok_or(CodecError::UnknownSchema(written_with))?;
        self.read(writer, datum)
    }

    fn read(&self, writer: &Schema, mut datum: &[u8]) -> Result<Value, CodecError> {
        let (reader, _) = self.current();
        Ok(GenericDatumReader::builder(writer)
            .reader_schema(reader)
            .build()?
            .read_value(&mut datum)?)
    }
}

/// A newer version may only add fields after the ones this build knows, each as it was: a
/// record whose known fields moved or changed type is refused, even where Avro resolution
/// (which matches fields by name) would read it, so a schema forged to collide with a real
/// fingerprint cannot make a task read with its fields swapped.
fn extends(writer: &Schema, reader: &Schema) -> Result<(), CodecError> {
    let (Schema::Record(writer), Schema::Record(reader)) = (writer, reader) else {
        return Err(CodecError::Schema("not a record".into()));
    };
    if writer.name != reader.name || writer.fields.len() < reader.fields.len() {
        return Err(CodecError::Schema(format!(
            "does not extend {}: another name, or fewer fields",
            reader.name
        )));
    }
    for (written, known) in writer.fields.iter().zip(&reader.fields) {
        if written.name != known.name || written.schema != known.schema {
            return Err(CodecError::Schema(format!(
                "field `{}` is not where or what this version has it (`{}`)",
                written.name, known.name
            )));
        }
    }
    Ok(())
}

fn fingerprint(schema: &Schema) -> [u8; 8] {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

/// A time as Avro `timestamp-millis`.
pub(crate) fn to_millis(at: OffsetDateTime, field: &'static str) -> Result<i64, CodecError> {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| CodecError::Field {
        field,
        reason: "out of range".into(),
    })
}

/// An Avro `timestamp-millis` as a time.
pub(crate) fn from_millis(ms: i64, field: &'static str) -> Result<OffsetDateTime, CodecError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(|e| {
        CodecError::Field {
            field,
            reason: e.to_string(),
        }
    })
}

/// Reads the fields of a decoded record by name.
pub(crate) struct RecordFields(Vec<(String, Value)>);

impl RecordFields {
    pub(crate) fn new(value: Value) -> Result<Self, CodecError> {
        match value {
            Value::Record(fields) => Ok(Self(fields)),
            other => Err(CodecError::Avro(format!(
                "expected a record, got {other:?}"
            ))),
        }
    }

    fn take(&mut self, field: &'static str) -> Result<Value, CodecError> {
        let index = self
            .0
            .iter()
            .position(|(name, _)| name == field)
            .ok_or(CodecError::Field {
                field,
                reason: "missing".into(),
            })?;
        Ok(self.0.swap_remove(index).1)
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, CodecError> {
        match self.take(field)? {
            Value::String(s) => Ok(s),
            other => Err(wrong_type(field, "string", &other)),
        }
    }

    pub(crate) fn int(&mut self, field: &'static str) -> Result<i32, CodecError> {
        match self.take(field)? {
            Value::Int(n) => Ok(n),
            other => Err(wrong_type(field, "int", &other)),
        }
    }

    pub(crate) fn optional_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, CodecError> {
        match self.take(field)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s)),
                other => Err(wrong_type(field, "null or string", &other)),
            },
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(wrong_type(field, "null or string", &other)),
        }
    }

    pub(crate) fn optional_int(&mut self, field: &'static str) -> Result<Option<i32>, CodecError> {
        match self.take(field)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                Value::Int(n) => Ok(Some(n)),
                other => Err(wrong_type(field, "null or int", &other)),
            },
            Value::Null => Ok(None),
            Value::Int(n) => Ok(Some(n)),
            other => Err(wrong_type(field, "null or int", &other)),
        }
    }

    pub(crate) fn timestamp_millis(&mut self, field: &'static str) -> Result<i64, CodecError> {
        match self.take(field)? {
            Value::TimestampMillis(n) | Value::Long(n) => Ok(n),
            other => Err(wrong_type(field, "timestamp-millis", &other)),
        }
    }
}

fn wrong_type(field: &'static str, expected: &str, got: &Value) -> CodecError {
    CodecError::Field {
        field,
        reason: format!("expected {expected}, got {got:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"string"}]}"#;
    const V2: &str = r#"{"type":"record","name":"T","fields":[
        {"name":"a","type":"string"},{"name":"b","type":"int","default":7}]}"#;

    #[test]
    fn a_record_written_with_an_older_version_reads_with_defaults() {
        let old_writer = SchemaVersions::new(&[V1]);
        let bytes = old_writer
            .encode(Value::Record(vec![("a".into(), Value::String("x".into()))]))
            .unwrap();
        let reader = SchemaVersions::new(&[V1, V2]);
        let value = reader.decode(&bytes).unwrap();
        let mut fields = RecordFields::new(value).unwrap();
        assert_eq!(fields.string("a").unwrap(), "x");
        assert_eq!(fields.int("b").unwrap(), 7);
    }

    #[test]
    fn unknown_schemas_and_garbage_are_refused() {
        let newer = SchemaVersions::new(&[V2]);
        let bytes = newer
            .encode(Value::Record(vec![
                ("a".into(), Value::String("x".into())),
                ("b".into(), Value::Int(1)),
            ]))
            .unwrap();
        let old_reader = SchemaVersions::new(&[V1]);
        assert!(matches!(
            old_reader.decode(&bytes),
            Err(CodecError::UnknownSchema(_))
        ));
        assert!(matches!(
            old_reader.decode(b"{}"),
            Err(CodecError::NotSingleObject)
        ));
        assert!(matches!(
            old_reader.decode(&[]),
            Err(CodecError::NotSingleObject)
        ));
        // Learned (as from the schemas topic), the newer version reads; a schema that is not
        // the one named, or one that does not resolve, is refused.
        let (v2_fingerprint, v2_text) = newer.current_schema();
        assert!(matches!(
            old_reader.learn([0xAB; 8], v2_text),
            Err(CodecError::Schema(_))
        ));
        let incompatible = r#"{"type":"record","name":"T","fields":[{"name":"a","type":"int"}]}"#;
        let incompatible_fp = SchemaVersions::new(&[incompatible]).current_schema().0;
        assert!(matches!(
            old_reader.learn(incompatible_fp, incompatible),
            Err(CodecError::Schema(_))
        ));
        let swapped = r#"{"type":"record","name":"T","fields":[
            {"name":"b","type":"int","default":7},{"name":"a","type":"string"}]}"#;
        let swapped_fp = SchemaVersions::new(&[swapped]).current_schema().0;
        assert!(
            matches!(
                old_reader.learn(swapped_fp, swapped),
                Err(CodecError::Schema(_))
            ),
            "known fields keep their places"
        );
        assert!(!old_reader.knows(v2_fingerprint));
        old_reader.learn(v2_fingerprint, v2_text).unwrap();
        assert!(old_reader.knows(v2_fingerprint));
        let mut fields = RecordFields::new(old_reader.decode(&bytes).unwrap()).unwrap();
        assert_eq!(fields.string("a").unwrap(), "x");
        let mut truncated = bytes.clone();
        truncated.truncate(HEADER_LEN + 1);
        assert!(newer.decode(&truncated).is_err());
    }
}
