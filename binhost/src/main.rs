//! `swarm-binhost`: parses arguments, loads config, sets up logging and runs the library.

fn main() -> anyhow::Result<()> {
    let about = "The build swarm's binhost: serves the built binary packages to Gentoo clients";
    runtime::daemon::main(clap::command!().about(about), swarm_binhost::run)?;
    Ok(())
}
