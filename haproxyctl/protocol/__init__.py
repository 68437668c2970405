"""The sans-I/O protocol layer: encode commands, frame replies, classify them. No sockets, no
clocks: everything here is a pure function of its input, so it is tested exhaustively."""

from haproxyctl.protocol.encode import Command, Expect, ServerRef, check_name, escape_arg
from haproxyctl.protocol.framing import MasterPromptFramer, OneShotFramer, PromptFramer, body_text
from haproxyctl.protocol.replies import Reply, check_reply, parse_reply

__all__ = [
    "Command",
    "Expect",
    "MasterPromptFramer",
    "OneShotFramer",
    "PromptFramer",
    "Reply",
    "ServerRef",
    "body_text",
    "check_name",
    "check_reply",
    "escape_arg",
    "parse_reply",
]
