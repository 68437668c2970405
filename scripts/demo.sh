#!/usr/bin/env bash
# The demo on a fresh machine: set-up, then a local HAProxy with app servers and simulated
# users, a live rolling update from v1 to v2, and what the users saw. Arguments go to
# 'haproxyctl demo' (e.g. --users 40).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PATH:/usr/sbin"
exec .venv/bin/haproxyctl demo "$@"
