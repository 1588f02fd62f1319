//! Avro source values in the Confluent wire format against a record schema with nesting, a
//! union, an array and a map: any bytes decode to JSON or are rejected, never a panic.
#![no_main]

use std::sync::LazyLock;

use apache_avro::Schema;
use hookstream_ingest::source::avro::{datum_to_json, frame};
use libfuzzer_sys::fuzz_target;

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    Schema::parse_str(
        r#"{"type": "record", "name": "Order", "fields": [
            {"name": "id", "type": "string"},
            {"name": "amount", "type": "long"},
            {"name": "note", "type": ["null", "string"]},
            {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line",
                "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
            {"name": "tags", "type": {"type": "map", "values": "bytes"}}
        ]}"#,
    )
    .expect("the fuzz schema parses")
});

fuzz_target!(|bytes: &[u8]| {
    if let Ok((id, datum)) = frame(bytes) {
        let _ = datum_to_json(&SCHEMA, id, datum);
    }
});
