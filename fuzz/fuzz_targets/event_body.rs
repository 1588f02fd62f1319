//! `POST /v1/events` bodies: any bytes give a request or a 4xx problem document, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Err(problem) = hookstream_ingest::api::parse_event_body(body, 256 * 1024) {
        let status = problem["status"].as_u64().unwrap_or(0);
        assert!(
            (400..500).contains(&status),
            "not a client error: {problem}"
        );
    }
});
