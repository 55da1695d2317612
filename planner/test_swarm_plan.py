#!/usr/bin/env python3
"""Tests of planner/swarm_plan.py against Portage's own ResolverPlayground: a fake repository
of EAPI 8 ebuilds (and a fake installed system) made here, never this machine's.

    .tools/venv/bin/python planner/test_swarm_plan.py

Portage's test suite prepares its environment in portage/tests/conftest.py (pytest); this file
does the same by hand (setUpModule), plus three things the PyPI build of Portage needs off a
Gentoo host: a `gtar` (GNU tar under Gentoo's name), a `python` for the playground's egencache
that is this interpreter with its venv, and the default sets configuration where the PyPI
layout looks for it.
"""

import grp
import importlib
import os
import pwd
import json
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "swarm_plan.py")
sys.path.insert(0, HERE)

import portage  # noqa: E402
import portage.data  # noqa: E402
from portage.const import GLOBAL_CONFIG_PATH, PORTAGE_BIN_PATH  # noqa: E402
from portage.tests import cnf_path  # noqa: E402
from portage.tests.resolver.ResolverPlayground import ResolverPlayground  # noqa: E402

import swarm_plan  # noqa: E402

_saved_env = {}
_shim_dir = None


def _set_env(name, value):
    _saved_env.setdefault(name, os.environ.get(name))
    os.environ[name] = value


def setUpModule():
    """What portage/tests/conftest.py's prepare_environment does, and the shims."""
    global _shim_dir
    _set_env("PORTAGE_USERNAME", pwd.getpwuid(os.getuid()).pw_name)
    _set_env("PORTAGE_GRPNAME", grp.getgrgid(os.getgid()).gr_name)
    importlib.reload(portage.data)
    portage._internal_caller = True
    portage._disable_legacy_globals()
    _shim_dir = tempfile.mkdtemp(prefix="swarm-plan-test-")
    if shutil.which("gtar") is None:
        os.symlink(shutil.which("tar"), os.path.join(_shim_dir, "gtar"))
    # The playground links its `python` to this; a venv's python reached through another
    # symlink forgets its venv (and Portage), a script that execs it does not.
    python = os.path.join(_shim_dir, "python")
    with open(python, "w") as out:
        out.write(f"#!/bin/sh\nexec '{sys.executable}' \"$@\"\n")
    os.chmod(python, 0o755)
    portage._python_interpreter = python
    gnupg = os.path.join(_shim_dir, "gnupg")
    os.mkdir(gnupg, 0o700)
    _set_env("PORTAGE_GNUPGHOME", gnupg)
    _set_env("PATH", os.pathsep.join([PORTAGE_BIN_PATH, _shim_dir, os.environ["PATH"]]))


def tearDownModule():
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(_shim_dir, ignore_errors=True)


class Playground(ResolverPlayground):
    """ResolverPlayground with the default sets configuration where load_default_config looks
    for it (EPREFIX + GLOBAL_CONFIG_PATH, `/share/...` in the PyPI layout, not `/usr/share`)."""

    def _load_config(self):
        sets = os.path.join(self.eprefix, GLOBAL_CONFIG_PATH.lstrip(os.sep), "sets")
        if not os.path.exists(sets):
            os.makedirs(os.path.dirname(sets), exist_ok=True)
            os.symlink(os.path.join(str(cnf_path), "sets"), sets)
        return super()._load_config()


def ebuild(**metadata):
    return {"EAPI": "8", **metadata}


