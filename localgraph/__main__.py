"""``python -m localgraph``: start a local Graph and print how to reach it.

Once the server listens it prints one line per fact (``LOCALGRAPH_GRAPH_URL=...``; shell-friendly:
``eval "$(python -m localgraph ... | head -n 10)"`` is not needed, read the lines) or, with ``--json``,
one JSON object on one line. Then it serves until interrupted.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from localgraph.context import GraphSettings
from localgraph.generate import TenantShape
from localgraph.server import ConnectionInfo, LocalGraph


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localgraph", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200, help="users in the generated tenant (default 200)")
    parser.add_argument("--groups", type=int, help="groups (default users/10, at least 10)")
    parser.add_argument("--memberships", type=int, help="direct memberships (default users*10)")
    parser.add_argument(
        "--devices", type=int, help="Entra devices, about 80%% of them Intune-managed (default users/10)"
    )
    parser.add_argument("--seed", type=int, default=1, help="generation seed (same seed, same tenant)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--state-dir", type=Path, help="where to write the CA and certificates")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every Graph response")
    parser.add_argument("--token-lifetime", type=int, default=3599, help="access token lifetime, seconds")
    parser.add_argument("--no-budgets", action="store_true", help="do not enforce resource-unit budgets")
    parser.add_argument("--json", action="store_true", help="print the connection facts as one JSON line")
    args = parser.parse_args(argv)

    shape = TenantShape(
        users=args.users,
        groups=args.groups,
        memberships=args.memberships,
        devices=args.devices,
        seed=args.seed,
    )
    settings = GraphSettings(
        latency_ms=args.latency_ms, token_lifetime_s=args.token_lifetime, enforce_budgets=not args.no_budgets
    )

    def ready(info: ConnectionInfo) -> None:
        if args.json:
            print(json.dumps(asdict(info)), flush=True)
        else:
            for key, value in info.as_env().items():
                print(f"{key}={shlex.quote(value)}", flush=True)
            print("# serving; Ctrl+C stops", file=sys.stderr, flush=True)

    try:
        LocalGraph(shape, settings, state_dir=args.state_dir, port=args.port).serve_forever(ready)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
