#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, strict typing, unit + integration +
# end-to-end tests against a real HAProxy. Extra arguments go to pytest (e.g. -k rollout).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PATH:/usr/sbin"

echo "== ruff ==" >&2
.venv/bin/ruff check .
echo "== mypy --strict ==" >&2
.venv/bin/mypy --strict
echo "== pytest ==" >&2
.venv/bin/python -m pytest -p no:cacheprovider "$@"
