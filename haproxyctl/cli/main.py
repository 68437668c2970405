"""``haproxyctl`` entry point: parse, dispatch, and turn every error into one line and an exit
code (0 ok, 1 refused, 2 usage, 3 connection, 4 timeout, 5 unexpected reply, 6 rollout failed
part-way, 130 interrupted)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from haproxyctl.cli.handlers import HANDLERS, demo
from haproxyctl.cli.parser import build_parser
from haproxyctl.cli.render import Output
from haproxyctl.client import Client
from haproxyctl.errors import HAProxyError

__all__ = ["main"]

EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(json_mode=args.json, quiet=args.quiet)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="haproxyctl: %(message)s")
    try:
        if args.timeout <= 0:
            parser.error("--timeout must be > 0")
        if args.handler == "demo":
            return demo(args, out)
        with Client(args.socket, timeout=args.timeout) as client:
            return HANDLERS[args.handler](client, args, out)
    except HAProxyError as exc:
        out.error(str(exc))
        if args.json:
            out.json({"error": {"type": type(exc).__name__, "message": str(exc),
                                "exit_code": exc.exit_code}})
        return exc.exit_code
    except KeyboardInterrupt:
        out.error("interrupted")
        if args.json:
            out.json({"error": {"type": "Interrupted", "message": "interrupted",
                                "exit_code": EXIT_INTERRUPTED}})
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (`haproxyctl servers | head`): not an error worth a traceback.
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
