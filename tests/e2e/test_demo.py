"""The demo, as the README runs it (``haproxyctl demo``): a live rollout of three backends under
browser-like users, and what they saw."""

from __future__ import annotations

import subprocess
import sys

import pytest

from haproxyctl.lab import LabError, find_haproxy

pytestmark = pytest.mark.e2e


def test_demo_rolls_three_backends_with_no_failure_and_no_flip() -> None:
    try:
        find_haproxy()
    except LabError as exc:
        pytest.skip(f"the demo needs HAProxy: {exc}")
    done = subprocess.run([sys.executable, "-m", "haproxyctl", "demo", "--users", "12"],
                          capture_output=True, text=True, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    out = done.stdout
    assert "What the users saw:" in out, out[-3000:]
    assert "0 failed, 0 users flipped back. OK" in out, out[-3000:]
    # Each backend's row: rolled to completion.
    for backend in ("shop", "api", "assets"):
        row = next(line for line in out.splitlines() if line.strip().startswith(backend + " "))
        assert "(completed)" in row, row
    # How evenly 12 users a backend end up is not asserted here: at 3 users a server one user
    # is a third of a server's share (the 150-user e2e tests and bench judge the load).

