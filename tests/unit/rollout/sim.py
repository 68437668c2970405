"""A simulated HAProxy backend and clock that interprets a rollout flow's steps.

The flow (``haproxyctl.rollout.flow``) never does I/O and never reads a clock: it yields steps and
receives their results. :class:`SimHAProxy` answers those steps the way HAProxy 2.6 would
(``shared/haproxy-runtime-api.md`` §3-5), with a fake clock that only moves on ``Sleep`` (and,
optionally, by a fixed cost per read, to model a clock that jumps):

- per server: admin state (ready/drain/maint), operational state, check health with
  ``rise``/``fall``/``inter`` (leaving maint is optimistic: health = ``rise``; ``health down``
  forces 0 so ``rise`` fresh passes are needed), weights, sessions (``scur``), queue (``qcur``),
  ``stot``;
- ``set server ... state|weight|health``, ``shutdown sessions server``, ``clear table ... key``
  and ``set table ... key ... data.server_id`` are parsed from ``Command.line`` and applied;
- scripted behaviours: in-flight sessions that take N seconds to finish in maint (or never),
  pinned users arriving while a server drains, ``option persist`` arrivals in maint, a new
  version that boots in N seconds (or never passes its checks), updates that fail or are
  interrupted, commands HAProxy refuses, callbacks at given times or before a snapshot;
- users: stick-table entries (key -> server), and cookie users (user -> server) who each send
  a request every ``user_gap`` seconds on average; a user pinned to a server out of service is
  re-dispatched on its next request, to a server picked by weight among those in load
  balancing (seeded, reproducible), as HAProxy does;
- invariants checked after every command and every check result (recorded in ``violations``):
  never more than ``max_unavailable`` servers out of service, never zero servers in service,
  a server updated is never set ready before ``rise`` fresh checks passed after the update (or
  ``settle`` seconds for an unchecked server), an update only runs on a server in maint with no
  session and an empty queue; and promise 1: while users can be re-dispatched (their server
  is out of service), every server taking load-balanced users serves one version, and a user
  who reached the new version is never pinned or re-dispatched to the old one.

Everything is recorded (commands per server, sends, updates, events) for the tests to assert on.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from haproxyctl.errors import CommandError
from haproxyctl.models.server import Server, join_servers
from haproxyctl.models.stat import BackendStat, ServerStat, parse_server_stats, parse_stats
from haproxyctl.models.state import AdminState, parse_servers_state
from haproxyctl.models.table import StickTable, TableInfo, parse_table
from haproxyctl.protocol.encode import Command, unescape_words
from haproxyctl.protocol.replies import Reply
from haproxyctl.rollout.events import Event, Phase, PhaseChanged
from haproxyctl.rollout.flow import FlowResult, rollout_flow
from haproxyctl.rollout.options import RolloutOptions
from haproxyctl.rollout.plan import Plan, make_plan
from haproxyctl.rollout.rebalance import Pin
from haproxyctl.rollout.steps import (
    Emit,
    Now,
    Probe,
    ReadPins,
    Send,
    Sleep,
    Snapshot,
    Step,
    Update,
    UpdateOutcome,
)

T = TypeVar("T")

__all__ = [
    "BACKEND",
    "STATE_HEADER",
    "STAT_HEADER",
    "SimHAProxy",
    "SimServer",
    "backend_stat",
    "servers_from_text",
    "stat_row",
    "state_row",
]

BACKEND = "app"
EPS = 1e-9

#: A minimal ``show stat`` header: columns are read by name, absent ones read as "".
STAT_HEADER = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,weight,act,bck,chkdown,"
               "iid,sid,lbtot,type,check_status,check_rise,check_fall,check_health,addr,"
               "cookie,mode,algo,")
#: ``show servers state``: version line and the 25-column header of 2.6 (§5.2).
STATE_HEADER = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state "
                "srv_uweight srv_iweight srv_time_since_last_change srv_check_status "
                "srv_check_result srv_check_health srv_check_state srv_agent_state "
                "bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl "
                "srv_check_port srv_check_addr srv_agent_addr srv_agent_port")
BACKEND_ID = 3
_ADMIN_BITS = {AdminState.READY: 0, AdminState.DRAIN: 8, AdminState.MAINT: 1}


def stat_row(*, backend: str = BACKEND, name: str, sid: int, status: str, weight: int,
             scur: int = 0, qcur: int = 0, stot: int = 0, check: tuple[str, int, int, int]
             | None = None, addr: str = "", be_id: int = BACKEND_ID) -> str:
    """One server row (type 2) matching :data:`STAT_HEADER`; ``check`` is
    (check_status, rise, fall, health) or None for empty check columns."""
    cs, rise, fall, health = (check[0], str(check[1]), str(check[2]), str(check[3])) \
        if check is not None else ("", "", "", "")
    return (f"{backend},{name},{qcur},0,{scur},0,,{stot},{status},{weight},1,0,0,"
            f"{be_id},{sid},0,2,{cs},{rise},{fall},{health},{addr},,,,")


def state_row(*, backend: str = BACKEND, name: str, sid: int, addr: str = "10.0.0.1",
              port: int | str = 8080, op: int = 2, admin: int = 0, weight: int = 1,
              iweight: int | None = None, health: int = 3, check_state: int = 6,
              be_id: int = BACKEND_ID) -> str:
    """One ``show servers state`` line (admin state in decimal: 8 drain, 1 maint)."""
    iw = weight if iweight is None else iweight
    return (f"{be_id} {backend} {sid} {name} {addr} {op} {admin} {weight} {iw} 10 15 3 "
            f"{health} {check_state} 0 0 0 - {port} - 0 0 - - 0")


def backend_stat(*, backend: str = BACKEND, cookie: str | None = None, algo: str = "roundrobin",
                 be_id: int = BACKEND_ID) -> BackendStat:
    """The BACKEND row (type 1), parsed from CSV like the real reply."""
    text = (f"{STAT_HEADER}\n{backend},BACKEND,0,0,0,0,,0,UP,4,4,0,0,{be_id},0,0,1,,,,,,"
            f"{cookie or ''},http,{algo},\n")
    (row,) = parse_stats(text).backends
    return row


def servers_from_text(stat_rows: Iterable[str], state_rows: Iterable[str]) -> list[Server]:
    stats = parse_server_stats(STAT_HEADER + "\n" + "\n".join(stat_rows) + "\n")
    states = parse_servers_state(STATE_HEADER + "\n" + "\n".join(state_rows) + "\n")
    return join_servers(stats, states)


@dataclass
class SimServer:
    """One simulated server. Fields after ``# script`` are behaviours set by tests."""

    name: str
    sid: int
    weight: int = 10
    admin: AdminState = AdminState.READY
    checks: bool = True
    rise: int = 2
    fall: int = 2
    inter: float = 1.0
    addr: str = "10.0.0.1"
    port: int = 8080
    #: When the first check runs, as a fraction of ``inter`` (default: staggered by id).
    check_phase: float | None = None
    # live state
    iweight: int = 0
    health: int = -1
    running: bool = True
    sessions: list[float] = field(default_factory=list)  #: end times
    queue: list[float] = field(default_factory=list)  #: end times
    stot: int = 0
    version: int = 1
    next_check: float = 0.0
    last_check_ok: bool = True
    fresh_passes: int = 0  #: checks passed since the last update
    fresh_update: bool = False  #: updated since it was last set ready
    left_maint_at: float = -math.inf
    drain_since: float | None = None  #: while arrivals of pinned users apply
    arrivals_done: int = 0
    maint_arrivals_done: int = 0
    maint_since: float | None = None
    kills: int = 0
    # script
    #: In-flight sessions when the server enters maint: (count, seconds to finish; inf: never).
    inflight: tuple[int, float] = (0, 0.0)
    #: Queued requests when the server enters maint: (count, seconds).
    queued: tuple[int, float] = (0, 0.0)
    #: Pinned users arriving while draining (offsets from the drain, seconds), each a session.
    drain_arrivals: tuple[float, ...] = ()
    pinned_session: float = 0.1
    #: New sessions arriving in maint ('option persist'), offsets from the maint.
    maint_arrivals: tuple[float, ...] = ()
    #: Seconds the new version needs before its checks pass (inf: never).
    boot: float = 0.0
    app_ok_from: float = -math.inf
    #: The update of this server fails (detail) or is interrupted.
    update_fails: str | None = None
    update_interrupted: bool = False

    def __post_init__(self) -> None:
        if not self.iweight:
            self.iweight = self.weight
        if self.health < 0:
            self.health = self.max_health
        self.running = self.admin is not AdminState.MAINT
        phase = (0.5 + (self.sid % 7) / 14) if self.check_phase is None else self.check_phase
        self.next_check = self.inter * phase

    @property
    def max_health(self) -> int:
        return self.rise + self.fall - 1

    @property
    def up(self) -> bool:
        return self.running and self.admin is not AdminState.MAINT

    @property
    def available(self) -> bool:
        """In load balancing: ready and running (what the planner calls available)."""
        return self.admin is AdminState.READY and self.up

    def scur_at(self, t: float) -> int:
        return sum(1 for end in self.sessions if end > t + EPS)

    def qcur_at(self, t: float) -> int:
        return sum(1 for end in self.queue if end > t + EPS)

    def status(self) -> str:
        if self.admin is AdminState.MAINT:
            return "MAINT"
        if not self.checks:
            if not self.running:
                return "DOWN"
            return "DRAIN" if self.admin is AdminState.DRAIN else "no check"
        if self.running:
            word = "DRAIN" if self.admin is AdminState.DRAIN else "UP"
            if self.health < self.max_health:
                return f"{word} {self.health - self.rise + 1}/{self.fall}"
            return word
        return f"DOWN {self.health}/{self.rise}" if self.health > 0 else "DOWN"


