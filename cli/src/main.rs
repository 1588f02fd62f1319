//! `hookstream`: the operator's command line over the Hookstream API.

mod args;
mod client;
mod commands;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::client::{CliError, Client};

/// Where `make run` keeps the API token it generated.
const LOCAL_TOKEN_FILE: &str = ".hookstream/api-token";

fn token(cli: &Cli) -> Result<String, CliError> {
    if let Some(token) = &cli.token {
        return Ok(token.clone());
    }
    std::fs::read_to_string(LOCAL_TOKEN_FILE)
        .map(|t| t.trim().to_owned())
        .map_err(|_| {
            CliError::Usage(format!(
                "no API token: pass --token, set HOOKSTREAM_API_TOKEN, or run from the folder of `make run` ({LOCAL_TOKEN_FILE})"
            ))
        })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_output = cli.json;
    let result = async {
        let client = Client::new(&cli.url, token(&cli)?)?;
        commands::run(&client, cli.command, json_output).await
    }
    .await;
    match result {
        Ok(output) => {
            if json_output {
                println!("{}", output.json);
            } else {
                println!("{}", output.text);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("hookstream: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
