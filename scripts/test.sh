#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, strict typing, then the tests against
# real HAProxy processes: every test (unit + integration + end-to-end) on the system's HAProxy
# (Debian 12's 2.6), then the integration and end-to-end tests on Debian's HAProxy 3.0 and 3.2
# (fetched once into ~/.cache/haproxyctl by scripts/haproxy-binaries.sh), one version after
# the other. Extra arguments go to every pytest run (e.g. -k rollout); a run that selects no
# test (exit code 5, e.g. -k matching no `load` test) counts as passed.
#
#   HAPROXYCTL_TEST_VERSIONS="3.2"  only 3.2 besides the system's HAProxy ("" for none)
#   HAPROXYCTL_TEST_JOBS=1          one test process (default 2: the tests mostly wait)
#   HAPROXYCTL_TEST_LOAD_VERSIONS   where the `load` tests run besides the system's (default 3.2)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PATH:/usr/sbin"

read -r -a versions <<< "${HAPROXYCTL_TEST_VERSIONS-3.0 3.2}"
binaries=()
if [ ${#versions[@]} -gt 0 ]; then
    # Before any test, so that a failed download stops the run at once.
    mapfile -t binaries < <(bash scripts/haproxy-binaries.sh "${versions[@]}")
    [ ${#binaries[@]} -eq ${#versions[@]} ] || { echo "test: no HAProxy binary for ${versions[*]}" >&2; exit 1; }
fi
jobs=${HAPROXYCTL_TEST_JOBS:-2}
parallel=()
# --dist loadfile keeps a module's tests (and its lab) in one process.
[ "$jobs" -le 1 ] || parallel=(-n "$jobs" --dist loadfile)

# Each version: first every test but the `load` ones, two processes at once (they mostly
# wait); then the `load` tests (they judge how evenly requests spread, second by second),
# alone, so that no other test's CPU use skews what they measure.
pytest_ok() {
    local rc=0
    .venv/bin/python -m pytest -p no:cacheprovider "$@" || rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ] || exit "$rc"
}
run_pytest() {
    pytest_ok "${parallel[@]}" -m "not load" "$@"
    pytest_ok -m load "$@"
}

echo "== ruff ==" >&2
.venv/bin/ruff check .
echo "== mypy --strict ==" >&2
.venv/bin/mypy --strict
echo "== pytest: $(haproxy -v | head -1) ==" >&2
run_pytest "$@"
# The `load` tests judge haproxyctl's steering more than HAProxy: they run on the system's
# HAProxy and on the newest (3.2) only, which keeps the run under 25 minutes on 2 cores
# (docs/compatibility.md). HAPROXYCTL_TEST_LOAD_VERSIONS="3.0 3.2" runs them on both.
read -r -a load_versions <<< "${HAPROXYCTL_TEST_LOAD_VERSIONS-3.2}"
for i in "${!versions[@]}"; do
    echo "== pytest (integration, e2e): $("${binaries[$i]}" -v | head -1) ==" >&2
    export HAPROXYCTL_HAPROXY=${binaries[$i]}
    if [[ " ${load_versions[*]} " == *" ${versions[$i]} "* ]]; then
        run_pytest tests/integration tests/e2e "$@"
    else
        pytest_ok "${parallel[@]}" -m "not load" tests/integration tests/e2e "$@"
    fi
    unset HAPROXYCTL_HAPROXY
done
