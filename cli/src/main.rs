//! `swarmctl`: parses arguments, loads config, sets up logging, runs the library and turns its
//! result into the exit status (0 success, 1 a failure found, 2 error).

use std::process::ExitCode;

use clap::Parser;
use swarmctl::{Cli, Config, EXIT_ERROR};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    runtime::logging::init(&config.log);
    let tokio = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio,
        Err(err) => return fail(&err),
    };
    let result = tokio.block_on(swarmctl::run(
        &config,
        cli.command,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ));
    match result {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(err) => fail(&err),
    }
}

fn fail(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_ERROR)
}
