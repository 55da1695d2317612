#!/usr/bin/env bash
# A mixed swarm, as a rolling upgrade runs one: the previous release's drone beside this
# release's coordinator and drone, and (unless --one-way) the reverse, this release's drone
# under the previous release's coordinator. Each run builds a queue of no-op packages over a
# real nats-server and checks that every package ends `succeeded`, built exactly once, that
# each drone built some, and that no component logged a message it could not read.
#
#   scripts/mixed-swarm.sh [--previous REV] [--current REV] [--packages N] [--one-way]
#
#   --previous REV  the previous release (default 5f319de, the last commit before issue 15)
#   --current REV   this release as a commit (default: the working tree, built with cargo)
#   --packages N    packages per run (default 40)
#   --one-way       skip the reverse run (old coordinator, new drone)
#
# A revision is exported with `git archive` into target/mixed-swarm/src-<commit>/ and built
# there with its own target directory (target/mixed-swarm/target), so the workspace's own
# build cache is left alone. The first build of a revision compiles every dependency once
# (minutes on two cores; about 2 GB of disk); later runs reuse it. Needs nats-server
# (scripts/env.sh) and python3. `rm -rf target/mixed-swarm` frees it all.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

previous=5f319de
current=
packages=40
reverse=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --previous) previous=$2; shift 2 ;;
        --current) current=$2; shift 2 ;;
        --packages) packages=$2; shift 2 ;;
        --one-way) reverse=0; shift ;;
        -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "mixed-swarm: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "mixed-swarm: $*" >&2; }

if [[ -z "${NATS_SERVER_BIN:-}" ]]; then
    # shellcheck source=scripts/env.sh
    source scripts/env.sh
fi
[[ -x "${NATS_SERVER_BIN:-}" ]] || { say "no nats-server (run scripts/install-deps.sh)"; exit 2; }

