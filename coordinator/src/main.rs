//! `swarm-coordinator`: parses arguments, loads config, sets up logging and runs the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "The build swarm's coordinator: owns the queue and every package's state"
)]
struct Args {
    /// TOML config file; `SWARM_` environment variables override it.
    #[arg(long, env = "SWARM_CONFIG")]
    config: Option<PathBuf>,
    /// Load and validate the configuration, then exit.
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some((config, shutdown)) = runtime::daemon::start::<swarm_coordinator::Config>(
        args.config.as_deref(),
        args.check_config,
    )
    .context("configuration")?
    else {
        return Ok(());
    };
    swarm_coordinator::run(config, shutdown).await?;
    Ok(())
}
