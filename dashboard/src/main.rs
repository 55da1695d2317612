//! `swarm-dashboard`: parses arguments, loads config, sets up logging and runs the library.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let about =
        "The build swarm's live dashboard: every drone's state, the queue and recent failures";
    runtime::daemon::run(clap::command!().about(about), swarm_dashboard::run).await?;
    Ok(())
}
