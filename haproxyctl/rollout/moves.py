"""Moving users while a rollout runs: steering weights, stick-table re-pins, cookie pulses.

Flow pieces (generators of steps, no I/O, no clock), used by ``rollout/flow.py`` and by the
``balance`` command. The rules they follow and why:

**One version per move (promise 1).** Whenever users are moved while both versions are in
service, every load-balanced request must land on servers of one version. Users are
re-dispatched request by request (a browser's parallel requests each on its own) when their
cookie or stick entry names a server in maint or DOWN, and the last ``Set-Cookie`` to arrive
wins; if those requests could reach v1 and v2, a user who saw v2 could be sent back to v1.
:class:`Mover` sets *steering weights* before any such move: the receivers get weights in
proportion to the load each should take, every other server in service gets weight 0, which
takes it out of load balancing but keeps serving the users pinned to it (configuration.txt,
"weight"). The weights are restored as soon as nobody can be re-dispatched any more.

**Even load (promise 2).** What each receiver should take comes from ``balance.water_fill``
over the servers' measured loads: stick-table users per server (exact), or requests per
second for cookies (a user cannot be seen, its requests can).

**Nothing half-applied.** Every weight the mover changed is remembered, and every exit path
of the flow restores them; after a crash, ``--resume`` and ``--abort`` put every server's
weight back from the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from haproxyctl import commands as cmd
from haproxyctl.errors import CommandError
from haproxyctl.protocol.encode import Command
from haproxyctl.rollout.balance import imbalance, steering_weights
from haproxyctl.rollout.events import Balance
from haproxyctl.rollout.plan import Plan
from haproxyctl.rollout.rebalance import Pin
from haproxyctl.rollout.steps import Flow, emit, probe, read_pins, send, sleep

__all__ = ["Mover", "measure_rates"]

#: How long request rates are measured for (seconds): long enough for a few requests per
#: user, short enough not to slow a batch down much.
RATE_WINDOW = 1.0


def measure_rates(plan: Plan, servers: Sequence[str], window: float = RATE_WINDOW
                  ) -> Flow[dict[str, float]]:
    """Requests per second of each server over ``window``: the difference of ``stot``
    (cumulative sessions; HAProxy counts one per request on a server, keep-alive or not)
    between two reads."""
    if not servers:
        return {}
    refs = [plan.ref(s) for s in servers]
    t0, first = yield from probe(refs)
    yield from sleep(window, "measure load")
    t1, second = yield from probe(refs)
    span = max(t1 - t0, 1e-3)
    return {s: max(b.stot - a.stot, 0) / span
            for s, a, b in zip(servers, first, second, strict=True)}


class Mover:
    """Steering weights and re-pins for one rollout (or one ``balance`` run).

    ``weights`` holds every weight this mover set that differs from the plan's, so that
    :meth:`unsteer` (and any failure path) can put exactly those back.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.weights: dict[str, int] = {}
        #: Stick-table keys moved so far, and how many times: re-pins prefer the least moved.
        self.moves: dict[str, int] = {}
        self.static = plan.static_algo

    @property
    def steering(self) -> bool:
        return bool(self.weights)

    def capacity(self, server: str) -> float:
        return float(self.plan.weight(server))

    def capacities(self, servers: Iterable[str]) -> dict[str, float]:
        return {s: self.capacity(s) for s in servers}

    def steer(self, inflow: Mapping[str, float], others: Iterable[str], why: str
              ) -> Flow[None]:
        """Weights so that load-balanced users go to ``inflow``'s receivers in those
        proportions and to none of ``others`` (servers in service that must not receive)."""
        caps = self.capacities(list(inflow))
        wanted = steering_weights(inflow, caps, others, static=self.static)
        if not any(wanted.get(s, 0) > 0 for s in inflow):
            # Never leave the backend without a server taking new users: HAProxy would
            # answer them 503.
            return
        yield from self._apply(wanted, why)

    def unsteer(self, servers: Iterable[str] | None = None) -> Flow[None]:
        """Back to the plan's weights (all servers this mover changed, or those given)."""
        names = [s for s in (self.weights if servers is None else servers)
                 if s in self.weights]
        if not names:
            return
        yield from self._apply({s: self.plan.weight(s) for s in names}, "restore weights")

    def remember(self, weights: Mapping[str, int]) -> None:
        """These weights were set by other commands (ready with a temporary weight)."""
        for s, w in weights.items():
            if w == self.plan.weight(s):
                self.weights.pop(s, None)
            else:
                self.weights[s] = w

    def forget(self, servers: Iterable[str]) -> None:
        """These servers' weights were set back to the plan's by other commands (ready)."""
        for s in servers:
            self.weights.pop(s, None)

    def set_weights(self, wanted: Mapping[str, int], why: str) -> Flow[None]:
        """Set these weights (remembered until :meth:`unsteer`)."""
        yield from self._apply(wanted, why)

    def _apply(self, wanted: Mapping[str, int], why: str) -> Flow[None]:
        current = {s: self.weights.get(s, self.plan.weight(s)) for s in wanted}
        changes = {s: w for s, w in wanted.items() if w != current[s]}
        if not changes:
            return
        names = sorted(changes)
        replies = yield from send([cmd.set_weight(self.plan.ref(s), changes[s])
                                   for s in names], why)
        for s, reply in zip(names, replies, strict=True):
            if isinstance(reply, CommandError):
                continue  # HAProxy kept the old weight: nothing to restore for it
            if changes[s] == self.plan.weight(s):
                self.weights.pop(s, None)
            else:
                self.weights[s] = changes[s]

    # -- stick tables -----------------------------------------------------------------------

    def pins(self, servers: Sequence[str] | None) -> Flow[dict[str, list[Pin]]]:
        """Who is pinned to ``servers`` (None: to every server) in the rollout's table."""
        table = self.plan.rebalance_table
        if table is None:
            return {}
        names = [(n, snap.id) for n, snap in self.plan.servers.items() if snap.id is not None]
        wanted = None if servers is None else [(n, i) for n, i in names if n in servers]
        _, pins = yield from read_pins(table, wanted, names)
        return pins

    def repin(self, moves: Sequence[tuple[str, str]], why: str) -> Flow[int]:
        """Re-pin each key to its server (``clear table`` + ``set table ... data.server_id``,
        pipelined); returns how many were accepted."""
        table = self.plan.rebalance_table
        if table is None or not moves:
            return 0
        # repin_each escapes each key once and joins the lines directly: 25,000 moves of a
        # 100,000-user table are built in a tenth of what Command.build per argument costs.
        commands: list[Command] = []
        for _key, clear, set_ in cmd.repin_each(
                table, [(key, self.plan.servers[target].id or 0) for key, target in moves]):
            commands += (clear, set_)
        replies = yield from send(commands, why)
        done = 0
        for i, (key, _) in enumerate(moves):
            if not any(isinstance(r, CommandError) for r in replies[2 * i:2 * i + 2]):
                self.moves[key] = self.moves.get(key, 0) + 1
                done += 1
        return done


def report_load(stage: str, loads: Mapping[str, float], unit: str, servers: Sequence[str],
                capacities: Mapping[str, float]) -> Flow[None]:
    """Emit the load of ``servers`` (those in service) for progress views and the report."""
    shown = {s: round(loads.get(s, 0.0), 1) for s in servers}
    yield from emit(Balance(stage, unit, shown, round(imbalance(loads, capacities, servers), 3)))
