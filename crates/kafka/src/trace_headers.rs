//! The W3C trace context (`traceparent`, `tracestate`) carried on Kafka records as headers, so
//! one delivery is one trace across ingest, attempts and retry hops.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A trace context read from a record: the parent of the spans that handle it.
pub type TraceContext = opentelemetry::Context;

/// The trace context `span` belongs to, as Kafka record headers (`traceparent`, and
/// `tracestate` when there is one). Empty when the span is not traced.
pub fn headers_of(span: &tracing::Span) -> OwnedHeaders {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    let mut headers = OwnedHeaders::new();
    for (key, value) in &carrier {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

/// The trace context a record carries; empty (a new trace) when it carries none or an
/// unreadable one.
pub fn context_of(headers: Option<&BorrowedHeaders>) -> TraceContext {
    let mut carrier: HashMap<String, String> = HashMap::new();
    for header in headers.into_iter().flat_map(|h| h.iter()) {
        if let (true, Some(Ok(value))) = (
            header.key == "traceparent" || header.key == "tracestate",
            header.value.map(std::str::from_utf8),
        ) {
            carrier.insert(header.key.to_owned(), value.to_owned());
        }
    }
    TraceContextPropagator::new().extract(&carrier)
}
