"""``show servers conn`` (management.txt §9.3, since 2.2): used and idle connections per server.

The number of columns depends on ``nbthread`` (``idle_per_thr[N]``) and dynamic servers printed
fewer columns on 2.6 (reference §5.3), so columns are read by header name and missing ones are
None. The docs call it "mostly a debugging tool"; the column meanings are documented from 3.2.
"""

from __future__ import annotations

import attrs

from haproxyctl.errors import ProtocolError
from haproxyctl.models._fields import Column, Columns, RowView, opt_int, opt_str, row_view, snippet

__all__ = ["ServerConn", "parse_servers_conn"]


def _before_slash(raw: str) -> str:
    return raw.split("/", 1)[0]


def _after_slash(raw: str) -> str:
    if "/" not in raw:
        raise ValueError(raw)
    return raw.split("/", 1)[1]


@row_view
@attrs.frozen(repr=False)
class ServerConn(RowView):
    values: tuple[str, ...]

    backend = Column("bkname/svname", _before_slash)
    name = Column("bkname/svname", _after_slash)
    addr = Column("addr", opt_str)
    port = Column("port", opt_int)
    purge_delay = Column("purge_delay", opt_int)
    used_cur = Column("used_cur", opt_int)
    used_max = Column("used_max", opt_int)
    need_est = Column("need_est", opt_int)
    unsafe_idle = Column("unsafe_nb", opt_int)
    safe_idle = Column("safe_nb", opt_int)
    idle_limit = Column("idle_lim", opt_int)
    idle_cur = Column("idle_cur", opt_int)

    REPR = ("backend", "name", "used_cur", "idle_cur")


def parse_servers_conn(reply: str) -> list[ServerConn]:
    lines = reply.split("\n")
    if not lines or not lines[0].startswith("# bkname/svname "):
        raise ProtocolError("not a 'show servers conn' reply: no '# bkname/svname' header",
                            raw=snippet(reply))
    columns = Columns(lines[0][2:].split(" "))
    out: list[ServerConn] = []
    for line in lines[1:]:
        if line:
            row = line.split(" ")
            # Dynamic servers print fewer trailing columns on 2.6: pad them as "absent". Rows
            # can also be longer than the header (``idle_per_thr[N]`` is one name for N
            # values); either way the last position must be "" for columns absent from the
            # header (position -1, see Columns).
            row.extend([""] * max(0, len(columns.names) - len(row)))
            row.append("")
            out.append(ServerConn.from_row(row, columns).validate())
    return out
