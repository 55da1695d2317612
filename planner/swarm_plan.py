#!/usr/bin/env python3
"""Plans a swarm run by asking Portage itself: which packages, in which order, with which
build-dependency edges.

    python3 planner/swarm_plan.py [--show] [--keep-installed] [ATOM ...]   (no atoms: @world)

The atoms are resolved as `emerge --pretend --emptytree ATOMS` resolves them, through Portage's
own Python API (`backtrack_depgraph`, then `altlist()` for the merge list in merge order), with
the host's configuration as emerge reads it (`PORTAGE_CONFIGROOT`, `ROOT`, `SYSROOT`, `EPREFIX`
honoured). What a package needs to build is read from Portage's resolved dependency graph
(`_dynamic_config.digraph`): its build dependencies, the children of its edges whose priority is
build-time (its DEPEND and BDEPEND after USE and `||` choices, as Portage chose them), plus the
runtime closure of each of them, since emerge installs a build dependency together with what it
needs at run time: the children of its runtime edges (RDEPEND, and IDEPEND, which Portage holds
as runtime too), their runtime children, and so on through the packages of the run (a package
left installed is taken as it is installed, with its runtime dependencies). PDEPEND is not
followed: Portage merges it after the package, not before the package's dependents. A package's
own RDEPEND, PDEPEND and IDEPEND are not its edges. Only edges to packages earlier in the merge
order are kept, so the run is acyclic by construction; an edge to a later package (one side of a
cycle that Portage broke, such as gcc <-> glibc, whose installed side serves meanwhile) is
dropped and counted. With `--keep-installed` the atoms are resolved as `emerge --pretend --deep`
resolves them instead: dependencies the host has installed are not rebuilt, and are what `--show`
lists as needed from outside the run (with `--emptytree` Portage rebuilds them all).

Prints the run file to stdout: `#` comment lines, then one line per package in merge order,
tab-separated: `=CATEGORY/PF`, estimated seconds (empty), size class (empty), and the
comma-separated `=CATEGORY/PF` of what it needs to build from the run (its build dependencies and
their runtime closure), or `-`. `--show` also prints to stderr, per package, what it needs to
build from outside the run and the dropped back edges.
Errors go to stderr, exit status 2.
"""

import argparse
import contextlib
import dataclasses
import io
import os
import re
import sys

USAGE_ERROR = 2


class PlanError(Exception):
    """Portage could not plan the run: `atom` is what it could not resolve (or None), `reason`
    says why in one line, `details` is what Portage itself printed."""

    def __init__(self, atom, reason, details=""):
        super().__init__(f"{atom}: {reason}" if atom else reason)
        self.atom = atom
        self.reason = reason
        self.details = details


@dataclasses.dataclass
class Plan:
    """A planned run. Every package is `=CATEGORY/PF`.

    packages: the packages to build, in Portage's merge order.
    deps: package -> what it needs to build from the run (build dependencies and their runtime
        closure), all earlier in `packages`, in merge order.
    dropped: (package, dependency) such edges to a package later in the order, left out.
    outside: package -> what it needs to build that is not built in this run (installed).
    messages: what Portage printed while resolving (warnings), for stderr.
    emptytree: resolved as `--emptytree` (else as `--deep`, installed packages kept).
    """

    packages: list
    deps: dict
    dropped: list
    outside: dict
    messages: str = ""
    emptytree: bool = True

    def edge_count(self):
        return sum(len(deps) for deps in self.deps.values())


def _name(pkg):
    return f"={pkg.cpv}"


def _is_build_priority(priority):
    """A DEPEND/BDEPEND edge that Portage holds as needed (see depgraph._add_pkg_deps)."""
    return bool(
        getattr(priority, "buildtime", False)
        and not getattr(priority, "optional", False)
        and not getattr(priority, "ignored", False)
    )


def _not_build_priority(priority):
    return not _is_build_priority(priority)


def _is_runtime_priority(priority):
    """An RDEPEND edge, or an IDEPEND one: depgraph._add_pkg_deps gives RDEPEND `runtime` and
    IDEPEND `installtime` and `runtime` (a slot operator adds `runtime_slot_op`), and the merge
    order holds both before the package (DepPriorityNormalRange ignores them only after
    `runtime_post`). IDEPEND belongs: installing a build dependency into the build environment
    runs its pkg_preinst/pkg_postinst, which need it. PDEPEND (`runtime_post` alone) does not:
    Portage merges it after the package and ignores it first when it orders a cycle, so emerge
    itself may build a dependent before a build dependency's PDEPEND is there."""
    return bool(
        getattr(priority, "runtime", False)
        and not getattr(priority, "optional", False)
        and not getattr(priority, "ignored", False)
    )


