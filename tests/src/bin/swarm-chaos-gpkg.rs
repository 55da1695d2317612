//! `swarm-chaos-gpkg PKGDIR ATOM DRONE`: writes ATOM's binary package into PKGDIR with the
//! drone's own writer of simulated packages (`drone::artifacts::write_simulated`), for the chaos
//! soak's `emerge` (tests/fixtures/chaos-emerge), which then runs the recording build script.
//! A real gpkg in milliseconds, where the Portage-based fake emerge takes a Python start.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pkgdir, atom, drone] = args.as_slice() else {
        eprintln!("usage: swarm-chaos-gpkg PKGDIR ATOM DRONE (got {args:?})");
        return ExitCode::from(2);
    };
    let parsed = (
        schemas::Atom::parse(atom).map_err(|e| format!("atom {atom:?}: {e}")),
        schemas::DroneName::parse(drone).map_err(|e| format!("drone {drone:?}: {e}")),
        schemas::Arch::parse("amd64").map_err(|e| e.to_string()),
    );
    let (atom, drone, arch) = match parsed {
        (Ok(a), Ok(d), Ok(arch)) => (a, d, arch),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("swarm-chaos-gpkg: {e}");
            return ExitCode::from(2);
        }
    };
    let now = runtime::now_ms() / 1000;
    match drone::artifacts::write_simulated(pkgdir.as_ref(), &atom, &arch, &drone, now) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("swarm-chaos-gpkg: {atom} into {pkgdir}: {err}");
            ExitCode::FAILURE
        }
    }
}
