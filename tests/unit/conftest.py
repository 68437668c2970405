"""Shared helpers for the unit tests (pure code only: no sockets, no HAProxy, no real time).

Hypothesis runs derandomized by default so a failure is reproducible and the suite stays fast;
``HAPROXYCTL_HYPOTHESIS_PROFILE=thorough`` explores many more (random) examples.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "haproxyctl-unit",
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "haproxyctl-thorough",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(
    "haproxyctl-" + os.environ.get("HAPROXYCTL_HYPOTHESIS_PROFILE", "unit")
)
