# Sourced, not run: exports NATS_SERVER_BIN for test suites and manual runs.
#
#   source scripts/env.sh
#
# The path comes from .tools/nats-server-path; when that file is missing or names a binary that is
# gone, scripts/install-deps.sh is run to (re)create it. No `set -e` here: it would leak into the
# caller's shell.

_swarm_env_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
_swarm_env_file="$_swarm_env_root/.tools/nats-server-path"

if [[ ! -s "$_swarm_env_file" ]] || [[ ! -x "$(head -n 1 "$_swarm_env_file")" ]]; then
    "$_swarm_env_root/scripts/install-deps.sh" >/dev/null || {
        echo "env.sh: scripts/install-deps.sh failed" >&2
        unset _swarm_env_root _swarm_env_file
        return 1 2>/dev/null || exit 1
    }
fi

NATS_SERVER_BIN=$(head -n 1 "$_swarm_env_file")
export NATS_SERVER_BIN
unset _swarm_env_root _swarm_env_file