class SimHAProxy:
    """Interprets a flow's steps against simulated servers and a fake clock."""

    def __init__(self, servers: Sequence[SimServer], *, backend: str = BACKEND,
                 cookie: str | None = "SRV", algo: str = "roundrobin",
                 table: bool = False, start: float = 1000.0, read_cost: float = 0.0,
                 max_steps: int = 200_000) -> None:
        self.backend = backend
        self.servers: dict[str, SimServer] = {s.name: s for s in servers}
        self.cookie = cookie
        self.algo = algo
        self.has_table = table
        self.table: dict[str, tuple[int, int]] = {}  #: key -> (server_id, use)
        self.now = start
        self.start = start
        self.read_cost = read_cost
        self.max_steps = max_steps
        self.steps = 0
        for s in self.servers.values():
            s.next_check += start
        # recordings
        self.violations: list[str] = []
        self.trace: dict[str, list[tuple[float, str]]] = {n: [] for n in self.servers}
        #: Every server action in order: (server, action).
        self.order: list[tuple[str, str]] = []
        #: Phases as a journal would hold them (the last PhaseChanged of each server).
        self.journal: dict[str, Phase] = {}
        self.sends: list[Send] = []
        self.lines: list[str] = []
        self.updates: list[tuple[float, tuple[str, ...]]] = []
        self.events: list[Event] = []
        self.phase_log: list[tuple[float, str, Phase]] = []
        self.sleeps: list[Sleep] = []
        self.max_out_seen = 0
        # checks of the invariants
        self.max_unavailable: int | None = None
        self.require_in_service = True
        #: halves: servers of both versions must never be in load balancing together.
        self.forbid_mixed_versions = False
        self.settle = 0.0
        # scripting
        self.refuse: dict[tuple[str, str], str] = {}  #: (server, word) -> reason
        self.timers: list[tuple[float, Callable[[SimHAProxy], None]]] = []
        self.before_snapshot: list[Callable[[SimHAProxy, int], None]] = []
        self.snapshots = 0
        self.update_duration = 0.0
        self.redispatch_on_maint = True
        # users
        self.rng = random.Random(1)
        #: Cookie users: user -> server name; each sends a request every ``user_gap`` s.
        self.cookie_users: dict[str, str] = {}
        self.user_gap = 1.0
        #: Users (stick keys or cookie users) who got an answer from the new version.
        self.seen_new: set[str] = set()
        #: Servers the rollout put out of service at some point (their users may be
        #: re-dispatched while they are out).
        self.taken_out: set[str] = set()
        self._stot_frac: dict[str, float] = {}

    # -- setup ------------------------------------------------------------------------------------

    def plan(self, options: RolloutOptions, *, persistence: str | None = None) -> Plan:
        """make_plan on the current state (like ``Rollout.plan``); arms the invariants."""
        _, servers = self.snapshot_result()
        tables = ([TableInfo(self.backend, "string", 1024, len(self.table))]
                  if self.has_table else [])
        plan = make_plan(self.backend, servers, backend_stat(backend=self.backend,
                                                             cookie=self.cookie,
                                                             algo=self.algo),
                         tables, options, persistence=persistence)
        self.max_unavailable = plan.max_unavailable
        self.settle = options.settle
        return plan

    def fork(self) -> SimHAProxy:
        """A copy of the backend as it is now (servers, table, clock, scripted refusals and
        invariants) with empty recordings: what a ``--resume`` after a crash here would find."""
        other = SimHAProxy([copy.deepcopy(s) for s in self.servers.values()],
                           backend=self.backend, cookie=self.cookie, algo=self.algo,
                           table=self.has_table, start=self.now, read_cost=self.read_cost,
                           max_steps=self.max_steps)
        for s in other.servers.values():  # the constructor shifted them by ``start``
            s.next_check -= self.now
        other.table = dict(self.table)
        other.max_unavailable = self.max_unavailable
        other.settle = self.settle
        other.require_in_service = self.require_in_service
        other.forbid_mixed_versions = self.forbid_mixed_versions
        other.refuse = dict(self.refuse)
        other.update_duration = self.update_duration
        other.redispatch_on_maint = self.redispatch_on_maint
        other.cookie_users = dict(self.cookie_users)
        other.user_gap = self.user_gap
        other.seen_new = set(self.seen_new)
        other.taken_out = set(self.taken_out)
        return other

    def put_entries(self, owners: Mapping[str, str], use: int = 0) -> None:
        """Stick-table entries: key -> server name."""
        for key, server in owners.items():
            self.table[key] = (self.servers[server].sid, use)

    def put_cookie_users(self, per_server: Mapping[str, int]) -> None:
        """Cookie users: ``n`` users pinned to each server."""
        for server, n in per_server.items():
            for i in range(n):
                self.cookie_users[f"{server}-u{i}"] = server

    def users_per_server(self) -> dict[str, int]:
        out = {n: 0 for n in self.servers}
        for server in self.cookie_users.values():
            out[server] += 1
        for sid, _ in self.table.values():
            name = next(s.name for s in self.servers.values() if s.sid == sid)
            out[name] += 1
        return out

    def at(self, t: float, fn: Callable[[SimHAProxy], None]) -> None:
        """Call ``fn`` once the simulated clock reaches ``start + t``."""
        self.timers.append((self.start + t, fn))
        self.timers.sort(key=lambda x: x[0])

    # -- running ----------------------------------------------------------------------------------

    def run(self, plan: Plan, phases: Mapping[str, Phase] | None = None, *,
            before_step: Callable[[Step], None] | None = None) -> FlowResult:
        """Drive ``rollout_flow(plan, phases)`` to its end; ``before_step`` sees each step
        before it is performed (e.g. to copy the simulation at that point)."""
        return self.drive(rollout_flow(plan, phases), before_step=before_step)

    def drive(self, flow: Generator[Step, Any, T], *,
              before_step: Callable[[Step], None] | None = None) -> T:
        """Drive any flow (the rollout, ``balance_flow``) to its end."""
        step: Step = next(flow)
        while True:
            self.steps += 1
            if self.steps > self.max_steps:
                flow.close()
                raise AssertionError(f"the flow did not end within {self.max_steps} steps "
                                     f"(simulated time {self.elapsed:.1f}s)")
            if before_step is not None:
                before_step(step)
            value = self.perform(step)
            try:
                step = flow.send(value)
            except StopIteration as done:
                result: T = done.value
                return result

    @property
    def elapsed(self) -> float:
        return self.now - self.start

    def perform(self, step: Step) -> Any:
        if isinstance(step, Emit):
            self.events.append(step.event)
            if isinstance(step.event, PhaseChanged):
                self.phase_log.append((self.now, step.event.server, step.event.phase))
                self.journal[step.event.server] = step.event.phase
            return None
        if isinstance(step, Now):
            return self.now
        if isinstance(step, Sleep):
            self.sleeps.append(step)
            if not (step.seconds >= 0 and math.isfinite(step.seconds)):
                self.violations.append(f"Sleep({step.seconds!r}) at {self.elapsed:.2f}s")
                return self.now
            self.advance(step.seconds)
            return self.now
        if isinstance(step, Probe):
            self.advance(self.read_cost)
            for ref in step.refs:
                assert ref.backend == self.backend, ref
            return self.now, self.stats([r.server for r in step.refs])
        if isinstance(step, Snapshot):
            assert step.backend == self.backend
            for hook in self.before_snapshot:
                hook(self, self.snapshots)
            self.snapshots += 1
            self.advance(self.read_cost)
            return self.snapshot_result()
        if isinstance(step, ReadPins):
            self.advance(self.read_cost)
            return self.now, self.read_pins(step)
        if isinstance(step, Send):
            self.sends.append(step)
            replies = [self.apply(c) for c in step.commands]
            self.check_invariants(f"write {step.label!r}")
            return replies
        if isinstance(step, Update):
            return self.do_update(step)
        raise AssertionError(f"unknown step {step!r}")

    # -- the clock and the checks -----------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        # Users' requests, in steps of at most 0.05 s so re-dispatches interleave with checks.
        while self.cookie_users and self.now + 0.05 < target - EPS:
            self._advance_to(self.now + 0.05)
        self._advance_to(target)

    def _advance_to(self, target: float) -> None:
        dt = target - self.now
        if dt > 0 and self.cookie_users:
            self._users_act(dt)
        while True:
            nxt = min((s.next_check for s in self.servers.values() if s.checks),
                      default=math.inf)
            timer = self.timers[0][0] if self.timers else math.inf
            if min(nxt, timer) > target:
                break
            if timer <= nxt:
                self.now = max(self.now, timer)
                _, fn = self.timers.pop(0)
                fn(self)
                self.check_invariants("timer")
                continue
            self.now = max(self.now, nxt)
            for s in self.servers.values():
                if s.checks and s.next_check <= self.now + EPS:
                    s.next_check += s.inter
                    self.run_check(s)
        self.now = max(self.now, target)

    def _users_act(self, dt: float) -> None:
        """Each cookie user sends a request with probability 1 - exp(-dt/gap); requests are
        counted in ``stot``; a user pinned to a server out of service is re-dispatched."""
        p = 1.0 - math.exp(-dt / self.user_gap)
        per: dict[str, int] = {}
        for user in sorted(self.cookie_users):
            server = self.servers[self.cookie_users[user]]
            per[server.name] = per.get(server.name, 0) + 1
            if server.up or self.rng.random() >= p:
                continue
            target = self._pick()
            if target is None:
                continue
            self._move_user(user, target)
        for name, n in per.items():
            s = self.servers[name]
            if not s.up:
                continue
            frac = self._stot_frac.get(name, 0.0) + n * dt / self.user_gap
            s.stot += int(frac)
            self._stot_frac[name] = frac - int(frac)

    def _pick(self) -> SimServer | None:
        """A server for a load-balanced request: by weight among those in load balancing."""
        live = [x for x in self.servers.values() if x.available and x.weight > 0]
        if not live:
            return None
        total = sum(x.weight for x in live)
        r = self.rng.random() * total
        for x in live:
            r -= x.weight
            if r <= 0:
                return x
        return live[-1]

    def _move_user(self, user: str, target: SimServer) -> None:
        if user in self.seen_new and target.version == 1:
            self.violations.append(f"user {user} saw the new version and was re-dispatched to "
                                   f"{target.name} (old version) at {self.elapsed:.2f}s")
        self.cookie_users[user] = target.name
        if target.version > 1:
            self.seen_new.add(user)

    def app_ok(self, s: SimServer) -> bool:
        return self.now + EPS >= s.app_ok_from

    def run_check(self, s: SimServer) -> None:
        if s.admin is AdminState.MAINT:
            return  # checks are paused in maint
        ok = self.app_ok(s)
        s.last_check_ok = ok
        if ok:
            s.fresh_passes += 1
            if s.health < s.max_health:
                s.health += 1
                if s.health >= s.rise:
                    s.health = s.max_health
                    s.running = True
        elif s.health > s.rise:
            s.health -= 1
        else:
            s.health = 0
            s.running = False
        self.check_invariants(f"check of {s.name}")

    def check_invariants(self, after: str, *, write_done: bool = True) -> None:
        """``write_done``: False between the lines of one pipelined write (HAProxy runs them
        back to back), where versions may overlap but capacity must hold line by line."""
        out = [s.name for s in self.servers.values() if not s.available]
        self.max_out_seen = max(self.max_out_seen, len(out))
        if self.max_unavailable is not None and len(out) > self.max_unavailable:
            self.violations.append(
                f"{len(out)} servers out of service ({', '.join(out)}) > max_unavailable "
                f"{self.max_unavailable} after {after} at {self.elapsed:.2f}s")
        if self.require_in_service and len(out) == len(self.servers):
            self.violations.append(f"no server in service after {after} at "
                                   f"{self.elapsed:.2f}s")
        if write_done:
            # A server the flow gave up on (failed, left in maint) keeps the users who never
            # came back while it was out; after a failure the weights go back to normal and
            # those users are load balanced as HAProxy would without haproxyctl.
            stranded = [s.name for s in self.servers.values()
                        if not s.up and s.name in self.taken_out and self._has_users(s)
                        and self.journal.get(s.name) is not Phase.FAILED]
            balanced = {s.version for s in self.servers.values()
                        if s.available and s.weight > 0}
            if stranded and len(balanced) > 1:
                self.violations.append(
                    f"users of {', '.join(stranded)} can be re-dispatched to both versions "
                    f"{sorted(balanced)} after {after} at {self.elapsed:.2f}s")
        if self.forbid_mixed_versions and write_done:
            versions = {s.version for s in self.servers.values() if s.available}
            if len(versions) > 1:
                self.violations.append(f"versions {sorted(versions)} in service together "
                                       f"after {after} at {self.elapsed:.2f}s")

    def _has_users(self, s: SimServer) -> bool:
        """Users pinned to ``s`` (cookie users are assumed to exist unless modelled)."""
        if s.name in self.cookie_users.values():
            return True
        if any(sid == s.sid for sid, _ in self.table.values()):
            return True
        return self.cookie is not None and not self.cookie_users

    # -- reads ------------------------------------------------------------------------------------

    def _materialize(self, s: SimServer) -> None:
        """Sessions of pinned users that arrived up to now (lazy, applied before reads and
        state changes)."""
        if s.drain_since is not None:
            while s.arrivals_done < len(s.drain_arrivals):
                at = s.drain_since + s.drain_arrivals[s.arrivals_done]
                if at > self.now + EPS:
                    break
                s.sessions.append(at + s.pinned_session)
                s.stot += 1
                s.arrivals_done += 1
        if s.maint_since is not None:
            while s.maint_arrivals_done < len(s.maint_arrivals):
                at = s.maint_since + s.maint_arrivals[s.maint_arrivals_done]
                if at > self.now + EPS:
                    break
                s.sessions.append(at + s.pinned_session)
                s.stot += 1
                s.maint_arrivals_done += 1

    def _stat_line(self, s: SimServer) -> str:
        self._materialize(s)
        check = None
        if s.checks and s.admin is not AdminState.MAINT:
            check = ("L7OK" if s.last_check_ok else "L7STS", s.rise, s.fall, s.health)
        return stat_row(backend=self.backend, name=s.name, sid=s.sid, status=s.status(),
                        weight=s.weight, scur=s.scur_at(self.now), qcur=s.qcur_at(self.now),
                        stot=s.stot, check=check, addr=f"{s.addr}:{s.port}")

    def _state_line(self, s: SimServer) -> str:
        return state_row(backend=self.backend, name=s.name, sid=s.sid, addr=s.addr,
                         port=s.port, op=2 if s.up else 0, admin=_ADMIN_BITS[s.admin],
                         weight=s.weight, iweight=s.iweight,
                         health=s.health if s.checks else 0,
                         check_state=(14 if s.admin is AdminState.MAINT else 6)
                         if s.checks else 0)

    def stats(self, names: Sequence[str]) -> list[ServerStat]:
        rows = [self._stat_line(self.servers[n]) for n in names]
        parsed = parse_server_stats(STAT_HEADER + "\n" + "\n".join(rows) + "\n")
        assert [p.name for p in parsed] == list(names)
        return parsed

    def snapshot_result(self) -> tuple[float, list[Server]]:
        servers = list(self.servers.values())
        return self.now, servers_from_text([self._stat_line(s) for s in servers],
                                           [self._state_line(s) for s in servers])

    def read_pins(self, step: ReadPins) -> dict[str, list[Pin]]:
        assert step.table == self.backend, step.table
        names = {s.sid: s.name for s in self.servers.values()}
        wanted = None if step.servers is None else {n for n, _ in step.servers}
        out: dict[str, list[Pin]] = {}
        for key, (sid, use) in sorted(self.table.items()):
            owner = names.get(sid)
            if owner is not None and (wanted is None or owner in wanted):
                out.setdefault(owner, []).append(Pin(key, use == 0))
        return out

    def read_table(self, name: str) -> StickTable:
        assert name == self.backend, name
        lines = [f"# table: {name}, type: string, size:1024, used:{len(self.table)}"]
        for i, (key, (sid, use)) in enumerate(sorted(self.table.items())):
            lines.append(f"0x{0x1000 + i:x}: key={key} use={use} exp=1800000 server_id={sid}")
        return parse_table("\n".join(lines) + "\n", name=name)

    # -- writes -----------------------------------------------------------------------------------

    def _act(self, s: SimServer, action: str) -> None:
        self.trace[s.name].append((self.now, action))
        self.order.append((s.name, action))

    def _server(self, ref: str) -> SimServer:
        backend, _, name = ref.partition("/")
        assert backend == self.backend, ref
        return self.servers[name]

    def apply(self, command: Command) -> Reply | CommandError:
        self.lines.append(command.line)
        words = unescape_words(command.line)
        assert ";" not in words, command.line
        if words[:2] == ["set", "server"] and len(words) == 5:
            s = self._server(words[2])
            what, arg = words[3], words[4]
            refused = self.refuse.get((s.name, arg)) or self.refuse.get((s.name, what))
            if refused is not None:
                return CommandError(refused, reply=refused, reason=refused)
            self._materialize(s)
            if what == "state":
                self._set_state(s, AdminState(arg))
            elif what == "weight":
                s.weight = (s.iweight * int(arg[:-1]) // 100) if arg.endswith("%") else int(arg)
                self._act(s, f"weight {s.weight}")
            elif what == "health":
                self._act(s, f"health {arg}")
                if arg == "down":
                    s.health, s.running = 0, False
                elif arg == "up":
                    s.health, s.running = s.max_health, True
                else:
                    raise AssertionError(f"unexpected command {command.line!r}")
            else:
                raise AssertionError(f"unexpected command {command.line!r}")
        elif words[:3] == ["shutdown", "sessions", "server"] and len(words) == 4:
            s = self._server(words[3])
            self._materialize(s)
            s.sessions = [min(e, self.now) for e in s.sessions]
            s.queue = [min(e, self.now) for e in s.queue]
            s.kills += 1
            self._act(s, "kill")
        elif words[:2] == ["clear", "table"] and len(words) == 5 and words[3] == "key":
            assert words[2] == self.backend
            entry = self.table.get(words[4])
            if entry is not None and entry[1] == 0:
                del self.table[words[4]]
        elif (words[:2] == ["set", "table"] and len(words) == 7 and words[3] == "key"
              and words[5] == "data.server_id"):
            assert words[2] == self.backend
            sid = int(words[6])
            target = next(s for s in self.servers.values() if s.sid == sid)
            key = words[4]
            if not target.available:
                self.violations.append(f"user {key} re-pinned to {target.name}, which is not "
                                       "in service")
            if key in self.seen_new and target.version == 1:
                self.violations.append(f"user {key} saw the new version and was re-pinned to "
                                       f"{target.name} (old version) at {self.elapsed:.2f}s")
            old = self.table.get(key)
            if old is not None and target.version == 1:
                source = next(x for x in self.servers.values() if x.sid == old[0])
                if source.available and source.version > 1:
                    self.violations.append(f"user {key} moved from {source.name} (new) to "
                                           f"{target.name} (old)")
            self.table[key] = (sid, self.table.get(key, (0, 0))[1])
            if target.version > 1:
                self.seen_new.add(key)
        else:
            raise AssertionError(f"unexpected command {command.line!r}")
        self.check_invariants(repr(command.line), write_done=False)
        return Reply(raw="", text="")

    def _set_state(self, s: SimServer, new: AdminState) -> None:
        old = s.admin
        self._act(s, new.value)
        if new is AdminState.READY and old is not AdminState.READY and s.version > 1 \
                and s.fresh_update:
            # (a server already serving the new version, put back from a short even-out
            # pulse, runs the app that passed its checks: HAProxy puts it UP at once, fine)
            self._check_ready(s)
            s.fresh_update = False
        s.admin = new
        if old is AdminState.MAINT and new is not AdminState.MAINT:
            # 2.6: leaving maint starts the server at health = rise, without a check (§3.4).
            s.health = s.rise
            s.running = True
            s.left_maint_at = self.now
            s.maint_since = None
        if new is AdminState.DRAIN and old is AdminState.READY and s.version == 1:
            s.drain_since = self.now
        if new is not AdminState.READY:
            self.taken_out.add(s.name)
        if new is AdminState.MAINT and old is not AdminState.MAINT:
            s.drain_since = None
            s.running = False
            s.maint_since = self.now
            count, secs = s.inflight
            s.sessions += [self.now + secs] * count
            count, secs = s.queued
            s.queue += [self.now + secs] * count
            s.stot += s.inflight[0]
            s.inflight = (0, 0.0)
            s.queued = (0, 0.0)
            if self.redispatch_on_maint:
                self._redispatch(s)

    def _redispatch(self, s: SimServer) -> None:
        """Stick users pinned to a server in maint are re-dispatched (entry rewritten) on their
        next request: modelled at once, by weight over the servers in load balancing."""
        for key, (sid, use) in sorted(self.table.items()):
            if sid == s.sid:
                target = self._pick()
                if target is None:
                    return
                if key in self.seen_new and target.version == 1:
                    self.violations.append(f"user {key} saw the new version and was "
                                           f"re-dispatched to {target.name} (old version)")
                self.table[key] = (target.sid, use)
                if target.version > 1:
                    self.seen_new.add(key)

    def _check_ready(self, s: SimServer) -> None:
        if s.checks:
            if not (s.running and s.health == s.max_health and s.fresh_passes >= s.rise
                    and self.app_ok(s)):
                self.violations.append(
                    f"{s.name} set ready at {self.elapsed:.2f}s with health {s.health}/"
                    f"{s.max_health} after {s.fresh_passes} fresh passes (rise {s.rise}), "
                    f"app ok: {self.app_ok(s)}")
        elif self.now - s.left_maint_at < self.settle - 1e-6:
            self.violations.append(
                f"{s.name} (no check) set ready {self.now - s.left_maint_at:.2f}s after "
                f"leaving maint, before --settle {self.settle:g}s")

    def do_update(self, step: Update) -> list[UpdateOutcome]:
        names = tuple(t.server for t in step.targets)
        self.updates.append((self.now, names))
        for t in step.targets:
            assert t.backend == self.backend
            s = self.servers[t.server]
            self._materialize(s)
            assert (t.address, t.port) == (s.addr, s.port), t
            if s.admin is not AdminState.MAINT or s.scur_at(self.now) or s.qcur_at(self.now):
                self.violations.append(
                    f"update of {s.name} at {self.elapsed:.2f}s while {s.admin.value} with "
                    f"{s.scur_at(self.now)} sessions and {s.qcur_at(self.now)} queued")
            self._act(s, "update")
        self.advance(self.update_duration)
        outcomes: list[UpdateOutcome] = []
        for name in names:
            s = self.servers[name]
            if s.update_interrupted:
                s.update_interrupted = False
                outcomes.append(UpdateOutcome(name, False, "killed by SIGINT", interrupted=True,
                                              signal=2))
            elif s.update_fails is not None:
                outcomes.append(UpdateOutcome(name, False, s.update_fails))
            else:
                s.version = 2  # the new version (an update run again installs it again)
                s.fresh_update = True
                s.app_ok_from = self.now + s.boot
                s.fresh_passes = 0
                outcomes.append(UpdateOutcome(name, True, ""))
        return outcomes

    # -- views for assertions ---------------------------------------------------------------------

    def actions(self, server: str) -> list[str]:
        return [a for _, a in self.trace[server]]

    def touched(self, server: str) -> bool:
        """Whether the server's state was changed or it was updated (temporary weights, which
        the rollout sets on servers in service to steer users, do not count)."""
        return (any(not a.startswith("weight ") for _, a in self.trace[server])
                or any(server in names for _, names in self.updates))

    def events_of(self, kind: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def make_servers(n: int, **kw: Any) -> list[SimServer]:
    """``n`` servers s1..sn with distinct addresses; keyword arguments apply to all."""
    return [SimServer(name=f"s{i}", sid=i, addr=f"10.0.0.{i}", **kw) for i in range(1, n + 1)]
