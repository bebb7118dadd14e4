"""Benchmark at the scale of the largest tenants (``make bench-xl``): 1,000,000 users, 100,000 groups and
10,000,000 memberships.

The same measurement as ``make bench`` (:mod:`devtools.benchmark`: the local Graph in its own process with
Graph's costs, the large-tenant budget of 8,000 RU per 10 s with 429 when exceeded, and 300 ms latency;
Azurite in its own process; the connector in a fresh child process), at ten times its size: a full run of an
incremental task, then an incremental run after 0.1% of the objects changed. Printed: the figures of both
runs, the local Graph's build time and memory, both floors (as before, and with the chain's measured service
time added), and each target of the read side at this scale, met or not and by how much.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from devtools.benchmark import _child_command, _report, floors

TARGETS = {
    "full_ratio_with_service": 1.2,  # wall / the floor with the chain's service time
    "full_peak_rss_mb": 400.0,
    "incremental_units_share": 0.005,  # of the full run's resource units
    "incremental_wall_s": 60.0,
}


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each target."""
    full, incremental = result["runs"]["full"], result["runs"]["incremental"]
    honest = floors(result, "full")
    share = incremental["resource_units"] / max(1, full["resource_units"])
    return [
        (
            f"full run <= {TARGETS['full_ratio_with_service']} x the floor with service time",
            f"{honest['ratio_with_service']:.2f} x ({full['wall_s']:.0f} s / {honest['floor_with_service_s']:.0f} s)",
            honest["ratio_with_service"] <= TARGETS["full_ratio_with_service"],
        ),
        (
            f"full run peak RSS < {TARGETS['full_peak_rss_mb']:.0f} MB",
            f"{full['peak_rss_mb']:.0f} MB",
            full["peak_rss_mb"] < TARGETS["full_peak_rss_mb"],
        ),
        (
            f"incremental RU <= {100 * TARGETS['incremental_units_share']:.1f}% of the full run's",
            f"{100 * share:.2f}% ({incremental['resource_units']:,} / {full['resource_units']:,})",
            share <= TARGETS["incremental_units_share"],
        ),
        (
            f"incremental wall < {TARGETS['incremental_wall_s']:.0f} s",
            f"{incremental['wall_s']:.1f} s",
            incremental["wall_s"] < TARGETS["incremental_wall_s"],
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.benchmark_xl", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, help="default: users / 10")
    parser.add_argument("--memberships", type=int, help="default: users x 10")
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--churn", type=float, default=0.001, help="share of objects changed (default 0.1%%)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    groups = args.groups if args.groups is not None else args.users // 10
    memberships = args.memberships if args.memberships is not None else args.users * 10
    print(
        f"running {args.users:,} users (the local Graph builds its tenant first) ...",
        file=sys.stderr,
        flush=True,
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    output = subprocess.run(
        _child_command(args, args.users, groups, memberships), capture_output=True, text=True, env=env
    )
    if output.returncode != 0:
        print(output.stderr, file=sys.stderr)
        return 1
    result = json.loads(output.stdout.strip().splitlines()[-1])
    _report(result)
    print("\nTargets:")
    for name, measured, met in targets(result):
        print(f"  [{'met' if met else 'NOT met'}] {name}: {measured}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
