//! The run planner (`planner/swarm_plan.py`) asks Portage itself for a run's packages and their
//! build edges: its Python tests pass against Portage's own `ResolverPlayground`, a fake
//! repository made by the tests. They prove that a package's DEPEND and BDEPEND to packages of
//! the run, and what those need at run time (their RDEPEND and IDEPEND, transitively), become
//! its `deps`, in Portage's merge order, while its own RDEPEND, PDEPEND and IDEPEND do not;
//! that a cycle keeps only its edge to the earlier package and reports the other; that
//! dependencies left installed are outside the run; that an atom Portage cannot resolve is an
//! error naming it; and that the script writes a four-column run file whose deps all name
//! earlier lines.

use std::process::{Command, Output};

/// Runs the planner's Python tests (those whose name contains `filter`, all when empty) with
/// `env`, and fails with what they printed unless they pass.
fn planner_tests(filter: &str, env: &[(&str, String)]) -> Output {
    let python = testkit::portage::python().expect("Portage for the planner");
    let root = testkit::workspace_root();
    let mut command = Command::new(&python);
    command.arg(root.join("planner/test_swarm_plan.py"));
    if !filter.is_empty() {
        command.args(["-k", filter]);
    }
    let output = command
        .envs(env.iter().map(|(k, v)| (k, v)))
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
    output
}

#[test]
fn the_planner_resolves_runs_with_portage() {
    planner_tests("", &[]);
}

/// `swarmctl plan`, which carries the planner, passes the script's own tests as the script
/// does: the same run file, the same `--show`, an unknown atom refused naming it (exit 2).
#[test]
fn swarmctl_plan_runs_the_planner_it_carries() {
    let python = testkit::portage::python().expect("Portage for the planner");
    let swarmctl = swarm_tests::bin("swarmctl");
    let command = serde_json::json!([
        swarmctl.display().to_string(),
        "plan",
        "--python",
        python.display().to_string()
    ]);
    let output = planner_tests("the_script", &[("SWARM_PLAN_COMMAND", command.to_string())]);
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(report.contains("Ran 3 tests"), "{report}");
}