def _not_runtime_priority(priority):
    return not _is_runtime_priority(priority)


class _RuntimeClosure:
    """closure(pkg): the packages `pkg` needs at run time, transitively: the children of its
    runtime edges, theirs, and so on, through the packages of the run (`in_run`); a package
    outside the run (left installed) is in a closure but not followed, it is installed with its
    own runtime dependencies. Memoized per strongly connected component (Tarjan's algorithm,
    iterative: runtime cycles are common, and a memo filled during a plain depth-first walk
    would be incomplete inside them), so each package's runtime edges are read once."""

    def __init__(self, graph, in_run):
        from _emerge.Package import Package

        self._graph, self._in_run, self._package = graph, in_run, Package
        self._closure = {}

    def _children(self, pkg):
        if not self._graph.contains(pkg):
            return []
        children = self._graph.child_nodes(pkg, _not_runtime_priority)
        return [child for child in children if isinstance(child, self._package)]

    def __call__(self, pkg):
        if pkg not in self._closure:
            self._visit(pkg)
        return self._closure[pkg]

    def _visit(self, root):
        index, low, stack, on_stack, children = {}, {}, [], set(), {}

        def enter(node):
            index[node] = low[node] = len(index)
            stack.append(node)
            on_stack.add(node)
            children[node] = self._children(node)
            return (node, iter(children[node]))

        work = [enter(root)]
        while work:
            node, pending = work[-1]
            for child in pending:
                if child not in self._in_run or child in self._closure:
                    continue
                if child not in index:
                    work.append(enter(child))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    self._close_component(node, stack, on_stack, children)

    def _close_component(self, head, stack, on_stack, children):
        """Pops the component whose first visited node is `head`: its closure is what its
        members point to, with the closures of the (already closed) components they reach."""
        members = []
        while not members or members[-1] is not head:
            members.append(stack.pop())
            on_stack.discard(members[-1])
        reach = set()
        for member in members:
            for child in children[member]:
                reach.add(child)
                if child in self._closure:
                    reach.update(self._closure[child])
        closure = frozenset(reach)
        for member in members:
            self._closure[member] = closure


