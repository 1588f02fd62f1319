//! Reading the TOML file into settings: `key = value` pairs at the top (shared by every
//! service) and in one section per service, each with the line it was written on.

use toml_edit::{Document, Item, Table, Value};

use crate::registry::Service;

/// One `key = value` of the file, its value as a flag would carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub line: usize,
    /// The service whose section holds it; `None` at the top, for every service.
    pub section: Option<Service>,
}

/// Something wrong in the file, at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: Option<usize>,
    pub message: String,
}

/// The settings of a file, or every problem found in it.
pub fn read(text: &str) -> Result<Vec<Setting>, Vec<Problem>> {
    let document = Document::parse(text).map_err(|error| {
        let (line, column) = error
            .span()
            .map_or((1, None), |span| line_and_column(text, span.start));
        vec![Problem {
            line,
            column,
            message: error.message().trim().to_owned(),
        }]
    })?;
    let mut settings = Vec::new();
    let mut problems = Vec::new();
    for (key, item) in document.iter() {
        let line = line_of(text, &document, key, item);
        match item {
            Item::Table(table) => match Service::from_section(key) {
                Some(service) => read_section(text, service, table, &mut settings, &mut problems),
                None => problems.push(Problem::at(
                    line,
                    format!(
                        "unknown section `[{key}]` (sections: {})",
                        Service::section_names()
                    ),
                )),
            },
            Item::Value(value) => push(&mut settings, &mut problems, key, value, line, None),
            Item::ArrayOfTables(_) | Item::None => problems.push(Problem::at(
                line,
                format!("`{key}` is not a setting (write `{key} = value`)"),
            )),
        }
    }
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(problems)
    }
}

fn read_section(
    text: &str,
    service: Service,
    table: &Table,
    settings: &mut Vec<Setting>,
    problems: &mut Vec<Problem>,
) {
    for (key, item) in table.iter() {
        let line = line_of(text, table, key, item);
        match item {
            Item::Value(value) => push(settings, problems, key, value, line, Some(service)),
            _ => problems.push(Problem::at(
                line,
                format!(
                    "`{key}` in `[{}]` is not a setting (sections do not nest)",
                    service.section()
                ),
            )),
        }
    }
}

fn push(
    settings: &mut Vec<Setting>,
    problems: &mut Vec<Problem>,
    key: &str,
    value: &Value,
    line: usize,
    section: Option<Service>,
) {
    match flag_value(value) {
        Ok(value) => settings.push(Setting {
            key: key.to_owned(),
            value,
            line,
            section,
        }),
        Err(kind) => problems.push(Problem::at(
            line,
            format!(
                "`{key}`: {kind} is not a setting value (a string, number, boolean or list of them)"
            ),
        )),
    }
}

/// A value as its flag would take it: lists joined by commas, as the environment writes them.
fn flag_value(value: &Value) -> Result<String, &'static str> {
    match value {
        Value::String(text) => Ok(text.value().clone()),
        Value::Integer(number) => Ok(number.value().to_string()),
        Value::Float(number) => Ok(number.value().to_string()),
        Value::Boolean(flag) => Ok(flag.value().to_string()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(_) => Err("a list of lists"),
                Value::InlineTable(_) => Err("a list of tables"),
                other => flag_value(other),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| items.join(",")),
        Value::Datetime(_) => Err("a date"),
        Value::InlineTable(_) => Err("a table"),
    }
}

fn line_of(text: &str, table: &Table, key: &str, item: &Item) -> usize {
    table
        .key(key)
        .and_then(|key| key.span())
        .or_else(|| item.span())
        .map_or(1, |span| line_and_column(text, span.start).0)
}

fn line_and_column(text: &str, offset: usize) -> (usize, Option<usize>) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
    (line, Some(column))
}

impl Problem {
    pub fn at(line: usize, message: String) -> Self {
        Self {
            line,
            column: None,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_carry_their_line_and_section() {
        let text = "kafka_brokers = \"a:9092,b:9092\"\n\n[dispatcher]\nmax_in_flight = 100\n\
                    allowed_destinations = [\"127.0.0.0/8\", \"::1/128\"]\ndns_errors_permanent = true\n";
        let settings = read(text).expect("a valid file");
        let seen: Vec<_> = settings
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str(), s.line, s.section))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("kafka_brokers", "a:9092,b:9092", 1, None),
                ("max_in_flight", "100", 4, Some(Service::Dispatcher)),
                (
                    "allowed_destinations",
                    "127.0.0.0/8,::1/128",
                    5,
                    Some(Service::Dispatcher)
                ),
                ("dns_errors_permanent", "true", 6, Some(Service::Dispatcher)),
            ]
        );
    }

    #[test]
    fn a_file_that_does_not_parse_names_the_line_and_column() {
        let problems = read("retry_jitter = 0.2\nstore = \"sqlite://x\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 2);
        assert!(problems[0].column.is_some());
        assert!(!problems[0].message.is_empty());
    }

    #[test]
    fn unknown_sections_nested_tables_and_dates_are_refused_at_their_line() {
        let text = "[dispatch]\nx = 1\n[replay]\nwhen = 1979-05-27\nnested = { a = 1 }\n";
        let problems = read(text).unwrap_err();
        let lines: Vec<_> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![1, 4, 5], "{problems:?}");
        assert!(problems[0].message.contains("unknown section `[dispatch]`"));
        assert!(problems[1].message.contains("a date"));
        assert!(problems[2].message.contains("a table"));
    }
}
