"""The planner: which servers go in which batch, and whether the backend can afford it. Pure.

Input is a snapshot of the backend (servers with their exact admin state, weights and checks,
the backend row, the stick tables) taken once before anything changes; output is a
:class:`Plan`, or :class:`PlanError` naming why the rollout must not start:

- **capacity**: a batch takes its servers out of load balancing; servers already DOWN, in maint
  or in drain are out too. ``max_unavailable`` caps the sum, so a rollout never starts while the
  backend is already degraded (the runner re-checks before every batch).
- **persistence**: without cookie or stick-table persistence, a rolling update sends each
  request of a user to any server, old or new: users flip between versions on every click.
  ``rolling`` is refused there (unless explicitly allowed) and ``halves`` suggested.
- **mixed weights**: a static algorithm (``static-rr``, map-based hashing) accepts only weights
  0% and 100% (reference §3.1), so ``ramp`` is refused there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from haproxyctl import commands as cmd
from haproxyctl.configcheck import Finding
from haproxyctl.errors import HAProxyError
from haproxyctl.models.server import Server
from haproxyctl.models.stat import BackendStat
from haproxyctl.models.state import AdminState
from haproxyctl.models.table import TableInfo
from haproxyctl.protocol.encode import Command, ServerRef
from haproxyctl.rollout.options import RolloutOptions

__all__ = [
    "Persistence",
    "Plan",
    "PlanError",
    "ServerSnapshot",
    "balance_plan",
    "batches_for",
    "detect_persistence",
    "make_plan",
    "ramp_commands",
    "ramp_weights",
    "ready_commands",
    "restore_commands",
    "return_commands",
    "switch_commands",
]

_STATIC_ALGOS = ("static-rr", "source", "uri", "url_param", "hdr", "rdp-cookie", "hash")


class PlanError(HAProxyError):
    """The rollout must not start; nothing was changed."""

    exit_code = 1


@attrs.frozen
class ServerSnapshot:
    """A server as it was before the rollout: what ``abort`` restores."""

    name: str
    id: int | None
    admin_state: AdminState
    weight: int | None
    initial_weight: int | None
    has_checks: bool
    available: bool  #: in load balancing and not DOWN
    status: str
    address: str | None
    port: int | None

    @classmethod
    def of(cls, server: Server) -> ServerSnapshot:
        available = (server.admin_state is AdminState.READY and server.up
                     and server.stat.status_word != "DOWN")
        return cls(
            name=server.name, id=server.id, admin_state=server.admin_state,
            weight=server.weight,
            initial_weight=server.initial_weight,
            has_checks=server.has_checks and server.checks_enabled, available=available,
            status=server.status, address=server.address, port=server.port,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "admin_state": self.admin_state.value,
                "weight": self.weight,
                "initial_weight": self.initial_weight, "has_checks": self.has_checks,
                "available": self.available, "status": self.status, "address": self.address,
                "port": self.port}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServerSnapshot:
        return cls(name=d["name"], id=d.get("id"), admin_state=AdminState(d["admin_state"]),
                   weight=d["weight"],
                   initial_weight=d["initial_weight"], has_checks=d["has_checks"],
                   available=d["available"], status=d["status"], address=d["address"],
                   port=d["port"])


@attrs.frozen
class Persistence:
    """What keeps a user on one server, as far as the runtime API can tell."""

    cookie: str | None
    tables: tuple[str, ...]

    @property
    def kind(self) -> str:
        if self.cookie and self.tables:
            return "cookie+stick-table"
        if self.cookie:
            return "cookie"
        if self.tables:
            return "stick-table"
        return "none"

    @property
    def present(self) -> bool:
        return self.kind != "none"


@attrs.frozen
class Plan:
    """What a rollout will do. Serialisable, so the journal can hold it for ``--resume``."""

    backend: str
    strategy: str
    batches: tuple[tuple[str, ...], ...]
    servers: Mapping[str, ServerSnapshot]
    skipped: tuple[str, ...]
    max_unavailable: int
    persistence: str
    options: RolloutOptions
    notes: tuple[str, ...] = ()
    #: The stick table whose users are re-spread onto servers coming back (None: no rebalance).
    rebalance_table: str | None = None
    #: The backend's balance algorithm (``show stat`` ``algo``), None in journals before it.
    algo: str | None = None

    @property
    def drain_grace(self) -> float:
        """How long a batch stays in drain before maint (``--drain-timeout``, else automatic).

        The grace lets users pinned to a server finish on it, but it ends early only when the
        server has been quiet for a second, which a busy server never is: under load it always
        lasts the whole timeout, and the page views cut at maint are the same whenever maint
        comes. When haproxyctl moves the users itself (steering weights, re-pins), keeping
        them on a server about to leave only makes the others' load uneven, so the automatic
        grace is 0 then; 10 s otherwise (no persistence, ``--no-rebalance``)."""
        if self.options.drain_timeout is not None:
            return self.options.drain_timeout
        return 0.0 if self.moves_users is not None else 10.0

    @property
    def static_algo(self) -> bool:
        """Weights other than 0% and 100% are refused (static-rr, map-based hashing)."""
        return (self.algo or "") in _STATIC_ALGOS

    @property
    def moves_users(self) -> str | None:
        """How haproxyctl keeps load even while it moves users: "stick" (re-pins entries of
        ``rebalance_table``), "cookie" (steering weights and maint pulses), or None (no
        persistence, or ``--no-rebalance``). A backend with both a cookie and a stick table
        routes by the cookie first (``http_ana.c`` assigns the server before the stick rules
        run), so it is treated as a cookie backend."""
        if not self.options.rebalance:
            return None
        if self.persistence.startswith("cookie"):
            return "cookie"
        if self.rebalance_table is not None:
            return "stick"
        return None

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(s for batch in self.batches for s in batch)

    def ref(self, server: str) -> ServerRef:
        return ServerRef(self.backend, server)

    def commands(self) -> list[tuple[str, list[Command]]]:
        """The commands each step sends, in order, for ``--dry-run`` (the flow sends the very
        same lists: both use the helpers below)."""
        steps: list[tuple[str, list[Command]]] = []
        ramped = self.options.ramp > 0
        ramp_note = f", ramped over {self.options.ramp:g}s" if ramped else ""
        if self.strategy == "halves":
            a, b = self.batches
            steps += _take_out(self, a, "half A")
            steps += _bring_back(self, a, "half A")
            steps.append(("switch: half A into service and half B out, in one write",
                          switch_commands(self, a, b)))
            steps += _take_out(self, b, "half B", already_draining=True)
            steps += _bring_back(self, b, "half B")
            steps.append((f"half B: ready with the original weight{ramp_note}",
                          ready_commands(self, b, ramped=ramped)))
            steps += _ramp_steps(self, b, "half B")
            return steps
        for k, batch in enumerate(self.batches, 1):
            label = f"batch {k}/{len(self.batches)}"
            if self.moves_users is not None:
                steps.append((f"{label}: measure the load, then set temporary weights so its "
                              "users land on servers of one version (decided at run time)",
                              []))
            steps += _take_out(self, batch, label)
            if self.moves_users == "stick":
                steps.append((f"{label}: re-pin its users in stick table "
                              f"{self.rebalance_table} (clear table/set table per key, "
                              "decided at run time), restore the weights once it has no "
                              "session", []))
            steps += _bring_back(self, batch, label)
            weight_note = ("the original weight" if self.moves_users != "cookie" else
                           "the original weight once the whole batch is back (a server "
                           "ready earlier keeps its steering weight until then)")
            steps.append((f"{label}: ready with {weight_note}{ramp_note}",
                          ready_commands(self, batch, ramped=ramped)))
            steps += _ramp_steps(self, batch, label)
        if self.moves_users == "stick":
            steps.append(("end: even out the users: re-pin from the busiest servers to the "
                          "emptiest (decided at run time)", []))
        elif self.moves_users == "cookie":
            steps.append(("end: even out the users: short maint pulses on the busiest servers "
                          "while weights steer their users to the emptiest (decided at run "
                          "time)", []))
        return steps

    def weight(self, server: str) -> int:
        """The weight to restore: the one the server had before the rollout."""
        w = self.servers[server].weight
        return w if w is not None else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "strategy": self.strategy,
            "batches": [list(b) for b in self.batches],
            "servers": {n: s.to_dict() for n, s in self.servers.items()},
            "skipped": list(self.skipped), "max_unavailable": self.max_unavailable,
            "persistence": self.persistence, "options": _options_dict(self.options),
            "notes": list(self.notes), "rebalance_table": self.rebalance_table,
            "algo": self.algo,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        o = dict(d["options"])
        if o.get("groups") is not None:
            o["groups"] = tuple(tuple(g) for g in o["groups"])
        return cls(
            backend=d["backend"], strategy=d["strategy"],
            batches=tuple(tuple(b) for b in d["batches"]),
            servers={n: ServerSnapshot.from_dict(s) for n, s in d["servers"].items()},
            skipped=tuple(d["skipped"]), max_unavailable=d["max_unavailable"],
            persistence=d["persistence"], options=RolloutOptions(**o),
            notes=tuple(d.get("notes", ())), rebalance_table=d.get("rebalance_table"),
            algo=d.get("algo"),
        )


def _options_dict(o: RolloutOptions) -> dict[str, Any]:
    d = attrs.asdict(o)
    if d.get("groups") is not None:
        d["groups"] = [list(g) for g in d["groups"]]
    return d


def _take_out(plan: Plan, batch: Sequence[str], label: str, *,
              already_draining: bool = False) -> list[tuple[str, list[Command]]]:
    refs = [plan.ref(s) for s in batch]
    steps: list[tuple[str, list[Command]]] = []
    if not already_draining:
        grace = (f"pinned users still served for up to {plan.drain_grace:g}s"
                 if plan.drain_grace > 0 else
                 "no grace: haproxyctl moves the pinned users itself")
        steps.append((f"{label}: drain ({grace})", [cmd.set_state(r, "drain") for r in refs]))
    steps.append((f"{label}: maint, then wait for 0 sessions and an empty queue (up to "
                  f"{plan.options.sessions_timeout:g}s)",
                  [cmd.set_state(r, "maint") for r in refs]))
    if plan.options.kill_after is not None:
        steps.append((f"{label}: if sessions remain after {plan.options.kill_after:g}s",
                      [cmd.shutdown_sessions(r) for r in refs]))
    return steps


def _bring_back(plan: Plan, batch: Sequence[str], label: str
                ) -> list[tuple[str, list[Command]]]:
    return [(f"{label}: run the update, then drain and force down, so fresh health checks "
             f"must pass (up to {plan.options.health_timeout:g}s; {plan.options.settle:g}s "
             "settle for servers without checks)", return_commands(plan, batch))]


def ramp_commands(plan: Plan, servers: Sequence[str], step: int) -> list[Command]:
    """The weights of ramp step ``step`` (1..3; step 0 is sent with ``ready``)."""
    return [cmd.set_weight(plan.ref(s), ramp_weights(plan.weight(s))[step]) for s in servers]


def _ramp_steps(plan: Plan, batch: Sequence[str], label: str
                ) -> list[tuple[str, list[Command]]]:
    if plan.options.ramp <= 0:
        return []
    n = len(ramp_weights(1)) - 1
    return [(f"{label}: ramp step {k}/{n} after {plan.options.ramp / n:g}s",
             ramp_commands(plan, batch, k)) for k in range(1, n + 1)]


def return_commands(plan: Plan, servers: Sequence[str]) -> list[Command]:
    """Out of maint into drain, so health checks run again while no new user is sent there.

    For a checked server ``state drain`` is followed by ``health down`` in the same write:
    leaving maint, HAProxy starts the server optimistically at health ``rise`` without a check
    (with ``fall 1`` that is already full health, reference §3.4), so pinned users could reach
    an app still starting. Forced down, the new version must pass ``rise`` fresh checks first.
    """
    out: list[Command] = []
    for s in servers:
        out.append(cmd.set_state(plan.ref(s), "drain"))
        if plan.servers[s].has_checks:
            out.append(cmd.set_health(plan.ref(s), "down"))
    return out


def ready_commands(plan: Plan, servers: Sequence[str], *, ramped: bool,
                   weights: Mapping[str, int] | None = None) -> list[Command]:
    """Weight first (the original one, the first ramp step, or the temporary weight given in
    ``weights``), then the original state: one write, so the server never takes users with
    another weight."""
    out: list[Command] = []
    for s in servers:
        weight = plan.weight(s)
        if weights is not None and s in weights:
            weight = weights[s]
        elif ramped:
            weight = ramp_weights(weight)[0]
        out.append(cmd.set_weight(plan.ref(s), weight))
        out.append(cmd.set_state(plan.ref(s), plan.servers[s].admin_state))
    return out


def restore_commands(plan: Plan, servers: Sequence[str]) -> list[Command]:
    """Back to the weight and state a server had before the rollout (restore, abort)."""
    out: list[Command] = []
    for s in servers:
        out.append(cmd.set_weight(plan.ref(s), plan.weight(s)))
        out.append(cmd.set_state(plan.ref(s), plan.servers[s].admin_state))
    return out


def switch_commands(plan: Plan, half_a: Sequence[str], half_b: Sequence[str]) -> list[Command]:
    """Half A into service and half B out of it, to be sent as one pipelined write."""
    return (ready_commands(plan, half_a, ramped=False)
            + [cmd.set_state(plan.ref(s), "drain") for s in half_b])


def ramp_weights(weight: int, steps: int = 4) -> list[int]:
    """Weights for a ramp back to ``weight``: e.g. 100 -> [25, 50, 75, 100]; a positive
    weight never ramps through 0 (which would mean "no traffic"), and 0 stays 0."""
    if weight <= 0:
        return [0] * steps
    return [max(1, math.ceil(weight * k / steps)) for k in range(1, steps + 1)]


def detect_persistence(backend: BackendStat, tables: Sequence[TableInfo]) -> Persistence:
    """Cookie persistence shows as the backend row's ``cookie`` column; a stick table declared in
    the backend is named after it. (``stick on`` rules pointing at another table are invisible
    to the runtime API: pass the persistence explicitly then.)"""
    return Persistence(cookie=backend.cookie,
                       tables=tuple(t.name for t in tables if t.name == backend.name))


def batches_for(names: Sequence[str], options: RolloutOptions
                ) -> tuple[tuple[str, ...], ...]:
    """The batches ``options`` make of ``names`` (in order)."""
    if options.strategy == "halves":
        if len(names) < 2:
            raise PlanError(f"halves needs at least 2 servers, found {len(names)}")
        half = math.ceil(len(names) / 2)
        return (tuple(names[:half]), tuple(names[half:]))
    if options.groups is not None:
        return options.groups
    size = options.batch_size
    if options.percent is not None:
        size = max(1, math.floor(len(names) * options.percent / 100))
    size = size or 1
    return tuple(tuple(names[i:i + size]) for i in range(0, len(names), size))


# Informational findings worth a note before a rollout (the others describe the usual setup).
_NOTED_INFO = frozenset({"ignore-persist", "stick-match-only", "stick-store-response",
                         "cookie-preserve"})


def make_plan(
    backend: str,
    servers: Sequence[Server],
    backend_stat: BackendStat,
    tables: Sequence[TableInfo],
    options: RolloutOptions,
    *,
    persistence: str | None = None,
    config_findings: Sequence[Finding] = (),
) -> Plan:
    """Plan a rollout of ``backend`` (see module docstring). Raises PlanError.

    ``config_findings`` come from reading HAProxy's configuration (``configcheck``): an error
    (``option persist``, ``force-persist``: users pinned to a server in maint keep reaching
    it, so requests fail while it is updated) refuses the rollout; warnings become notes."""
    if not servers:
        raise PlanError(f"backend {backend!r} has no servers")
    errors = [f for f in config_findings if f.severity == "error"]
    if errors:
        raise PlanError("the HAProxy configuration defeats maint for this backend, so a "
                        "rollout cannot drain it without failed requests: " + "; ".join(
                            f"line {f.line} ({f.section}): {f.message}" for f in errors))
    snaps = {s.name: ServerSnapshot.of(s) for s in servers}
    notes: list[str] = [f"configuration line {f.line} ({f.section}): {f.message}"
                        for f in config_findings
                        if f.severity == "warning" or f.code in _NOTED_INFO]
    detected = detect_persistence(backend_stat, tables)
    kind = persistence or detected.kind
    disabled = [n for n, s in snaps.items() if s.admin_state is not AdminState.READY]
    skipped: list[str] = []
    if options.include_disabled:
        candidates = list(snaps)
    else:
        candidates = [n for n in snaps if n not in disabled]
        skipped = disabled
        for n in disabled:
            notes.append(f"{n} is in {snaps[n].admin_state.value} and is skipped (it keeps the "
                         "old version; pass --include-disabled to update it)")
    if options.groups is not None:
        unknown = [n for g in options.groups for n in g if n not in snaps]
        if unknown:
            raise PlanError(f"--groups names servers that backend {backend!r} does not have: "
                            f"{', '.join(unknown)}")
        listed = [n for g in options.groups for n in g]
        dupes = sorted({n for n in listed if listed.count(n) > 1})
        if dupes:
            raise PlanError(f"--groups lists {', '.join(dupes)} more than once")
        named_disabled = [n for n in listed if n in skipped]
        if named_disabled:
            raise PlanError(
                f"--groups names {', '.join(named_disabled)}, which "
                f"{'is' if len(named_disabled) == 1 else 'are'} in maint or drain; pass "
                "--include-disabled to update "
                f"{'it' if len(named_disabled) == 1 else 'them'}, or leave "
                f"{'it' if len(named_disabled) == 1 else 'them'} out")
        missing = [n for n in candidates if n not in listed]
        if missing:
            notes.append(f"not in --groups, not updated: {', '.join(missing)}")
    if not candidates:
        raise PlanError(f"backend {backend!r} has no server to update")
    batches = batches_for(candidates, options)
    biggest = max(len(b) for b in batches)
    max_unavailable = options.max_unavailable if options.max_unavailable is not None else biggest
    total = len(snaps)
    for k, batch in enumerate(batches, 1):
        out_already = [n for n, s in snaps.items() if not s.available and n not in batch]
        unavailable = len(out_already) + len(batch)
        if unavailable > max_unavailable:
            extra = (f" ({', '.join(out_already)} already out of service)" if out_already else "")
            raise PlanError(
                f"batch {k} would leave {unavailable} of {total} servers of {backend!r} out of "
                f"service{extra}, more than --max-unavailable {max_unavailable}; use smaller "
                "batches or raise --max-unavailable")
        if unavailable >= total:
            raise PlanError(f"batch {k} would take every server of {backend!r} out of service")
    if options.strategy == "rolling" and kind == "none" and not options.allow_version_flips:
        raise PlanError(
            f"backend {backend!r} has no cookie or stick-table persistence: during a rolling "
            "update each request may go to an old or a new server, so users would flip between "
            "versions. Use --strategy halves (switches the whole pool at once), add persistence,"
            " or pass --allow-version-flips")
    if options.ramp > 0 and (backend_stat.algo or "") in _STATIC_ALGOS:
        raise PlanError(f"--ramp needs a dynamic balance algorithm; {backend!r} uses "
                        f"{backend_stat.algo}, which only accepts weights 0% and 100%")
    unchecked = [n for n in candidates if not snaps[n].has_checks]
    if unchecked:
        notes.append(f"no health check on {', '.join(unchecked)}: after the update they wait "
                     f"{options.settle:g}s (--settle) instead of passing checks")
    rebalance_table = None
    if options.rebalance and detected.tables and not kind.startswith("cookie"):
        rebalance_table = detected.tables[0]
        notes.append(f"stick table {rebalance_table}: the users of each batch are re-pinned "
                     "onto servers of one version, the emptiest first, while temporary "
                     "weights steer re-dispatched users there too; at the end every server's "
                     "users are evened out (--no-rebalance to leave them where maint sends "
                     "them)")
    elif options.rebalance and kind.startswith("cookie"):
        notes.append("cookie persistence: while a batch is out, temporary weights send its "
                     "users to servers of one version, in proportion to their measured load; "
                     "at the end, short maint pulses on the busiest servers even out the users "
                     "(cookies cannot be rewritten from the CLI; --no-rebalance to skip)")
    elif kind != "none" and options.strategy == "rolling" and len(batches) > 1:
        notes.append(f"--no-rebalance with {kind} persistence: users moved off a batch are "
                     "load balanced over every server in service, old and new, and stay where "
                     "they land; a user with parallel requests may see the new version and "
                     "then the old one (see docs/rollout.md)")
    if options.strategy == "halves" and kind != "none":
        notes.append(f"halves on a backend with {kind} persistence: pinned users stay on "
                     "half B until the switch")
    return Plan(backend=backend, strategy=options.strategy, batches=batches, servers=snaps,
                skipped=tuple(skipped), max_unavailable=max_unavailable, persistence=kind,
                options=options, notes=tuple(notes), rebalance_table=rebalance_table,
                algo=backend_stat.algo)


def balance_plan(backend: str, servers: Sequence[Server], backend_stat: BackendStat,
                 tables: Sequence[TableInfo], *, tolerance: float, timeout: float) -> Plan:
    """The plan ``haproxyctl balance`` works on: no batches, only what moving users needs
    (the servers with their weights and states, the persistence, the stick table to re-pin,
    the balance algorithm and the even-out's tolerance and timeout). Servers not ready are
    ``skipped``: a pulse's steering leaves them alone. Raises PlanError without
    persistence (every request is then balanced on its own: nothing to even out)."""
    detected = detect_persistence(backend_stat, tables)
    snaps = {s.name: ServerSnapshot.of(s) for s in servers}
    skipped = tuple(n for n, s in snaps.items() if s.admin_state is not AdminState.READY)
    cookie = detected.kind.startswith("cookie")
    options = RolloutOptions(batch_size=1, rebalance=True, balance_tolerance=tolerance,
                             balance_timeout=timeout, max_unavailable=max(len(snaps), 1))
    plan = Plan(backend=backend, strategy=options.strategy, batches=(), servers=snaps,
                skipped=skipped, max_unavailable=options.max_unavailable or 1,
                persistence=detected.kind, options=options,
                rebalance_table=None if cookie or not detected.tables else detected.tables[0],
                algo=backend_stat.algo)
    if plan.moves_users is None:
        raise PlanError(f"backend {backend!r} has no cookie or stick-table persistence: every "
                        "request is load balanced on its own, there is nothing to even out")
    return plan