EBUILDS = {
    # a chain: c BDEPENDs b, b DEPENDs a
    "app-misc/chain-a-1": ebuild(),
    "app-misc/chain-b-1": ebuild(DEPEND="app-misc/chain-a"),
    "app-misc/chain-c-1": ebuild(BDEPEND="app-misc/chain-b"),
    # a diamond
    "dev-libs/base-1": ebuild(),
    "dev-libs/left-1": ebuild(DEPEND="dev-libs/base"),
    "dev-libs/right-1": ebuild(BDEPEND="dev-libs/base"),
    "app-misc/top-1": ebuild(DEPEND="dev-libs/left", BDEPEND="dev-libs/right"),
    # every kind of dependency, only DEPEND is a build edge
    "app-misc/app-1": ebuild(
        DEPEND="dev-libs/d",
        RDEPEND="dev-libs/r",
        PDEPEND="dev-libs/p",
        IDEPEND="dev-libs/i",
    ),
    "dev-libs/d-1": ebuild(),
    "dev-libs/r-1": ebuild(),
    "dev-libs/p-1": ebuild(),
    "dev-libs/i-1": ebuild(),
    # USE conditionals and an any-of group, as Portage chooses them
    "app-misc/cond-1": ebuild(
        IUSE="+on off",
        DEPEND="on? ( dev-libs/with-on ) off? ( dev-libs/with-off ) "
        "|| ( dev-libs/alt-one dev-libs/alt-two )",
    ),
    "dev-libs/with-on-1": ebuild(),
    "dev-libs/with-off-1": ebuild(),
    "dev-libs/alt-one-1": ebuild(),
    "dev-libs/alt-two-1": ebuild(),
    # a DEPEND cycle, both sides installed (like gcc and glibc)
    "sys-libs/x-1": ebuild(DEPEND="sys-libs/y"),
    "sys-libs/y-1": ebuild(DEPEND="sys-libs/x"),
    # dependencies the host has installed
    "app-misc/user-1": ebuild(DEPEND="dev-libs/has-ebuild", BDEPEND="dev-util/tool"),
    "dev-libs/has-ebuild-1": ebuild(),
    "dev-util/tool-1": ebuild(),
    "app-misc/uses-installed-only-1": ebuild(DEPEND="dev-libs/installed-only"),
    # a dependency nothing provides
    "app-misc/broken-1": ebuild(DEPEND="dev-libs/missing"),
    # a build dependency's runtime closure: a virtual's provider
    "app-misc/v-1": ebuild(DEPEND="virtual/vv"),
    "virtual/vv-1": ebuild(RDEPEND="|| ( app-misc/impl-a app-misc/impl-b )"),
    "app-misc/impl-a-1": ebuild(),
    "app-misc/impl-b-1": ebuild(),
    # transitively (b -> c -> d), IDEPEND followed, PDEPEND and the package's own RDEPEND not
    "app-misc/rt-top-1": ebuild(BDEPEND="dev-libs/rt-b", RDEPEND="dev-libs/rt-own"),
    "dev-libs/rt-b-1": ebuild(RDEPEND="dev-libs/rt-c", IDEPEND="dev-libs/rt-i"),
    "dev-libs/rt-c-1": ebuild(RDEPEND="dev-libs/rt-d"),
    "dev-libs/rt-d-1": ebuild(),
    "dev-libs/rt-i-1": ebuild(),
    "dev-libs/rt-own-1": ebuild(RDEPEND="dev-libs/rt-own-dep"),
    "dev-libs/rt-own-dep-1": ebuild(),
    "app-misc/post-top-1": ebuild(DEPEND="dev-libs/with-post"),
    "dev-libs/with-post-1": ebuild(PDEPEND="dev-libs/post"),
    "dev-libs/post-1": ebuild(),
    # a runtime cycle (cyc-b <-> cyc-c) under two packages' build dependencies
    "app-misc/cyc-top-1": ebuild(DEPEND="dev-libs/cyc-b"),
    "app-misc/cyc-other-1": ebuild(DEPEND="dev-libs/cyc-c"),
    "dev-libs/cyc-b-1": ebuild(RDEPEND="dev-libs/cyc-c"),
    "dev-libs/cyc-c-1": ebuild(RDEPEND="dev-libs/cyc-b dev-libs/cyc-d"),
    "dev-libs/cyc-d-1": ebuild(),
    # needed at run time by a build dependency, but needs the package to build: later (it is
    # installed: Portage breaks a build dependency's runtime edge only if it is satisfied)
    "app-misc/late-top-1": ebuild(DEPEND="dev-libs/late-b"),
    "dev-libs/late-b-1": ebuild(RDEPEND="dev-libs/late-c"),
    "dev-libs/late-c-1": ebuild(DEPEND="app-misc/late-top"),
    # runtime closure and installed packages
    "app-misc/rt-user-1": ebuild(DEPEND="dev-libs/inst-rt dev-libs/new-rt"),
    "dev-libs/inst-rt-1": ebuild(RDEPEND="dev-libs/inst-rt-dep"),
    "dev-libs/inst-rt-dep-1": ebuild(),
    "dev-libs/new-rt-1": ebuild(RDEPEND="dev-libs/inst-z"),
    "dev-libs/inst-z-1": ebuild(),
    "dev-libs/late-c-1": ebuild(DEPEND="app-misc/late-top"),
}

