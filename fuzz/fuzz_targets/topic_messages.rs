//! Hookstream's own topic messages (delivery tasks, dead letters): any bytes decode or give a
//! codec error, never a panic, so one bad record cannot stop a consumer.
#![no_main]

use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::task::DeliveryTask;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(task) = DeliveryTask::decode(bytes) {
        // What decodes encodes again.
        let _ = task.encode();
    }
    if let Ok(letter) = DeadLetter::decode(bytes) {
        let _ = letter.encode();
    }
});
