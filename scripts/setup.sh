#!/usr/bin/env bash
# Set-up shared by scripts/demo.sh and scripts/test.sh: installs what a fresh machine lacks.
#  - HAProxy (Debian's package) when no haproxy binary is found;
#  - a virtualenv in .venv with haproxyctl and its test dependencies.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}

if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    echo "setup: installing haproxy (apt-get)..." >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "setup: haproxy is missing; install it (apt-get install haproxy) or run as root" >&2; exit 1; }
        SUDO="sudo"
    fi
    # A policy-rc.d answering 101 keeps the package from starting a system-wide HAProxy we do
    # not need; it is removed afterwards only if we created it.
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        $SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
        made_policy=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
    [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi
export PATH="$PATH:/usr/sbin"
echo "setup: $(haproxy -v | head -1)" >&2

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv..." >&2
    "$PYTHON" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.haproxyctl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing haproxyctl and test dependencies into .venv..." >&2
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch "$stamp"
fi
