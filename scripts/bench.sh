#!/usr/bin/env bash
# Runs the benchmark harness (bench/, binary swarm-bench) the way docs/performance.md was made:
#   1. scripts/install-deps.sh: a nats-server >= 2.11 (the harness starts its own, on loopback);
#   2. a release build of every binary (the harness runs the release swarm-coordinator,
#      swarm-drone and swarm-dashboard found beside it);
#   3. target/release/swarm-bench with this script's arguments, e.g.
#        scripts/bench.sh                       every part, both fsync settings (about 10 minutes)
#        scripts/bench.sh --only scheduling     one part
#        scripts/bench.sh --quick               every part at toy sizes (checks the harness only)
#      It prints the report (Markdown, then JSON) and writes artifacts/bench/report.{md,json}.
# Run it on a quiet machine: the figures are CPU-bound on small machines.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

deps_output=$(bash scripts/install-deps.sh)
NATS_SERVER_BIN=$(sed -n 's/^NATS_SERVER_BIN=//p' <<<"$deps_output" | tail -n 1)
if [[ -z "$NATS_SERVER_BIN" ]]; then
    echo "bench.sh: scripts/install-deps.sh did not report NATS_SERVER_BIN" >&2
    exit 1
fi
export NATS_SERVER_BIN

cargo build --release --bins >&2
exec target/release/swarm-bench "$@"
