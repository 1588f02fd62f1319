use std::io::Write as _;

use clap::Parser;

use super::*;

/// A few of the dispatcher's settings, spelled as the dispatcher spells them.
#[derive(Debug, Parser)]
#[command(name = "hookstream-dispatcher")]
struct Settings {
    #[arg(long, env = "HOOKSTREAM_REQUEST_TIMEOUT", default_value = "10", value_parser = seconds)]
    request_timeout: u64,
    #[arg(long, env = "HOOKSTREAM_MAX_IN_FLIGHT", default_value_t = 5000)]
    max_in_flight: usize,
    #[arg(long, env = "HOOKSTREAM_SECRET_KEY")]
    secret_key: Option<String>,
    #[arg(long, env = "HOOKSTREAM_KAFKA_PROPERTIES", default_value = "")]
    kafka_properties: String,
    #[arg(long, env = "HOOKSTREAM_DISPATCHER_GROUP")]
    dispatcher_group: String,
}

fn seconds(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(text.as_bytes()).expect("written");
    file
}

fn load(file: &tempfile::NamedTempFile, flags: &[&str]) -> Result<Loaded<Settings>, ConfigError> {
    let path = file.path().to_str().expect("a UTF-8 path").to_owned();
    let mut args = vec![
        "hookstream-dispatcher".to_owned(),
        "--config".to_owned(),
        path,
    ];
    args.extend(flags.iter().map(|f| (*f).to_owned()));
    try_load_from(Service::Dispatcher, args)
}

fn run(loaded: Result<Loaded<Settings>, ConfigError>) -> Settings {
    match loaded {
        Ok(Loaded::Run(settings)) => settings,
        other => panic!("expected settings, got {other:?}"),
    }
}

fn problems(loaded: Result<Loaded<Settings>, ConfigError>) -> String {
    match loaded {
        Err(error @ ConfigError::File { .. }) => error.to_string(),
        other => panic!("expected problems in the file, got {other:?}"),
    }
}

#[test]
fn the_file_sets_what_flags_do_not_and_a_section_wins_over_the_top() {
    let config = file(
        "max_in_flight = 100\nrequest_timeout = 3\ndispatcher_group = \"top\"\n\
         [dispatcher]\ndispatcher_group = \"mine\"\n[ingest]\napi_token = \"t\"\n",
    );
    let settings = run(load(&config, &["--request-timeout", "7"]));
    assert_eq!(settings.max_in_flight, 100, "from the file");
    assert_eq!(settings.request_timeout, 7, "a flag wins over the file");
    assert_eq!(
        settings.dispatcher_group, "mine",
        "the section wins over the top"
    );
}

#[test]
fn a_required_setting_may_come_from_the_file_and_without_it_clap_says_so() {
    let config = file("dispatcher_group = \"g\"\n");
    assert_eq!(run(load(&config, &[])).dispatcher_group, "g");
    let empty = file("");
    match load(&empty, &[]) {
        Err(ConfigError::Cli(error)) => {
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::MissingRequiredArgument
            )
        }
        other => panic!("expected clap's error, got {other:?}"),
    }
}

#[test]
fn keys_other_services_take_are_left_to_them_at_the_top_only() {
    // `api_token` is ingest's: fine at the top, refused in the dispatcher's section.
    let config = file("dispatcher_group = \"g\"\napi_token = \"t\"\n");
    assert_eq!(run(load(&config, &[])).dispatcher_group, "g");
    let config = file("dispatcher_group = \"g\"\n[dispatcher]\napi_token = \"t\"\n");
    let shown = problems(load(&config, &[]));
    assert!(
        shown.ends_with(":3: unknown setting `api_token` of `[dispatcher]`"),
        "{shown}"
    );
}

#[test]
fn unknown_keys_and_bad_values_name_file_line_and_key_all_at_once() {
    let config = file(
        "dispatcher_group = \"g\"\nmax_in_fligth = 5\nrequest_timeout = \"soon\"\n[ingest]\nnope = 1\n\
         seal_plain_secrets = true\n",
    );
    let shown = problems(load(&config, &[]));
    let path = config.path().display().to_string();
    assert_eq!(
        shown,
        format!(
            "{path}:2: unknown setting `max_in_fligth` (did you mean `max_in_flight`?)\n\
             {path}:3: `request_timeout`: `soon` is not a number of seconds\n\
             {path}:5: unknown setting `nope` of `[ingest]`\n\
             {path}:6: `seal_plain_secrets` is a one-off action, given only as a flag or \
             variable (in a file every start would repeat it)"
        )
    );
}

#[test]
fn a_bad_value_stops_the_start_even_when_a_flag_overrides_it() {
    let config = file("dispatcher_group = \"g\"\nmax_in_flight = -1\n");
    let shown = problems(load(&config, &["--max-in-flight", "10"]));
    assert!(shown.contains(":2: `max_in_flight`: "), "{shown}");
}

#[test]
fn a_file_that_does_not_parse_or_is_missing_is_named() {
    let config = file("dispatcher_group = \"g\n");
    let shown = problems(load(&config, &[]));
    assert!(
        shown.starts_with(&format!("{}:1:", config.path().display())),
        "{shown}"
    );
    let gone = config.path().with_extension("gone");
    let missing = try_load_from::<Settings, _>(
        Service::Dispatcher,
        [
            "hookstream-dispatcher",
            "--config",
            gone.to_str().expect("utf-8"),
        ],
    );
    match missing {
        Err(error @ ConfigError::Read { .. }) => {
            assert!(error.to_string().contains(gone.to_str().expect("utf-8")))
        }
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn print_config_shows_each_value_and_its_source_with_secrets_redacted() {
    let config = file(
        "dispatcher_group = \"g\"\nsecret_key = \"c2VjcmV0\"\n\
         kafka_properties = \"sasl.password=hunter2,client.id=x\"\n",
    );
    let printed = match load(&config, &["--print-config", "--max-in-flight", "9"]) {
        Ok(Loaded::Print(text)) => text,
        other => panic!("expected the settings printed, got {other:?}"),
    };
    let path = config.path().display().to_string();
    assert!(
        !printed.contains("c2VjcmV0") && !printed.contains("hunter2"),
        "{printed}"
    );
    for line in [
        format!("dispatcher_group = \"g\"  # file {path}:1"),
        format!("secret_key = \"<redacted>\"  # file {path}:2"),
        format!("kafka_properties = \"sasl.password=<redacted>,client.id=x\"  # file {path}:3"),
        "max_in_flight = \"9\"  # flag".to_owned(),
        "request_timeout = \"10\"  # default".to_owned(),
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "no `{line}` in\n{printed}"
        );
    }
}

#[test]
fn url_passwords_are_redacted() {
    assert_eq!(
        effective::redacted("store", "scylla://app:pw@db1:9042/hookstream"),
        "scylla://app:redacted@db1:9042/hookstream"
    );
    assert_eq!(
        effective::redacted("store", "sqlite://x.db"),
        "sqlite://x.db"
    );
}
