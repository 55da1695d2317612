//! `swarm-dashboard`: parses arguments, loads config, sets up logging and runs the library.

fn main() -> anyhow::Result<()> {
    let about =
        "The build swarm's live dashboard: every drone's state, the queue and recent failures";
    runtime::daemon::main(clap::command!().about(about), swarm_dashboard::run)?;
    Ok(())
}
