//! Reading the body of `POST /v1/events:batch` without building it whole: the events stay
//! unparsed slices of the body until each is read in turn, and counting stops at one past the
//! limit. (Parsed whole, a 10 MiB body of `[[],[],…]` is millions of values in memory before
//! anything is counted.)

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::api::problem::Problem;

/// The events of a batch body, each still its JSON text; at most `max` of them.
pub fn batch_events(body: &[u8], max: usize) -> Result<Vec<&RawValue>, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let events = deserializer
        .deserialize_map(BatchBody { max })
        .and_then(|events| deserializer.end().map(|()| events))
        .map_err(|err| match err.classify() {
            serde_json::error::Category::Data => {
                let text = err.to_string();
                let field = if text.contains("`events`") {
                    "events"
                } else {
                    "body"
                };
                Problem::invalid(field, text)
            }
            _ => Problem::invalid("body", format!("the body is not valid JSON: {err}")),
        })?;
    let Read { events, unknown } = events;
    if let Some(unknown) = unknown {
        return Err(Problem::invalid(
            unknown.clone(),
            format!("unknown field `{unknown}`"),
        ));
    }
    let events = events.ok_or_else(|| Problem::invalid("events", "`events` is required"))?;
    if events.is_empty() {
        return Err(Problem::invalid(
            "events",
            format!("`events` must hold 1 to {max} events; it holds none"),
        ));
    }
    Ok(events)
}

/// `{"events": [...]}` and nothing else.
struct BatchBody {
    max: usize,
}

/// What the body held: the events, and the first field it should not have.
struct Read<'de> {
    events: Option<Vec<&'de RawValue>>,
    unknown: Option<String>,
}

impl<'de> Visitor<'de> for BatchBody {
    type Value = Read<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object holding the events list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut read = Read {
            events: None,
            unknown: None,
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "events" {
                map.next_value::<IgnoredAny>()?;
                read.unknown.get_or_insert_with(|| key.into_owned());
                continue;
            }
            if read.events.is_some() {
                return Err(de::Error::custom("`events` is given twice"));
            }
            read.events = Some(map.next_value_seed(Events { max: self.max })?);
        }
        Ok(read)
    }
}

/// The list of events, refused at the first one past `max`.
struct Events {
    max: usize,
}

impl<'de> de::DeserializeSeed<'de> for Events {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Events {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`events` as a list of event objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::new();
        while let Some(event) = seq.next_element::<&'de RawValue>()? {
            if events.len() == self.max {
                return Err(de::Error::custom(format!(
                    "`events` must hold 1 to {} events; it holds more",
                    self.max
                )));
            }
            events.push(event);
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stay_text_and_counting_stops_past_the_limit() {
        let events = batch_events(br#"{"events": [{"a": 1}, {"b": [2]}]}"#, 3).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].get(), r#"{"b": [2]}"#);

        // A body of a million empty arrays is refused at the fourth.
        let bomb = format!(r#"{{"events": [{}]}}"#, vec!["[]"; 1_000_000].join(","));
        let err = batch_events(bomb.as_bytes(), 3).unwrap_err().document();
        assert_eq!(err["field"], "events");
        assert!(
            err["detail"].as_str().unwrap().contains("it holds more"),
            "{err}"
        );
    }

    #[test]
    fn other_shapes_are_refused_with_the_field_at_fault() {
        for (body, field) in [
            (&br#"{"events": []}"#[..], "events"),
            (br#"{}"#, "events"),
            (br#"{"events": {}}"#, "events"),
            (br#"{"events": [{}], "extra": 1}"#, "extra"),
            (br#"[1]"#, "body"),
            (br#"{"events": [1,"#, "body"),
            (br#"{"events": [{}]} trailing"#, "body"),
        ] {
            let err = batch_events(body, 3).unwrap_err().document();
            assert_eq!(
                err["field"],
                field,
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
