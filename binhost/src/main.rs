//! `swarm-binhost`: parses arguments, loads config, sets up logging and runs the library.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let about = "The build swarm's binhost: serves the built binary packages to Gentoo clients";
    runtime::daemon::run(clap::command!().about(about), swarm_binhost::run).await?;
    Ok(())
}
