"""A connection to one HAProxy CLI socket: persistent prompt-mode session, reconnect, threads.

Why prompt mode: a one-shot exchange opens a socket per command and cannot split ``;``-chained
output reliably on 2.6 (an empty success and an error without trailing LF look alike; reference
§1.2, §1.7). In prompt mode (management.txt §9.3, "prompt") every command line gets its own
reply followed by ``"\\n> "``, so several lines can be pipelined in one write and each reply is
framed exactly; and the connection is reused, which halves the latency of small commands.

Why it reconnects by itself: HAProxy closes idle CLI sessions after ``stats timeout`` (10 s by
default) and on reload. Before reusing the socket we check whether HAProxy already closed it, and
if the connection dies before any reply byte arrives, an idempotent command is sent again once on
a fresh connection. A non-idempotent one is not: :class:`~haproxyctl.errors.ConnectionLost`
tells the caller it may have run.

Worker sockets get ``set severity-output number`` once per session, so errors carry ``[3]:``
(see :mod:`haproxyctl.protocol.replies`). The master CLI (§9.4) cannot keep that setting across
``@1`` commands, so there the reply checks rely on known messages and each command's contract.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import NoReturn, Protocol

from haproxyctl.address import Address, parse_address
from haproxyctl.errors import (
    CommandError,
    ConnectionLost,
    HAProxyTimeout,
    IOTimeout,
    ProtocolError,
    TransportError,
    UsageError,
)
from haproxyctl.protocol.encode import Command
from haproxyctl.protocol.framing import MasterPromptFramer, OneShotFramer, PromptFramer, body_text
from haproxyctl.protocol.replies import Reply, check_reply, parse_reply
from haproxyctl.transport import Channel, transport_for

__all__ = ["DEFAULT_TIMEOUT", "Connection"]

log = logging.getLogger("haproxyctl")

#: Seconds allowed for one exchange (connect + send + complete reply) unless told otherwise.
DEFAULT_TIMEOUT = 10.0
# Pipelined batches are written in groups of whole lines of at most this many bytes, and each
# group's replies are read before the next is written: with every reply unread, HAProxy would
# stop reading our input once its output buffer filled, and both sides would block.
_MAX_BATCH_BYTES = 64 * 1024
_PROMPT = Command.build("prompt")
_EMPTY = Reply(raw="", text="", severity=None)
_INFO = Command.build("show info")
_DISABLED = b"Proxy is disabled."
_PID_RE = re.compile(rb"^Pid: ([0-9]+)$", re.MULTILINE)
_STOPPING_RE = re.compile(rb"^Stopping: 1$", re.MULTILINE)


class _Framer(Protocol):
    def feed(self, data: bytes) -> None: ...

    def next_reply(self) -> bytes | None: ...

    def replies(self, limit: int) -> list[bytes]: ...

    @property
    def pending(self) -> bytes: ...


class Connection:
    """A thread-safe connection to one CLI socket.

    Args:
        address: a socket address string or :class:`~haproxyctl.address.Address`.
        timeout: seconds for each exchange (connect + send + reply), overridable per call.
        connect_timeout: seconds for connecting; defaults to ``min(timeout, 5)``.
    """

    def __init__(
        self,
        address: str | Address,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float | None = None,
    ) -> None:
        self.address = address if isinstance(address, Address) else parse_address(address)
        self.timeout = timeout
        self._transport = transport_for(
            self.address,
            connect_timeout=connect_timeout if connect_timeout is not None else min(timeout, 5.0),
        )
        self._label = str(self.address)
        self._lock = threading.RLock()
        self._channel: Channel | None = None
        self._framer: _Framer | None = None
        #: Connections opened so far (reconnects included); handy for tests and diagnostics.
        self.connects = 0
        #: PID of the worker answering, from ``show info`` (checked at most every
        #: ``identity_interval`` seconds), and how many times it changed (reloads).
        self.worker_pid: int | None = None
        self.process_changes = 0
        # Short enough that a command after a pause never reaches a worker that a reload
        # stopped more than this long ago; back-to-back commands are checked at most this often.
        self.identity_interval = 0.1
        self._identity_at = float("-inf")
        # True while a streamed reply is being read (see stream()): the lock is re-entrant, so
        # without this a command sent from the consumer's own loop would be written in the
        # middle of that reply and both would be misread.
        self._streaming = False

    # -- public -----------------------------------------------------------------------------

    def execute(self, command: Command, *, timeout: float | None = None) -> Reply:
        """Run one command on the persistent session; raise a CommandError if HAProxy refused it."""
        (result,) = self.execute_many([command], timeout=timeout)
        if isinstance(result, CommandError):
            raise result
        return result

    def execute_many(
        self, commands: Sequence[Command], *, timeout: float | None = None
    ) -> list[Reply | CommandError]:
        """Pipeline ``commands`` (one line each, written together) and return one result per
        command, in order: the checked :class:`Reply`, or the :class:`CommandError` HAProxy's
        reply amounts to (returned, not raised, so the caller can report each one).

        Transport and protocol failures are raised.
        """
        if not commands:
            return []
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        results: list[Reply | CommandError] = []
        address = self._label
        for group in _groups(commands):
            bodies = self._roundtrip(group, deadline, budget)
            if any(_DISABLED in body for body in bodies) and self._left_stopping_process(deadline):
                # A worker stopped by a reload refuses changes with "Proxy is disabled.": the
                # session was on it (within identity_interval of the reload). Now on the
                # current worker, send the group again.
                bodies = self._roundtrip(group, deadline, budget)
            for command, body in zip(group, bodies, strict=True):
                if not body:
                    # The common success of a write (empty output): nothing to parse or check.
                    results.append(_EMPTY)
                    continue
                reply = parse_reply(body_text(body))
                try:
                    results.append(check_reply(command, reply, address=address))
                except CommandError as exc:
                    results.append(exc)
        return results

    def stream(self, command: Command, *, timeout: float | None = None) -> Iterator[bytes]:
        """Yield the reply to ``command`` in pieces as HAProxy writes it.

        For big data replies (``show stat`` of 10,000 servers is 2 MB): the caller parses
        while HAProxy still writes, on the other core, instead of after. A reply that is not
        data (it does not start with a ``#`` header line) is collected and checked like any
        reply, so errors raise the same CommandError as :meth:`execute`. On the master CLI the
        whole reply comes as one piece.
        """
        if self.address.master:
            yield self.execute(command, timeout=timeout).text.encode("utf-8")
            return
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        try:
            yield from self._stream(command, deadline)
        except HAProxyTimeout as exc:
            raise IOTimeout(f"{self._label}: no complete reply to {command.line!r} within "
                            f"{budget:g}s", timeout=budget, address=self._label,
                            command=command.line) from exc

    def _stream_start(self, command: Command, deadline: float
                      ) -> tuple[Channel, PromptFramer, bytes, bool]:
        """Send ``command`` and read until its first line is known; retried once, like any
        idempotent command, when an idle session turns out dead before any reply byte."""
        for attempt in (1, 2):
            channel, framer, fresh = self._session(deadline)
            if not isinstance(framer, PromptFramer):  # pragma: no cover - worker sessions are
                raise RuntimeError("internal error: streaming needs a worker prompt session")
            log.debug("%s <- %s (streamed)", self._label, command.line)
            head, complete = b"", False
            try:
                channel.send(command.encode(), deadline=deadline, command=command.line)
                # Until the first line is known, the reply may still be an error message.
                while b"\n" not in head:
                    data, complete = framer.next_chunk()
                    head += data
                    if complete:
                        break
                    chunk = channel.recv(deadline=deadline, command=command.line)
                    if not chunk:
                        self._lost(command, head)
                    framer.feed(chunk)
            except ConnectionLost as exc:
                self._drop()
                if _retry_after_lost(attempt, fresh, bool(head), exc, [command]):
                    log.debug("%s: idle connection was closed; sending again", self.address)
                    continue
                raise
            except BaseException:
                self._drop()
                raise
            return channel, framer, head, complete
        raise AssertionError("unreachable")  # pragma: no cover

    def _stream(self, command: Command, deadline: float) -> Iterator[bytes]:
        with self._lock:
            channel, framer, head, complete = self._stream_start(command, deadline)
            self._streaming = True
            try:
                if not head.startswith(b"#"):
                    while not complete:
                        chunk = channel.recv(deadline=deadline, command=command.line)
                        if not chunk:
                            self._lost(command, head)
                        framer.feed(chunk)
                        data, complete = framer.next_chunk()
                        head += data
                    reply = check_reply(command, parse_reply(body_text(head)),
                                        address=self._label)
                    yield reply.text.encode("utf-8")
                    return
                yield head
                while not complete:
                    data, complete = framer.next_chunk()
                    if data:
                        yield data
                    if complete:
                        break
                    chunk = channel.recv(deadline=deadline, command=command.line)
                    if not chunk:
                        self._lost(command, b"")
                    framer.feed(chunk)
                if framer.pending:
                    extra = framer.pending
                    self._drop()
                    raise ProtocolError(
                        f"{self.address}: HAProxy sent more than one reply to {command.line!r}",
                        raw=extra[:200].decode("utf-8", "replace"), address=self._label,
                        command=command.line)
            finally:
                self._streaming = False
                if not complete:
                    # Abandoned or failed half-way: the rest of the reply is still coming.
                    self._drop()

    def _lost(self, command: Command, partial: bytes) -> NoReturn:
        self._drop()
        raise ConnectionLost(
            f"{self.address}: HAProxy closed the connection before the reply to "
            f"{command.line!r} was complete", address=self._label, command=command.line,
            sent=True, partial=partial)

    def execute_once(self, command: Command, *, timeout: float | None = None) -> Reply:
        """Run one command on a fresh one-shot connection and read until HAProxy closes it.

        Used for raw commands: the output can be anything (``show env``, ``show errors``...), and
        reading to EOF frames it exactly whatever it contains.
        """
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        # No severity tags here: raw output is shown to the user exactly as HAProxy wrote it, so
        # errors are recognised by their known messages only.
        line = f"{self.address.route_prefix}{command.line}"
        log.debug("%s <- %s (one-shot)", self._label, line)
        try:
            return self._once(command, line, deadline)
        except HAProxyTimeout as exc:
            raise IOTimeout(f"{self._label}: no complete reply to {command.line!r} within "
                            f"{budget:g}s", timeout=budget, address=self._label,
                            command=command.line) from exc

    def _once(self, command: Command, line: str, deadline: float) -> Reply:
        channel = self._transport.open()
        self.connects += 1
        framer = OneShotFramer()
        try:
            channel.send(line.encode("utf-8") + b"\n", deadline=deadline, command=command.line)
            # The master CLI only answers a one-shot line completely after our EOF (§9.4).
            channel.shutdown_write()
            while True:
                chunk = channel.recv(deadline=deadline, command=command.line)
                if not chunk:
                    break
                framer.feed(chunk)
        finally:
            channel.close()
        framer.close()
        body = framer.next_reply() or b""
        return check_reply(command, parse_reply(body_text(body)), address=str(self.address))

    def _left_stopping_process(self, deadline: float) -> bool:
        """Check which process answers now; True if the session had to move off a stopping
        one."""
        with self._lock:
            self._check_not_streaming()
            changes, connects = self.process_changes, self.connects
            self._identity_at = float("-inf")
            self._ensure_open(deadline)
            return self.process_changes != changes or self.connects != connects

    def current_process(self, *, timeout: float | None = None) -> int | None:
        """Check now which HAProxy process answers (reconnecting off a stopping one) and return
        its PID; :attr:`process_changes` tells whether it changed (a reload)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        with self._lock:
            self._check_not_streaming()
            self._identity_at = float("-inf")
            self._ensure_open(deadline)
            return self.worker_pid

    def close(self) -> None:
        """Close the persistent session (a later call reconnects)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _drop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._framer = None

    def _open(self, deadline: float) -> tuple[Channel, _Framer]:
        channel = self._transport.open()
        self.connects += 1
        framer: _Framer
        if self.address.master:
            framer = MasterPromptFramer()
            handshake = [b"prompt\n"]
        else:
            framer = PromptFramer()
            handshake = [b"prompt\n", b"set severity-output number\n"]
        try:
            channel.send(b"".join(handshake), deadline=deadline, command="prompt")
            for _ in handshake:
                try:
                    body = self._read_reply(channel, framer, deadline, _PROMPT)
                except ConnectionLost as exc:
                    if exc.partial and not exc.partial.startswith((b"\n", b"master")):
                        # Something answered, but not an HAProxy CLI (an HTTP port?).
                        first = (exc.partial.split(b"\n", 1)[0][:80]
                                 .decode("utf-8", "replace").rstrip("\r"))
                        raise ProtocolError(
                            f"{self.address} is not an HAProxy CLI socket: it answered "
                            f"{first!r} to 'prompt'", raw=first, address=str(self.address),
                            command="prompt") from None
                    raise
                if body.strip():
                    raise ProtocolError(
                        f"{self.address}: unexpected reply while entering prompt mode",
                        raw=body[:200].decode("utf-8", "replace"), address=str(self.address),
                        command="prompt",
                    )
        except BaseException:
            channel.close()
            raise
        log.debug("connected to %s (prompt mode)", self.address)
        return channel, framer

    def _read_reply(self, channel: Channel, framer: _Framer, deadline: float,
                    command: Command) -> bytes:
        while True:
            body = framer.next_reply()
            if body is not None:
                return body
            try:
                chunk = channel.recv(deadline=deadline, command=command.line)
            except ConnectionLost as exc:
                # Attached here, only on failure: copying the buffer on every read would make
                # large replies quadratic.
                exc.partial = framer.pending
                raise
            if not chunk:
                channel.close()
                if framer.pending:
                    # Some errors are followed by a close instead of a prompt (the master CLI
                    # does this for an unknown "@!<pid>"): report the error, not the close.
                    partial = parse_reply(body_text(framer.pending))
                    check_reply(command, partial, address=str(self.address), strict=False)
                raise ConnectionLost(
                    f"{self.address}: HAProxy closed the connection before the reply to "
                    f"{command.line!r} was complete",
                    address=str(self.address), command=command.line, sent=True,
                    partial=framer.pending,
                )
            framer.feed(chunk)

    def _roundtrip(self, group: Sequence[Command], deadline: float, budget: float
                   ) -> list[bytes]:
        label = group[0].line if len(group) == 1 else f"{group[0].line} (+{len(group) - 1} more)"
        try:
            return self._roundtrip_once(group, deadline, label)
        except HAProxyTimeout as exc:
            # Whatever step ran out of time (connecting, the prompt handshake, the identity
            # check, the reply), the caller asked for `label` within `budget` seconds.
            raise IOTimeout(f"{self._label}: no complete reply to {label!r} within {budget:g}s",
                            timeout=budget, address=self._label, command=label) from exc

    def _roundtrip_once(self, group: Sequence[Command], deadline: float, label: str
                        ) -> list[bytes]:
        prefix = self.address.route_prefix
        payload = "".join(f"{prefix}{c.line}\n" for c in group).encode("utf-8")
        if log.isEnabledFor(logging.DEBUG):
            for c in group:
                log.debug("%s <- %s%s", self._label, prefix, c.line)
        with self._lock:
            for attempt in (1, 2):
                channel, framer, fresh = self._session(deadline)
                bodies: list[bytes] = []
                try:
                    channel.send(payload, deadline=deadline, command=label)
                    while len(bodies) < len(group):
                        bodies += framer.replies(len(group) - len(bodies))
                        if len(bodies) < len(group):
                            # Wait for (at least) the next reply; _read_reply also turns a close
                            # into the right error.
                            bodies.append(self._read_reply(channel, framer, deadline,
                                                           group[len(bodies)]))
                except ConnectionLost as exc:
                    self._drop()
                    if _retry_after_lost(attempt, fresh, bool(bodies), exc, group):
                        log.debug("%s: idle connection was closed; sending again", self.address)
                        continue
                    raise
                except BaseException:
                    self._drop()
                    raise
                if framer.pending:
                    # More bytes than replies: the stream is out of step (an output line that
                    # started with "> "?). Nothing after this point can be trusted.
                    extra = framer.pending
                    self._drop()
                    raise ProtocolError(
                        f"{self.address}: HAProxy sent more than one reply to {label!r}",
                        raw=extra[:200].decode("utf-8", "replace"), address=str(self.address),
                        command=label,
                    )
                return bodies
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_not_streaming(self) -> None:
        """(Caller holds the lock, so only the thread reading a stream can find it busy.)"""
        if self._streaming:
            raise UsageError(
                f"{self._label}: this connection is still reading a streamed reply (an "
                "unfinished iter_table()?); finish or close that iterator first, or use another "
                "Client for commands sent while iterating; nothing was sent",
                field="connection")

    def _session(self, deadline: float) -> tuple[Channel, _Framer, bool]:
        """The live session to use now, and whether it was just opened. (Caller holds the
        lock.) A half-opened or half-checked session is never reused."""
        self._check_not_streaming()
        try:
            fresh = self._ensure_open(deadline)
        except BaseException:
            self._drop()
            raise
        if self._channel is None or self._framer is None:  # pragma: no cover - set above
            raise RuntimeError("internal error: no session after connecting")
        return self._channel, self._framer, fresh

    def _ensure_open(self, deadline: float) -> bool:
        """Make sure a live session to the *current* HAProxy process exists; True if it was
        just opened."""
        fresh = False
        if self._channel is not None:
            state = self._channel.idle_state()
            if state != "ok":
                log.debug("%s: session %s; reconnecting", self.address, state)
                self._drop()
        if self._channel is None:
            self._channel, self._framer = self._open(deadline)
            fresh = True
        if time.monotonic() - self._identity_at >= self.identity_interval:
            fresh = self._check_identity(deadline) or fresh
        return fresh

    def _check_identity(self, deadline: float) -> bool:
        """Ask ``show info`` which process answers (at most every ``identity_interval`` s).

        In master-worker mode the listening socket is passed to the new worker on reload (its
        inode does not change), so only asking the process tells.

        After a reload the old worker keeps serving CLI sessions it already had, with its
        proxies disabled ("Proxy is disabled.") and stale statistics, until they close: a session
        on a process reporting ``Stopping: 1`` is dropped and reopened on the new worker. A
        change of worker PID is counted in :attr:`process_changes`, so callers that hold state
        across commands (the rollout runner) can tell HAProxy was reloaded. Returns True if it
        had to reconnect.
        """
        reconnected = False
        for _ in range(2):
            channel, framer = self._channel, self._framer
            if channel is None or framer is None:  # pragma: no cover - set by the caller
                raise RuntimeError("internal error: no session")
            try:
                channel.send(self.address.route_prefix.encode() + _INFO.encode(),
                             deadline=deadline, command=_INFO.line)
                body = self._read_reply(channel, framer, deadline, _INFO)
            except ConnectionLost:
                self._drop()
                self._channel, self._framer = self._open(deadline)
                reconnected = True
                continue
            pid_match = _PID_RE.search(body)
            pid = int(pid_match.group(1)) if pid_match else None
            if _STOPPING_RE.search(body):
                log.debug("%s: session is on a stopping process (pid %s); reconnecting",
                          self.address, pid)
                self._drop()
                self._channel, self._framer = self._open(deadline)
                reconnected = True
                continue
            if pid is not None and self.worker_pid is not None and pid != self.worker_pid:
                self.process_changes += 1
                log.debug("%s: now talking to worker pid %s (was %s)", self.address, pid,
                          self.worker_pid)
            if pid is not None:
                self.worker_pid = pid
            self._identity_at = time.monotonic()
            return reconnected
        raise TransportError(f"{self.address}: only a stopping HAProxy process answers (a "
                             "reload in progress?); try again", address=str(self.address))


def _retry_after_lost(attempt: int, fresh: bool, got_reply: bool, exc: ConnectionLost,
                      commands: Sequence[Command]) -> bool:
    """Send again once if a session that was idle died before any reply byte: HAProxy closed
    it (``stats timeout``, reload) just before our write, so nothing ran. Only idempotent
    commands: for the others ConnectionLost(sent=True) tells the caller they may have run."""
    return (attempt == 1 and not fresh and not got_reply and not exc.partial
            and all(c.idempotent for c in commands))


def _groups(commands: Sequence[Command]) -> list[Sequence[Command]]:
    groups: list[Sequence[Command]] = []
    start, size = 0, 0
    for i, c in enumerate(commands):
        n = len(c.line) + 8
        if size and size + n > _MAX_BATCH_BYTES:
            groups.append(commands[start:i])
            start, size = i, 0
        size += n
    groups.append(commands[start:])
    return groups


