#!/usr/bin/env bash
# Sets up everything the two README commands need, on a fresh Debian with Python 3.11+.
# Python packages come from uv.lock; Debian packages only when asked and when root.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
UV_VERSION="0.13.9"
WANT_SYSTEM_PACKAGES="${1:-}"

as_root() { [ "$(id -u)" = "0" ]; }
# One line on stderr per step actually taken, so a first run is not ~25 s of silence;
# a run with nothing to do stays quiet.
say() { echo "bootstrap: $*" >&2; }

apt_install() {
    if as_root; then
        if [ ! -e /var/lib/apt/lists/lock ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock || true)" ]; then
            say "apt-get update"
            apt-get update -qq
        fi
        say "apt-get install $*"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
            || { say "apt-get update, then install again"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
    else
        echo "bootstrap: not root, cannot install Debian packages: $* (install them with sudo apt-get install $*)" >&2
    fi
}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: $PYTHON is older than 3.11; set PYTHON=python3.11 (or newer)" >&2
    exit 1
fi
# Debian splits venv (and so ensurepip) out of python3.
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
fi
if [ ! -x .tools/bin/uv ] || ! .tools/bin/uv --version | grep -q "$UV_VERSION"; then
    say "installing uv $UV_VERSION into .tools"
    "$PYTHON" -m venv .tools
    .tools/bin/python -m pip install -q "uv==$UV_VERSION"
fi
export UV_PYTHON_DOWNLOADS=never
if ! .tools/bin/uv sync --locked --check --quiet --python "$PYTHON" 2>/dev/null; then
    say "syncing Python packages from uv.lock into ${UV_PROJECT_ENVIRONMENT:-.venv}"
    .tools/bin/uv sync --locked --quiet --python "$PYTHON"
fi

if [ "$WANT_SYSTEM_PACKAGES" = "--system" ]; then
    missing=()
    command -v openssl >/dev/null || missing+=(openssl)
    command -v promtool >/dev/null || missing+=(prometheus)
    command -v prometheus-blackbox-exporter >/dev/null || missing+=(prometheus-blackbox-exporter)
    # tests/kernel/: network namespaces, nftables, tc and conntrack (as root only).
    { command -v ip >/dev/null && command -v tc >/dev/null; } || missing+=(iproute2)
    command -v nft >/dev/null || missing+=(nftables)
    command -v conntrack >/dev/null || missing+=(conntrack)
    # Real DoH servers for tests/test_doh_interop.py, which runs its own instances on
    # loopback; the packages' system services are not used (README: Development).
    command -v dnsdist >/dev/null || missing+=(dnsdist)
    [ -x /usr/sbin/unbound ] || command -v unbound >/dev/null || missing+=(unbound)
    [ -x /usr/sbin/kresd ] || command -v kresd >/dev/null || missing+=(knot-resolver)
    # tests/test_image.py builds and runs the Dockerfile (as root) with no Docker engine
    # and no registry: podman on runc, a base made by mmdebstrap; uidmap for podman.
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v newuidmap >/dev/null || missing+=(uidmap)
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
fi
