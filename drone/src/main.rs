//! `swarm-drone`: parses arguments, loads config, sets up logging and runs the library.

fn main() -> anyhow::Result<()> {
    // Internal mode: the drone runs each build under itself (see `supervise`).
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some("supervise") {
        let argv = raw.get(2..).unwrap_or_default();
        let argv = argv.strip_prefix(&["--".to_owned()]).unwrap_or(argv);
        std::process::exit(swarm_drone::supervise::run(argv));
    }
    let about = "A build machine of the swarm: pulls jobs by free slots and builds them";
    runtime::daemon::main(clap::command!().about(about), swarm_drone::run)?;
    Ok(())
}
