//! Hookstream's settings from one TOML file shared by every service, under the environment
//! and the flags: flags override `HOOKSTREAM_*` variables, which override the file, which
//! overrides the built-in defaults. The file is given by `--config FILE` or
//! `HOOKSTREAM_CONFIG`; each key is a setting's environment variable without `HOOKSTREAM_`, in
//! lower case, at the top for every service or in a service's own section (`[dispatcher]`),
//! which wins over the top for that service.
//!
//! Every value in the file is checked by the same parser as its flag before the service
//! starts, and a key no service takes stops it, so a typo is named with its file and line
//! instead of being ignored. `--print-config` prints the effective settings, secrets redacted.

mod effective;
mod file;
mod registry;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command, Parser};

pub use file::Problem;
pub use registry::{Service, check as check_registry, key_of};

const CONFIG_ID: &str = "config_file";
const PRINT_ID: &str = "print_config";

/// Why a service's settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", FileProblems { path, problems })]
    File {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    #[error(transparent)]
    Cli(#[from] clap::Error),
}

/// What loading leaves the service to do.
#[derive(Debug)]
pub enum Loaded<T> {
    Run(T),
    /// `--print-config` was given: print this and exit.
    Print(String),
}

/// Parses `T` as `clap::Parser::parse` does, with the configuration file beneath the
/// environment; prints the settings and exits for `--print-config`; on an error prints it and
/// exits non-zero.
pub fn load<T: Parser>(service: Service) -> T {
    match try_load_from::<T, _>(service, std::env::args_os()) {
        Ok(Loaded::Run(config)) => config,
        Ok(Loaded::Print(text)) => {
            print!("{text}");
            std::process::exit(0)
        }
        Err(ConfigError::Cli(error)) => error.exit(),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(2)
        }
    }
}

/// [`load`] without exiting, from the given command line (the program's name first).
pub fn try_load_from<T, I>(service: Service, args: I) -> Result<Loaded<T>, ConfigError>
where
    T: Parser,
    I: IntoIterator,
    I::Item: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = with_file_flags(T::command());
    let mut from_file = BTreeMap::new();
    if let Some(path) = config_path(&args) {
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let chosen = file::read(&text)
            .and_then(|settings| choose(service, &command, settings))
            .map_err(|problems| ConfigError::File {
                path: path.clone(),
                problems,
            })?;
        for (id, setting) in chosen {
            command = command.mut_arg(&id, |arg| {
                arg.default_value(setting.value.clone()).required(false)
            });
            from_file.insert(id, format!("{}:{}", path.display(), setting.line));
        }
    }
    let matches = command.try_get_matches_from_mut(args)?;
    if matches.get_flag(PRINT_ID) {
        return Ok(Loaded::Print(effective::render(
            &command, &matches, &from_file,
        )));
    }
    Ok(Loaded::Run(T::from_arg_matches(&matches)?))
}

/// The service's own flags plus `--config` and `--print-config`.
fn with_file_flags(command: Command) -> Command {
    command
        .arg(
            Arg::new(CONFIG_ID)
                .long("config")
                .env("HOOKSTREAM_CONFIG")
                .value_name("FILE")
                .help("TOML file of settings, shared by every service; the environment and flags override it"),
        )
        .arg(
            Arg::new(PRINT_ID)
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("Print the effective settings (secrets redacted) and where each came from, then exit"),
        )
}

/// The file named by `--config` (as clap would read it) or else `HOOKSTREAM_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == "--config" {
            return rest.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("HOOKSTREAM_CONFIG")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The file's settings this service takes, by argument id, each checked by its flag's parser;
/// a service's section wins over the top. Keys another service takes are left to it.
fn choose(
    service: Service,
    command: &Command,
    settings: Vec<file::Setting>,
) -> Result<BTreeMap<String, file::Setting>, Vec<Problem>> {
    let args: BTreeMap<String, &Arg> = command
        .get_arguments()
        .filter_map(|arg| key_of(arg).map(|key| (key, arg)))
        .collect();
    let (top, sections): (Vec<_>, Vec<_>) = settings.into_iter().partition(|s| s.section.is_none());
    let mut chosen = BTreeMap::new();
    let mut problems = Vec::new();
    for setting in top.into_iter().chain(sections) {
        let problem = |message: String| Problem::at(setting.line, message);
        if registry::flag_only(&setting.key) {
            problems.push(problem(format!(
                "`{}` is a one-off action, given only as a flag or variable (in a file every \
                 start would repeat it)",
                setting.key
            )));
            continue;
        }
        match setting.section {
            Some(other) if other != service => {
                if !other.keys().contains(&setting.key.as_str()) {
                    problems.push(problem(unknown(&setting.key, Some(other))));
                }
            }
            section => match args.get(&setting.key) {
                Some(arg) => match check_value(arg, &setting.value) {
                    Ok(()) => {
                        chosen.insert(arg.get_id().to_string(), setting);
                    }
                    Err(reason) => problems.push(problem(format!("`{}`: {reason}", setting.key))),
                },
                None if section.is_none() && Service::any_takes(&setting.key) => {}
                None => problems.push(problem(unknown(&setting.key, section))),
            },
        }
    }
    if problems.is_empty() {
        Ok(chosen)
    } else {
        Err(problems)
    }
}

fn unknown(key: &str, section: Option<Service>) -> String {
    let (taken_by, scope): (Vec<&'static str>, String) = match section {
        Some(service) => (
            service.keys().to_vec(),
            format!(" of `[{}]`", service.section()),
        ),
        None => (
            Service::ALL
                .iter()
                .flat_map(|s| s.keys().iter().copied())
                .collect(),
            String::new(),
        ),
    };
    let near = taken_by
        .into_iter()
        .filter(|candidate| edit_distance(key, candidate) <= 2)
        .min_by_key(|candidate| edit_distance(key, candidate));
    match near {
        Some(near) => format!("unknown setting `{key}`{scope} (did you mean `{near}`?)"),
        None => format!("unknown setting `{key}`{scope}"),
    }
}

/// Runs `value` through the parser of `arg`'s flag, as the service would.
fn check_value(arg: &Arg, value: &str) -> Result<(), String> {
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    let probe = Command::new("hookstream")
        .no_binary_name(true)
        .arg(arg.clone().required(false));
    match probe.try_get_matches_from([format!("--{long}={value}")]) {
        Ok(_) => Ok(()),
        Err(error) => Err(std::error::Error::source(&error).map_or_else(
            || first_line(&error.to_string()),
            |reason| reason.to_string(),
        )),
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or(text);
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

struct FileProblems<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for FileProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, problem) in self.problems.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}", self.path.display(), problem.line)?;
            if let Some(column) = problem.column {
                write!(f, ":{column}")?;
            }
            write!(f, ": {}", problem.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
