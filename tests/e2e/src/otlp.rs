//! An OpenTelemetry collector stand-in on 127.0.0.1: takes OTLP/HTTP JSON trace exports
//! (`POST /v1/traces`) and keeps the spans for the test to read.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

/// One exported span, as the test needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
}

/// The collector; spans arrive as the services' batch exporters send them.
pub struct OtlpReceiver {
    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the OTLP receiver on 127.0.0.1");
        let endpoint = format!(
            "http://{}",
            listener.local_addr().expect("OTLP receiver address")
        );
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/traces", post(export))
            .with_state(Arc::clone(&spans));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint,
            spans,
            _server: server,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().expect("spans lock").clone()
    }
}

async fn export(State(spans): State<Arc<Mutex<Vec<ExportedSpan>>>>, body: String) -> Json<Value> {
    let request: Value = serde_json::from_str(&body).expect("an OTLP JSON export request");
    let mut received = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = resource["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        let scope_spans = resource["scopeSpans"].as_array().into_iter().flatten();
        for span in scope_spans.flat_map(|s| s["spans"].as_array().into_iter().flatten()) {
            let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
            received.push(ExportedSpan {
                service: service.clone(),
                name: text("name"),
                trace_id: text("traceId"),
                span_id: text("spanId"),
                parent_span_id: text("parentSpanId"),
            });
        }
    }
    spans.lock().expect("spans lock").extend(received);
    Json(serde_json::json!({}))
}
