//! `swarm-dashboard`: parses arguments, loads config, sets up logging and runs the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "The build swarm's live dashboard: every drone's state, the queue and recent failures"
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
    let config: swarm_dashboard::Config =
        runtime::config::load(args.config.as_deref()).context("loading configuration")?;
    config.validate().context("checking configuration")?;
    if args.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    runtime::logging::init(&config.log);
    let shutdown = CancellationToken::new();
    runtime::shutdown::cancel_on_signal(shutdown.clone());
    swarm_dashboard::run(config, shutdown).await?;
    Ok(())
}
