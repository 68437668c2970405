"""Errors raised by the lab.

The lab is test infrastructure: when it fails, the message has to say what went wrong *and*
carry the evidence (HAProxy's or an app's log tail), because the person reading it is looking
at a CI log and cannot re-run the failing process by hand.

The lab deliberately does not reuse ``haproxyctl.errors``: it must keep working (and keep
reporting clearly) while the library it tests is broken.
"""

from __future__ import annotations

__all__ = ["LabError", "LabTimeout"]


class LabError(RuntimeError):
    """The lab could not start, drive or stop one of its processes."""


class LabTimeout(LabError):
    """A bounded wait of the lab ran out before its condition held."""