def _portage_text(mydepgraph):
    """What emerge would print about the depgraph's problems, as plain text."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        with contextlib.suppress(Exception):
            mydepgraph.display_problems()
    return buf.getvalue().strip()


def _as_typed(atom, parent):
    """The atom as the user typed it when it is an argument (`foo`, which Portage expands to
    `null/foo` when no category has it), else as Portage has it."""
    from _emerge.AtomArg import AtomArg

    return parent.arg if isinstance(parent, AtomArg) else str(atom)


def _failure(mydepgraph, trees, atoms, details):
    """The first thing Portage could not resolve, with a one-line reason."""
    dynamic = mydepgraph._dynamic_config
    for (root, atom), kwargs in dynamic._unsatisfied_deps_for_display:
        parent = kwargs.get("myparent")
        required = f" (required by {_name(parent)})" if hasattr(parent, "cpv") else ""
        if kwargs.get("show_req_use") is not None:
            reason = "its REQUIRED_USE is not satisfied"
        elif trees[root]["porttree"].dbapi.xmatch("match-all", atom.without_use):
            reason = "every ebuild that matches it is masked or lacks the USE it needs"
        else:
            reason = "no ebuild in the configured repositories matches it"
        return PlanError(_as_typed(atom, parent), reason + required, details)
    for arg, atom in dynamic._missing_args:
        return PlanError(_as_typed(atom, arg), "no ebuild matches it", details)
    if dynamic._circular_deps_for_display is not None:
        return PlanError(None, "circular build dependencies Portage cannot break", details)
    changes = (
        list(dynamic._needed_unstable_keywords)
        + list(dynamic._needed_p_mask_changes)
        + list(dynamic._needed_license_changes)
        + list(dynamic._needed_use_config_changes)
    )
    if changes:
        names = ", ".join(sorted({_name(pkg) for pkg in changes}))
        return PlanError(names, "needs changes to the Portage configuration", details)
    for conflict in dynamic._package_tracker.slot_conflicts():
        names = ", ".join(sorted(_name(pkg) for pkg in conflict.pkgs))
        return PlanError(str(conflict.atom), f"slot conflict between {names}", details)
    ambiguous = re.search(r'short ebuild name "([^"]+)" is ambiguous', details)
    if ambiguous:
        return PlanError(ambiguous[1], "ambiguous short name, give its category", details)
    return PlanError(" ".join(atoms), "Portage cannot resolve it", details)


def resolve(settings, trees, atoms, emptytree=True):
    """Portage's depgraph for `emerge --pretend --emptytree ATOMS` (without `emptytree`:
    `emerge --pretend --deep ATOMS`) and its merge list."""
    import _emerge.emergelog
    import portage
    from _emerge.actions import expand_set_arguments
    from _emerge.create_depgraph_params import create_depgraph_params
    from _emerge.depgraph import backtrack_depgraph

    atoms = list(atoms) or ["@world"]
    opts = {"--pretend": True, "--emptytree" if emptytree else "--deep": True}
    params = create_depgraph_params(opts, None)
    root_config = trees[settings["EROOT"]]["root_config"]
    _emerge.emergelog._disable = True
    portage.output.nocolor()
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            args, status = expand_set_arguments(atoms, None, root_config)
            if status != os.EX_OK:
                sets = " ".join(a for a in atoms if a.startswith("@") or a in ("world", "system"))
                raise PlanError(sets or None, "not a package set Portage knows", buf.getvalue())
            success, mydepgraph, _favorites = backtrack_depgraph(
                settings, trees, opts, params, None, args, None
            )
            if not success:
                details = (buf.getvalue() + "\n" + _portage_text(mydepgraph)).strip()
                raise _failure(mydepgraph, trees, atoms, details)
            try:
                mergelist = mydepgraph.altlist()
            except mydepgraph._unknown_internal_error:
                details = _portage_text(mydepgraph)
                raise _failure(mydepgraph, trees, atoms, details) from None
            mydepgraph.display_problems()
    except portage.exception.AmbiguousPackageName as err:
        names = ", ".join(str(name) for name in err.args[0]) if err.args else ""
        reason = f"ambiguous package name, it could be any of: {names}"
        raise PlanError(" ".join(atoms), reason, buf.getvalue()) from None
    except portage.exception.PackageSetNotFound as err:
        raise PlanError(f"@{err}", "no such package set", buf.getvalue()) from None
    except portage.exception.PortageException as err:
        reason = f"{type(err).__name__}: {err}"
        raise PlanError(" ".join(atoms), reason, buf.getvalue()) from None
    return mydepgraph, mergelist, buf.getvalue().strip()


def plan(settings, trees, atoms, emptytree=True):
    """The run for `atoms` (none: @world) on the configuration `settings`/`trees` (as
    `portage.create_trees` makes them, each root with its `root_config`). With `emptytree`
    everything is rebuilt, as `emerge --emptytree` does; without it, dependencies the host has
    installed stay outside the run. Raises PlanError."""
    from _emerge.Package import Package

    mydepgraph, mergelist, messages = resolve(settings, trees, atoms, emptytree)
    builds = [
        task
        for task in mergelist
        if isinstance(task, Package) and task.operation == "merge" and task.type_name == "ebuild"
    ]
    position = {pkg: index for index, pkg in enumerate(builds)}
    graph = mydepgraph._dynamic_config.digraph
    runtime_closure = _RuntimeClosure(graph, position)
    deps, dropped, outside = {}, set(), {}
    for pkg in builds:
        needs = set()
        children = graph.child_nodes(pkg, _not_build_priority) if graph.contains(pkg) else []
        for child in children:
            if not isinstance(child, Package):
                continue
            needs.add(child)
            if child in position:
                needs.update(runtime_closure(child))
        needs.discard(pkg)  # a build dependency may need `pkg` at run time: not an edge
        earlier, others = [], set()
        for need in needs:
            where = position.get(need)
            if where is None:
                others.add(_name(need))
            elif where < position[pkg]:
                earlier.append(need)
            else:
                # A need later in the order is one side of a cycle Portage broke: a build
                # dependency (as before), or one reached at run time through a build dependency
                # that Portage merges before its own runtime dependency, which it does only when
                # an installed version satisfies that (else it refuses the cycle). Both are
                # dropped and counted alike, not left out silently: emerge builds `pkg` there
                # with the installed version, and --show names the needs the run cannot honour.
                dropped.add((pkg, need))
        earlier.sort(key=position.__getitem__)
        deps[_name(pkg)] = list(dict.fromkeys(_name(need) for need in earlier))
        if others:
            outside[_name(pkg)] = sorted(others)
    dropped = sorted(dropped, key=lambda edge: (position[edge[0]], position[edge[1]]))
    return Plan(
        packages=[_name(pkg) for pkg in builds],
        deps=deps,
        dropped=[(_name(pkg), _name(child)) for pkg, child in dropped],
        outside=outside,
        messages=messages,
        emptytree=emptytree,
    )


def render(run, atoms):
    """The run file: comment lines, then `=CATEGORY/PF<TAB><TAB><TAB>deps` in merge order."""
    what = " ".join(atoms) if atoms else "@world"
    mode = "--emptytree" if run.emptytree else "--deep"
    lines = [
        "# atom\test_seconds_8_cores\tkind\tdeps",
        f"# A swarm run planned by Portage (planner/swarm_plan.py) for {what}, in the merge",
        f"# order of `emerge --pretend {mode}`. The fourth column names the packages of this",
        "# list each one needs to build (DEPEND and BDEPEND as Portage resolved them, and",
        "# what those need at run time: RDEPEND and IDEPEND, transitively).",
        f"# {len(run.packages)} packages, {run.edge_count()} build edges; {len(run.dropped)} back"
        " edges dropped",
        "# (to a package later in the merge order: a cycle Portage broke), so it is acyclic.",
    ]
    for pkg in run.packages:
        lines.append(f"{pkg}\t\t\t{','.join(run.deps[pkg]) or '-'}")
    return "\n".join(lines) + "\n"


def show(run):
    """The --show report: dependencies outside the run, dropped back edges."""
    lines = []
    for pkg in run.packages:
        if pkg in run.outside:
            lines.append(f"{pkg}: needs outside the run: {', '.join(run.outside[pkg])}")
    for pkg, dep in run.dropped:
        lines.append(f"{pkg}: dropped back edge to {dep} (later in the merge order)")
    return "".join(line + "\n" for line in lines)


def load_config():
    """settings and trees as emerge loads them (PORTAGE_CONFIGROOT, ROOT, SYSROOT, EPREFIX)."""
    from _emerge.actions import load_emerge_config

    emerge_config = load_emerge_config()
    return emerge_config.target_config.settings, emerge_config.trees


def main(argv=None, stdout=None, stderr=None):
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = argparse.ArgumentParser(
        prog="swarm_plan.py",
        description="Plan a swarm run with Portage: packages in merge order and their build "
        "dependencies, as a run file on stdout.",
    )
    parser.add_argument(
        "--show",
        action="store_true",
        help="also print to stderr each package's build dependencies outside the run and the "
        "dropped back edges",
    )
    parser.add_argument(
        "--keep-installed",
        action="store_true",
        help="resolve like `emerge --pretend --deep` instead of `--emptytree`: dependencies the "
        "host has installed are not rebuilt and stay outside the run",
    )
    parser.add_argument("atoms", nargs="*", metavar="ATOM", help="atoms or @sets (default: @world)")
    options = parser.parse_args(argv)
    # Portage prints its configuration warnings on stdout; stdout is the run file's.
    with contextlib.redirect_stdout(stderr):
        try:
            import _emerge.depgraph  # noqa: F401
            import portage  # noqa: F401
        except ImportError as err:
            print(
                f"swarm_plan: cannot import Portage's Python modules ({err}): install the "
                "`portage` package (scripts/install-deps.sh --test-tools puts it in .tools/venv)",
                file=stderr,
            )
            return USAGE_ERROR
        try:
            settings, trees = load_config()
            run = plan(settings, trees, options.atoms, emptytree=not options.keep_installed)
        except PlanError as err:
            subject = f"cannot resolve {err.atom}" if err.atom else "cannot plan the run"
            print(f"swarm_plan: {subject}: {err.reason}", file=stderr)
            if err.details:
                print(err.details, file=stderr)
            return USAGE_ERROR
        except Exception as err:  # Portage's configuration errors: unreadable profile, repos.conf
            print(f"swarm_plan: Portage failed: {type(err).__name__}: {err}", file=stderr)
            return USAGE_ERROR
    if run.messages:
        print(run.messages, file=stderr)
    stdout.write(render(run, options.atoms))
    if options.show:
        stderr.write(show(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
