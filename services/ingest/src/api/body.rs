//! Reading JSON request bodies into fields, naming the field at fault when one is wrong.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::problem::Problem;

/// A JSON object body, read field by field.
pub struct JsonObject(Map<String, Value>);

impl JsonObject {
    /// Parses a body that must be a JSON object. `limit` is the body limit in force (for the 413).
    pub fn parse(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Self, Problem> {
        let bytes = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large(limit)
            } else {
                Problem::invalid("body", format!("cannot read the request body: {rejection}"))
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(Problem::invalid("body", "the body must be a JSON object")),
            Err(err) => Err(Problem::invalid(
                "body",
                format!("the body is not valid JSON: {err}"),
            )),
        }
    }

    /// A body the client may leave out: empty (or only whitespace) reads as `{}`.
    pub fn parse_optional(
        body: Result<Bytes, BytesRejection>,
        limit: usize,
    ) -> Result<Self, Problem> {
        match body {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Self(Map::new())),
            body => Self::parse(body, limit),
        }
    }

    /// An object already parsed (one item of a batch).
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// A field that must be present (any JSON value, including null).
    pub fn required(&mut self, field: &str) -> Result<Value, Problem> {
        self.0
            .remove(field)
            .ok_or_else(|| Problem::invalid(field, format!("`{field}` is required")))
    }

    /// A field as sent, `None` when absent (a present `null` is `Some(Value::Null)`).
    pub fn optional(&mut self, field: &str) -> Option<Value> {
        self.0.remove(field)
    }

    pub fn required_str(&mut self, field: &str) -> Result<String, Problem> {
        match self.required(field)? {
            Value::String(s) => Ok(s),
            other => Err(wrong_type(field, "a string", &other)),
        }
    }

    pub fn optional_str(&mut self, field: &str) -> Result<Option<String>, Problem> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(field, "a string", &other)),
        }
    }

    pub fn optional_bool(&mut self, field: &str) -> Result<Option<bool>, Problem> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(wrong_type(field, "true or false", &other)),
        }
    }

    pub fn optional_str_list(&mut self, field: &str) -> Result<Option<Vec<String>>, Problem> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s),
                    other => Err(wrong_type(&format!("{field}[{i}]"), "a string", &other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(wrong_type(field, "a list of strings", &other)),
        }
    }

    /// Refuses fields the request does not know: a typo should not pass silently.
    pub fn finish(self) -> Result<(), Problem> {
        match self.0.keys().next() {
            Some(unknown) => Err(Problem::invalid(
                unknown.clone(),
                format!("unknown field `{unknown}`"),
            )),
            None => Ok(()),
        }
    }
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> Problem {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    Problem::invalid(field, format!("`{field}` must be {expected}, not {got}"))
}