target_dir=${CARGO_TARGET_DIR:-target}
[[ "$target_dir" = /* ]] || target_dir="$repo_root/$target_dir"
work="$target_dir/mixed-swarm"
mkdir -p "$work"

# Builds the coordinator and drone of commit $1; prints the directory holding the binaries.
build_revision() {
    local commit src started
    commit=$(git rev-parse --verify --quiet "$1^{commit}") || { say "no commit $1"; exit 2; }
    src="$work/src-$commit"
    if [[ ! -f "$src/Cargo.toml" ]]; then
        rm -rf "$src" && mkdir -p "$src"
        git archive "$commit" | tar -x -C "$src"
    fi
    started=$(date +%s)
    say "building swarm-coordinator and swarm-drone of ${commit:0:12} (target $work/target)"
    # No incremental artefacts: they would take gigabytes for builds that are never edited.
    CARGO_INCREMENTAL=0 cargo build --quiet --manifest-path "$src/Cargo.toml" \
        --target-dir "$work/target" -p swarm-coordinator -p swarm-drone -p swarmctl --bins
    say "built ${commit:0:12} in $(( $(date +%s) - started )) s"
    local bin="$work/bin-$commit"
    mkdir -p "$bin"
    # Hard links (the next revision's build replaces target/debug's, not these).
    local name
    for name in swarm-coordinator swarm-drone swarmctl; do
        ln -f "$work/target/debug/$name" "$bin/$name" 2>/dev/null ||
            cp "$work/target/debug/$name" "$bin/$name"
    done
    echo "$bin"
}

old_commit=$(git rev-parse --short=12 "$previous")
old_bin=$(build_revision "$previous")
if [[ -n "$current" ]]; then
    new_commit=$(git rev-parse --short=12 "$current")
    new_bin=$(build_revision "$current")
else
    new_commit="$(git rev-parse --short=12 HEAD)"
    git diff --quiet HEAD -- . ':!target' || new_commit="$new_commit+working-tree"
    say "building this release (the working tree)"
    cargo build --quiet -p swarm-coordinator -p swarm-drone -p swarmctl --bins
    new_bin="$target_dir/debug"
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pids=()
stop_all() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap stop_all EXIT

failures=0
report=()

# run LABEL COORDINATOR_BIN DRONE_NAME=BIN_DIR...
run() {
    local label=$1 coordinator_bin=$2
    shift 2
    local dir port url started
    dir=$(mktemp -d "$work/run-XXXXXX")
    port=$(free_port)
    url="nats://127.0.0.1:$port"
    "$NATS_SERVER_BIN" -a 127.0.0.1 -p "$port" -js -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
    pids+=($!)
    local common=(env -i "PATH=$PATH" "SWARM_NATS__URL=$url" "RUST_LOG=info")
    "${common[@]}" SWARM_COORDINATOR__LEASE_TTL_MS=1500 SWARM_COORDINATOR__ACK_WAIT_MS=2000 \
        SWARM_COORDINATOR__RETRY_BACKOFF_MS=200 SWARM_COORDINATOR__RECONCILE_INTERVAL_MS=500 \
        "$coordinator_bin/swarm-coordinator" 2>"$dir/coordinator.log" &
    pids+=($!)
    local drone name bin
    for drone in "$@"; do
        name=${drone%%=*}
        bin=${drone#*=}
        "${common[@]}" SWARM_DRONE__NAME="$name" SWARM_DRONE__CORES=4 SWARM_DRONE__SLOTS=2 \
            SWARM_DRONE__BUILDER=command \
            SWARM_DRONE__COMMAND="[\"$repo_root/tests/fixtures/record-build.sh\", \"{atom}\"]" \
            SWARM_DRONE__HEARTBEAT_MS=300 SWARM_DRONE__PULL_EXPIRES_MS=2000 \
            SWARM_DRONE__AVOID_DELAY_MS=300 RECORD_FILE="$dir/records.tsv" SWARM_TEST_SLEEP=0.3 \
            "$bin/swarm-drone" 2>"$dir/$name.log" &
        pids+=($!)
    done
    local ctl=(env -i "PATH=$PATH" "SWARM_NATS__URL=$url" "RUST_LOG=warn" "$new_bin/swarmctl")
    # Every drone online before the queue is submitted, so that each gets a share.
    local deadline=$(( $(date +%s) + 60 ))
    until [[ $("${ctl[@]}" drones 2>/dev/null | grep -cw idle || true) -ge $# ]]; do
        if [[ $(date +%s) -gt $deadline ]]; then say "$label: drones not online; logs in $dir"; exit 1; fi
        sleep 0.2
    done
    local atoms=()
    for i in $(seq 1 "$packages"); do atoms+=("=dev-test/mixed-1.$i"); done
    started=$(date +%s.%N)
    "${ctl[@]}" submit "${atoms[@]}" >/dev/null
    local waited=0
    "${ctl[@]}" wait --timeout 180 >"$dir/swarmctl-wait.log" 2>&1 || waited=$?
    local took
    took=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
    "${ctl[@]}" packages --json >"$dir/packages.json"
    local verdict
    verdict=$(python3 - "$dir" "$packages" "$@" <<'EOF'
import json, sys, collections, pathlib
dir, expected, drones = pathlib.Path(sys.argv[1]), int(sys.argv[2]), [d.split("=")[0] for d in sys.argv[3:]]
packages = json.loads((dir / "packages.json").read_text())
states = collections.Counter(p["state"] for p in packages)
starts = collections.Counter()
by_drone = collections.Counter()
for line in (dir / "records.tsv").read_text().splitlines():
    fields = line.split("\t")
    if fields[0] == "start":
        starts[fields[1]] += 1
        by_drone[fields[2]] += 1
problems = []
if states.get("succeeded", 0) != expected or len(packages) != expected:
    problems.append(f"states {dict(states)}, expected {expected} succeeded")
twice = [a for a, n in starts.items() if n > 1]
if twice:
    problems.append(f"built more than once: {twice}")
for name in drones:
    if by_drone[name] == 0:
        problems.append(f"{name} built nothing")
for log in dir.glob("*.log"):
    for line in log.read_text(errors="replace").splitlines():
        if any(w in line for w in ("unreadable", "undecodable", "malformed")):
            problems.append(f"{log.name}: {line.strip()[:200]}")
            break
shares = ", ".join(f"{n} built {by_drone[n]}" for n in drones)
print(("OK " if not problems else "FAILED ") + f"{states.get('succeeded', 0)}/{expected} succeeded; {shares}"
      + ("" if not problems else "; " + "; ".join(problems)))
EOF
)
    stop_all
    [[ $waited -eq 0 ]] || verdict="FAILED (swarmctl wait exited $waited) $verdict"
    report+=("$label: $verdict in $took s (logs: $dir)")
    [[ $verdict == OK* ]] || failures=$((failures + 1))
    [[ $verdict == OK* ]] && rm -rf "$dir"
    return 0
}

run "coordinator $new_commit, drones $old_commit (old-1) + $new_commit (new-1)" \
    "$new_bin" "old-1=$old_bin" "new-1=$new_bin"
if [[ $reverse -eq 1 ]]; then
    run "coordinator $old_commit, drones $new_commit (new-1) + $old_commit (old-1)" \
        "$old_bin" "new-1=$new_bin" "old-1=$old_bin"
fi

echo "mixed swarm: previous release $old_commit, this release $new_commit, $packages packages per run"
for line in "${report[@]}"; do echo "  $line"; done
exit $(( failures > 0 ))
