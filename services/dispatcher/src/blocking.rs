//! Running a blocking call from inside the consume loop (a rebalance callback, a Kafka read):
//! on the multi-threaded runtime the worker's other tasks move away while it blocks.

/// Runs `call`, moving the runtime's other tasks off this worker first when it can.
pub fn blocking<T>(call: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(call),
        _ => call(),
    }
}
