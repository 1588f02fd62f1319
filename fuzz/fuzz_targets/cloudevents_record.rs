//! Source-topic records in CloudEvents form: any headers and value give an event or a
//! rejection with a reason, never a panic. The input is split into headers and a value.
#![no_main]

use hookstream_ingest::source::cloudevents::{BinaryData, decode};
use hookstream_ingest::source::record::SourceRecord;
use libfuzzer_sys::fuzz_target;

/// `name\x00value\x00name\x00value\x00…\x01value`: a cheap way to let the fuzzer shape headers.
fn record(input: &[u8]) -> SourceRecord {
    let (head, value) = match input.iter().position(|&b| b == 1) {
        Some(at) => (&input[..at], Some(input[at + 1..].to_vec())),
        None => (input, None),
    };
    let parts: Vec<&[u8]> = head.split(|&b| b == 0).collect();
    let headers = parts
        .chunks(2)
        .filter_map(|pair| match pair {
            [name, value] => Some((String::from_utf8_lossy(name).into_owned(), value.to_vec())),
            _ => None,
        })
        .collect();
    SourceRecord { headers, value }
}

fuzz_target!(|input: &[u8]| {
    let record = record(input);
    for mode in [BinaryData::ByContentType, BinaryData::Bytes] {
        if let Err(rejection) = decode(&record, "tenant", mode) {
            assert!(!rejection.0.is_empty(), "a rejection says why");
        }
    }
});
