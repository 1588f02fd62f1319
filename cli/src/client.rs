//! Talks to the Hookstream API; every failure becomes a [`CliError`] with its exit code.

use std::time::Duration;

use serde_json::Value;

/// Why a command failed, and the exit code that says so.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with a problem document.
    #[error("{status}: {detail}")]
    Refused { status: u16, detail: String },
    #[error("cannot reach Hookstream at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("batch {id} ended {status}")]
    BatchStopped { id: String, status: String },
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Refused { .. } => 1,
            Self::Usage(_) => 2,
            Self::Unreachable { .. } => 3,
            Self::BatchStopped { .. } => 4,
        }
    }
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: String) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        let mut request = self.http.post(self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.send(self.http.patch(self.url(path)).json(&body)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let unreachable = |e: reqwest::Error| CliError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let detail = match (body["detail"].as_str(), body["field"].as_str()) {
            (Some(detail), Some(field)) => format!("{detail} (field `{field}`)"),
            (Some(detail), None) => detail.to_owned(),
            _ => "no detail given".to_owned(),
        };
        Err(CliError::Refused { status, detail })
    }
}

/// Appends `(name, value)` pairs to a path as a query string.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://query.invalid/").expect("a fixed, valid URL");
    url.query_pairs_mut().extend_pairs(pairs);
    match url.query() {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_escaped() {
        assert_eq!(with_query("/v1/x", &[]), "/v1/x");
        assert_eq!(
            with_query(
                "/v1/x",
                &[("since", "2026-11-23T10:00:00+01:00"), ("limit", "5")]
            ),
            "/v1/x?since=2026-11-23T10%3A00%3A00%2B01%3A00&limit=5"
        );
    }
}
