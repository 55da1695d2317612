//! The run planner (`planner/swarm_plan.py`) asks Portage itself for a run's packages and their
//! build edges: its Python tests pass against Portage's own `ResolverPlayground`, a fake
//! repository made by the tests. They prove that a package's DEPEND and BDEPEND to packages of
//! the run, and what those need at run time (their RDEPEND and IDEPEND, transitively), become
//! its `deps`, in Portage's merge order, while its own RDEPEND, PDEPEND and IDEPEND do not;
//! that a cycle keeps only its edge to the earlier package and reports the other; that
//! dependencies left installed are outside the run; that an atom Portage cannot resolve is an
//! error naming it; and that the script writes a four-column run file whose deps all name
//! earlier lines.

use std::process::Command;

#[test]
fn the_planner_resolves_runs_with_portage() {
    let python = testkit::portage::python().expect("Portage for the planner");
    let root = testkit::workspace_root();
    let output = Command::new(&python)
        .arg(root.join("planner/test_swarm_plan.py"))
        .current_dir(&root)
        .output()
        .expect("the planner's tests run");
    assert!(
        output.status.success(),
        "planner/test_swarm_plan.py failed ({}) with {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        python.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
