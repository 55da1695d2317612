//! `swarm-drone`: parses arguments, loads config, sets up logging and runs the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "A build machine of the swarm: pulls jobs by free slots and builds them"
)]
struct Args {
    /// TOML config file; `SWARM_` environment variables override it.
    #[arg(long, env = "SWARM_CONFIG")]
    config: Option<PathBuf>,
    /// Load and validate the configuration, then exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> anyhow::Result<()> {
    // Internal mode: the drone runs each build under itself (see `supervise`).
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("supervise") {
        let argv = raw.get(2..).unwrap_or_default();
        let argv = argv.strip_prefix(&["--".to_owned()]).unwrap_or(argv);
        std::process::exit(swarm_drone::supervise::run(argv));
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some((config, shutdown)) =
        runtime::daemon::start::<swarm_drone::Config>(args.config.as_deref(), args.check_config)
            .context("configuration")?
    else {
        return Ok(());
    };
    swarm_drone::run(config, shutdown).await?;
    Ok(())
}