INSTALLED = {
    "sys-libs/x-1": ebuild(DEPEND="sys-libs/y"),
    "sys-libs/y-1": ebuild(DEPEND="sys-libs/x"),
    "dev-libs/has-ebuild-1": ebuild(),
    "dev-libs/installed-only-1": ebuild(),
    "dev-libs/inst-rt-1": ebuild(RDEPEND="dev-libs/inst-rt-dep"),
    "dev-libs/inst-rt-dep-1": ebuild(),
    "dev-libs/inst-z-1": ebuild(),
    "dev-libs/late-c-1": ebuild(DEPEND="app-misc/late-top"),
}

WORLD = ["app-misc/chain-c", "app-misc/top"]


class PlanTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.playground = Playground(
            ebuilds=EBUILDS,
            installed=INSTALLED,
            world=WORLD,
            # xpak: the default gpkg format would start GnuPG for signing, which needs keys.
            user_config={"make.conf": ('BINPKG_FORMAT="xpak"',)},
        )

    @classmethod
    def tearDownClass(cls):
        cls.playground.cleanup()

    def plan(self, *atoms, emptytree=True):
        return swarm_plan.plan(
            self.playground.settings, self.playground.trees, list(atoms), emptytree=emptytree
        )

    def assert_acyclic_in_order(self, run):
        seen = set()
        for pkg in run.packages:
            for dep in run.deps[pkg]:
                self.assertIn(dep, seen, f"{pkg} needs {dep}, which is not earlier")
            seen.add(pkg)

    def test_a_chain_is_ordered_with_its_edges(self):
        run = self.plan("app-misc/chain-c")
        a, b, c = "=app-misc/chain-a-1", "=app-misc/chain-b-1", "=app-misc/chain-c-1"
        self.assertEqual(run.packages, [a, b, c])
        self.assertEqual(run.deps, {a: [], b: [a], c: [b]})
        self.assertEqual((run.dropped, run.outside, run.edge_count()), ([], {}, 2))

    def test_a_diamond_has_four_edges(self):
        run = self.plan("app-misc/top")
        base, left, right = "=dev-libs/base-1", "=dev-libs/left-1", "=dev-libs/right-1"
        top = "=app-misc/top-1"
        self.assertEqual(run.packages[0], base)
        self.assertEqual(run.packages[-1], top)
        self.assertEqual(set(run.packages), {base, left, right, top})
        self.assertEqual(run.deps[left], [base])
        self.assertEqual(run.deps[right], [base])
        self.assertEqual(set(run.deps[top]), {left, right})
        self.assertEqual((run.edge_count(), run.dropped), (4, []))
        self.assert_acyclic_in_order(run)

    def test_runtime_post_and_install_dependencies_are_not_build_edges(self):
        run = self.plan("app-misc/app")
        for dep in ("=dev-libs/d-1", "=dev-libs/r-1", "=dev-libs/p-1", "=dev-libs/i-1"):
            self.assertIn(dep, run.packages, "Portage merges every kind of dependency")
        self.assertEqual(run.deps["=app-misc/app-1"], ["=dev-libs/d-1"])
        self.assertEqual(run.edge_count(), 1)

    def test_use_conditionals_and_any_of_follow_portage(self):
        run = self.plan("app-misc/cond")
        deps = run.deps["=app-misc/cond-1"]
        self.assertEqual(set(deps), {"=dev-libs/with-on-1", "=dev-libs/alt-one-1"})
        self.assertNotIn("=dev-libs/with-off-1", run.packages)
        self.assertNotIn("=dev-libs/alt-two-1", run.packages)

    def test_a_depend_cycle_keeps_the_edge_to_the_earlier_package(self):
        run = self.plan("sys-libs/x")
        x, y = "=sys-libs/x-1", "=sys-libs/y-1"
        self.assertEqual(sorted(run.packages), [x, y], "--emptytree rebuilds both")
        first, second = run.packages
        self.assertEqual(run.deps, {first: [], second: [first]})
        self.assertEqual(run.dropped, [(first, second)])
        self.assertIn(f"{first}: dropped back edge to {second}", swarm_plan.show(run))
        self.assertIn("1 back edges", swarm_plan.render(run, ["sys-libs/x"]))

    def test_emptytree_rebuilds_installed_dependencies(self):
        run = self.plan("app-misc/user")
        self.assertIn("=dev-libs/has-ebuild-1", run.packages)
        self.assertEqual(
            set(run.deps["=app-misc/user-1"]), {"=dev-libs/has-ebuild-1", "=dev-util/tool-1"}
        )
        self.assertEqual(run.outside, {})

    def test_an_installed_dependency_is_outside_the_run(self):
        run = self.plan("app-misc/user", "app-misc/uses-installed-only", emptytree=False)
        user, tool = "=app-misc/user-1", "=dev-util/tool-1"
        self.assertNotIn("=dev-libs/has-ebuild-1", run.packages)
        self.assertEqual(run.deps[user], [tool])
        self.assertEqual(
            run.outside,
            {
                user: ["=dev-libs/has-ebuild-1"],
                "=app-misc/uses-installed-only-1": ["=dev-libs/installed-only-1"],
            },
        )
        shown = swarm_plan.show(run)
        self.assertIn(f"{user}: needs outside the run: =dev-libs/has-ebuild-1", shown)

    def test_an_unknown_atom_is_an_error_naming_it(self):
        with self.assertRaises(swarm_plan.PlanError) as caught:
            self.plan("app-misc/chain-a", "app-misc/no-such-package")
        self.assertEqual(caught.exception.atom, "app-misc/no-such-package")
        self.assertIn("no ebuild", caught.exception.reason)
        with self.assertRaises(swarm_plan.PlanError) as caught:
            self.plan("no-such-name")
        self.assertEqual(caught.exception.atom, "no-such-name", "as typed, not null/no-such-name")

    def test_a_missing_dependency_is_an_error_naming_it_and_its_parent(self):
        with self.assertRaises(swarm_plan.PlanError) as caught:
            self.plan("app-misc/broken")
        self.assertEqual(caught.exception.atom, "dev-libs/missing")
        self.assertIn("required by =app-misc/broken-1", caught.exception.reason)
        # Without --emptytree an installed package with no ebuild satisfies it; with it,
        # nothing can be rebuilt from an ebuild, and Portage says so.
        with self.assertRaises(swarm_plan.PlanError) as caught:
            self.plan("app-misc/uses-installed-only")
        self.assertEqual(caught.exception.atom, "dev-libs/installed-only")

    # What build dependencies need at run time is needed to build.

    def test_a_virtual_build_dependency_brings_its_provider(self):
        run = self.plan("app-misc/v")
        v, vv, impl = "=app-misc/v-1", "=virtual/vv-1", "=app-misc/impl-a-1"
        self.assertEqual(run.packages, [impl, vv, v])
        self.assertEqual(run.deps, {impl: [], vv: [], v: [impl, vv]})
        self.assertEqual((run.dropped, run.edge_count()), ([], 2))
        self.assertIn(f"{v}\t\t\t{impl},{vv}", swarm_plan.render(run, ["app-misc/v"]))

    def test_the_runtime_closure_is_transitive_with_idepend_not_own_rdepend(self):
        run = self.plan("app-misc/rt-top")
        top, b = "=app-misc/rt-top-1", "=dev-libs/rt-b-1"
        c, d, i = "=dev-libs/rt-c-1", "=dev-libs/rt-d-1", "=dev-libs/rt-i-1"
        own, own_dep = "=dev-libs/rt-own-1", "=dev-libs/rt-own-dep-1"
        self.assertIn(own, run.packages, "the package's own RDEPEND is merged")
        self.assertEqual(set(run.deps[top]), {b, c, d, i}, "not its own RDEPEND nor theirs")
        self.assertEqual([run.deps[pkg] for pkg in (b, c, d, own)], [[], [], [], []])
        self.assertNotIn(own_dep, run.deps[top])
        self.assertEqual((run.dropped, run.edge_count()), ([], 4))
        self.assert_acyclic_in_order(run)

    def test_a_build_dependencys_pdepend_is_not_followed(self):
        run = self.plan("app-misc/post-top")
        self.assertIn("=dev-libs/post-1", run.packages)
        self.assertEqual(run.deps["=app-misc/post-top-1"], ["=dev-libs/with-post-1"])
        self.assertEqual(run.dropped, [])

    def test_a_runtime_cycle_is_needed_whole(self):
        run = self.plan("app-misc/cyc-top", "app-misc/cyc-other")
        b, c, d = "=dev-libs/cyc-b-1", "=dev-libs/cyc-c-1", "=dev-libs/cyc-d-1"
        self.assertEqual(set(run.deps["=app-misc/cyc-top-1"]), {b, c, d})
        self.assertEqual(set(run.deps["=app-misc/cyc-other-1"]), {b, c, d})
        self.assertEqual([run.deps[pkg] for pkg in (b, c, d)], [[], [], []])
        self.assertEqual(run.dropped, [])
        self.assert_acyclic_in_order(run)

    def test_a_runtime_need_later_in_the_order_is_a_dropped_back_edge(self):
        run = self.plan("app-misc/late-top")
        top, b, c = "=app-misc/late-top-1", "=dev-libs/late-b-1", "=dev-libs/late-c-1"
        self.assertEqual(run.packages, [b, top, c], "Portage merges b before its RDEPEND")
        self.assertEqual(run.deps, {b: [], top: [b], c: [top]})
        self.assertEqual(run.dropped, [(top, c)], "b's own RDEPEND on c is no edge of b's")
        self.assertIn(f"{top}: dropped back edge to {c}", swarm_plan.show(run))

    def test_an_installed_build_dependency_is_taken_with_its_runtime_dependencies(self):
        run = self.plan("app-misc/rt-user", emptytree=False)
        user, new = "=app-misc/rt-user-1", "=dev-libs/new-rt-1"
        self.assertEqual(run.packages, [new, user])
        self.assertEqual(run.deps, {new: [], user: [new]})
        self.assertEqual(run.outside, {user: ["=dev-libs/inst-rt-1", "=dev-libs/inst-z-1"]})

    # The script itself, as a user runs it: configuration from the environment. With
    # SWARM_PLAN_COMMAND (a JSON list, e.g. ["swarmctl", "plan", "--python", "python3"]) the
    # same tests run that command instead: `swarmctl plan`, which carries this script.

    def run_script(self, *args):
        eprefix = self.playground.eprefix
        env = dict(os.environ)
        for name in ("ROOT", "SYSROOT"):
            env.pop(name, None)
        env.update(
            PORTAGE_CONFIGROOT=eprefix,
            EPREFIX=eprefix,
            PORTAGE_OVERRIDE_EPREFIX=eprefix,
            PORTAGE_REPOSITORIES=self.playground.settings.repositories.config_string(),
        )
        command = json.loads(os.environ.get("SWARM_PLAN_COMMAND", "null")) or [
            sys.executable,
            SCRIPT,
        ]
        return subprocess.run(
            [*command, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def test_the_script_writes_a_run_file_for_world(self):
        result = self.run_script()
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        comments = [line for line in lines if line.startswith("#")]
        rows = [line for line in lines if not line.startswith("#")]
        self.assertTrue(comments and lines[: len(comments)] == comments, "comments come first")
        self.assertIn("@world", "\n".join(comments))
        self.assertIn("7 packages, 6 build edges; 0 back", "\n".join(comments))
        earlier = set()
        for row in rows:
            columns = row.split("\t")
            self.assertEqual(len(columns), 4, row)
            atom, seconds, kind, deps = columns
            self.assertRegex(atom, r"^=[a-z0-9-]+/[\w+.-]+$")
            self.assertEqual((seconds, kind), ("", ""))
            if deps != "-":
                for dep in deps.split(","):
                    self.assertIn(dep, earlier, f"{atom} needs {dep}, not an earlier line")
            self.assertNotIn(atom, earlier, "each package once")
            earlier.add(atom)
        self.assertEqual(len(rows), 7)
        self.assertIn("=app-misc/chain-c-1\t\t\t=app-misc/chain-b-1", rows)

    def test_the_script_shows_what_is_outside_the_run(self):
        result = self.run_script("--show", "--keep-installed", "app-misc/user")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(
            "=app-misc/user-1: needs outside the run: =dev-libs/has-ebuild-1", result.stderr
        )
        self.assertEqual(
            [line for line in result.stdout.splitlines() if not line.startswith("#")],
            ["=dev-util/tool-1\t\t\t-", "=app-misc/user-1\t\t\t=dev-util/tool-1"],
        )

    def test_the_script_fails_naming_the_atom(self):
        result = self.run_script("app-misc/no-such-package")
        self.assertEqual(result.returncode, 2, result.stdout)
        self.assertEqual(result.stdout, "")
        first = result.stderr.splitlines()[0]
        self.assertTrue(
            re.match(r"swarm_plan: cannot resolve app-misc/no-such-package: no ebuild", first),
            result.stderr,
        )


if __name__ == "__main__":
    unittest.main()
