//! `swarm-coordinator`: parses arguments, loads config, sets up logging and runs the library.

fn main() -> anyhow::Result<()> {
    let about = "The build swarm's coordinator: owns the queue and every package's state";
    runtime::daemon::main(
        clap::command!().about(about),
        swarm_coordinator::stopping::run,
    )?;
    Ok(())
}
