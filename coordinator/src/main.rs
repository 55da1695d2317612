//! `swarm-coordinator`: parses arguments, loads config, sets up logging and runs the library.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let about = "The build swarm's coordinator: owns the queue and every package's state";
    runtime::daemon::run(clap::command!().about(about), swarm_coordinator::run).await?;
    Ok(())
}
