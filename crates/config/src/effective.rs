//! `--print-config`: the settings a service runs with, as a file it could be given, each with
//! where it came from, and no secret in the clear.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

use crate::registry::key_of;

const REDACTED: &str = "<redacted>";

/// The effective settings as TOML. `from_file` maps an argument id to the `file:line` it came
/// from.
pub fn render(
    command: &Command,
    matches: &ArgMatches,
    from_file: &BTreeMap<String, String>,
) -> String {
    let mut out = format!(
        "# {}: effective settings (flags over environment over file over defaults); secrets redacted\n",
        command.get_name()
    );
    let mut args: Vec<_> = command
        .get_arguments()
        .filter_map(|arg| key_of(arg).map(|key| (key, arg)))
        .collect();
    // By key: the file's settings would otherwise come last (clap moves an argument it edits).
    args.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, arg) in args {
        let id = arg.get_id().as_str();
        let value = matches.get_raw(id).map(|values| {
            values
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",")
        });
        let Some(value) = value else {
            let _ = writeln!(out, "# {key} = (not set)");
            continue;
        };
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag".to_owned(),
            Some(ValueSource::EnvVariable) => format!(
                "environment {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy())
                    .unwrap_or_default()
            ),
            Some(ValueSource::DefaultValue) => from_file
                .get(id)
                .map_or_else(|| "default".to_owned(), |at| format!("file {at}")),
            _ => "unknown".to_owned(),
        };
        let shown = redacted(&key, &value);
        let _ = writeln!(out, "{key} = {}  # {source}", toml_edit::Value::from(shown));
    }
    out
}

/// `value` with whatever could be a credential replaced.
pub fn redacted(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        return if value.is_empty() {
            String::new()
        } else {
            REDACTED.to_owned()
        };
    }
    if key.ends_with("properties") {
        return value
            .split(',')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_property(name) => format!("{name}={REDACTED}"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",");
    }
    without_url_password(value)
}

fn is_secret_key(key: &str) -> bool {
    ["token", "secret_key", "password"]
        .iter()
        .any(|word| key.contains(word))
}

fn is_secret_property(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    ["password", "secret", "jaas", "key", "oauthbearer", "token"]
        .iter()
        .any(|word| name.contains(word))
}

/// A URL's password (`scylla://user:pass@host/ks`) and query values named like credentials
/// (`?token=…`) replaced; anything else unchanged.
fn without_url_password(value: &str) -> String {
    let Ok(mut url) = url::Url::parse(value) else {
        return value.to_owned();
    };
    let mut changed = false;
    if url.password().is_some() {
        if url.set_password(Some("redacted")).is_err() {
            return REDACTED.to_owned();
        }
        changed = true;
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let secret = is_secret_property(&name);
                changed |= secret;
                let value = if secret {
                    "redacted".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if changed {
        url.to_string()
    } else {
        value.to_owned()
    }
}
