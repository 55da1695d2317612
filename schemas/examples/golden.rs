//! Writes the golden fixtures, and shows any message as JSON.
//!
//!     cargo run -p swarm-schemas --example golden -- write tests/fixtures/golden
//!     cargo run -p swarm-schemas --example golden -- show FILE
//!
//! `write` adds the fixture of every sample that has none (a new kind, a new sample) and never
//! rewrites an existing one: a fixture is what a released version put on the wire, and readers
//! of every later release are tested against it. It fails, changing nothing, when a sample no
//! longer reads back from its fixture. No test runs it.
//!
//! `show` prints a MessagePack message (a fixture, or a message saved from a stream that a
//! component could not read) as JSON, whatever its kind or version.

// Shared with the tests, which use more of them.
#[allow(dead_code)]
#[path = "../tests/golden/files.rs"]
mod files;
#[path = "../tests/golden/request_samples.rs"]
mod request_samples;
#[allow(dead_code)]
#[path = "../tests/golden/samples.rs"]
mod samples;
#[path = "../tests/golden/work_samples.rs"]
mod work_samples;

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["write", dir] => write(Path::new(dir)),
        ["show", file] => match std::fs::read(file) {
            Ok(bytes) => match rmp_serde::from_slice::<serde_json::Value>(&bytes) {
                Ok(json) => {
                    println!("{}", serde_json::to_string_pretty(&json).expect("prints"));
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("golden: {file} is not MessagePack: {err}");
                    ExitCode::FAILURE
                }
            },
            Err(err) => {
                eprintln!("golden: cannot read {file}: {err}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: golden write DIR | golden show FILE");
            ExitCode::from(2)
        }
    }
}

fn write(dir: &Path) -> ExitCode {
    let kinds = samples::kinds();
    let (written, unchanged, conflicts) = files::write_missing(dir, &kinds);
    for name in &written {
        println!("wrote {name} (and its .json twin)");
    }
    println!(
        "{} written, {unchanged} already there and unchanged, in {}",
        written.len(),
        dir.display()
    );
    if conflicts.is_empty() {
        return ExitCode::SUCCESS;
    }
    for name in &conflicts {
        eprintln!(
            "golden: {name} holds another value than its sample now: fixtures are never \
             rewritten; keep the sample as it was and add the new value under a new sample name"
        );
    }
    ExitCode::FAILURE
}
