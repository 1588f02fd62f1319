//! Traces: OpenTelemetry spans exported over OTLP, and the W3C trace context carried on Kafka
//! records, so that one delivery is one trace across ingest, attempts and retry hops.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set; `OTEL_EXPORTER_OTLP_PROTOCOL` picks `http/protobuf` (default) or `http/json`. The other
//! standard variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`,
//! `OTEL_TRACES_SAMPLER`) are read by the SDK. Without an endpoint nothing is exported and
//! records carry no `traceparent` of their own.

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A trace context read from a record, to continue its trace.
pub use hookstream_kafka::trace_headers::{TraceContext, context_of, headers_of};

/// The target of Hookstream's trace spans; only spans of this target are exported.
pub const TARGET: &str = "hookstream::trace";

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL `{0}` is not supported: use http/protobuf or http/json")]
    Protocol(String),
    #[error("building the OTLP exporter: {0}")]
    Exporter(String),
}

/// The tracer provider while export is on; flush it with [`Telemetry::shutdown`] before exit.
#[must_use = "call shutdown() before the process exits so the last spans are exported"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Writes the log lines still buffered when dropped: kept to the end of the process.
    _logs: WorkerGuard,
}

impl Telemetry {
    /// Exports the spans still buffered, stops the exporter and writes the buffered log lines.
    /// Call it before `std::process::exit`, which drops nothing.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            eprintln!("exporting the last spans failed: {err}");
        }
    }
}

/// Whether the environment asks for spans to be exported.
fn export_requested() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// Builds the tracer provider for `service` if export is requested.
pub fn provider(service: &'static str) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    if !export_requested() {
        return Ok(None);
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Err(_) | Ok("") | Ok("http/protobuf") => Protocol::HttpBinary,
        Ok("http/json") => Protocol::HttpJson,
        Ok(other) => return Err(TelemetryError::Protocol(other.to_owned())),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(format!("hookstream-{service}"));
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// The `tracing` layer that turns Hookstream's spans into OpenTelemetry spans.
pub fn layer<S>(
    provider: &SdkTracerProvider,
    service: &'static str,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(service))
}

/// Wraps the provider for [`Telemetry::shutdown`].
pub fn telemetry(provider: Option<SdkTracerProvider>, logs: WorkerGuard) -> Telemetry {
    Telemetry {
        provider,
        _logs: logs,
    }
}

/// Makes `span` a child of `parent` when `parent` carries a trace.
pub fn continue_trace(span: &tracing::Span, parent: TraceContext) {
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled, and then there is nothing to join.
        let _ = span.set_parent(parent);
    }
}

/// The trace id of `span`, for logs; empty when it is not traced.
pub fn trace_id(span: &tracing::Span) -> String {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span_context.trace_id().to_string()
    } else {
        String::new()
    }
}
