"""Several tasks at once (``python -m devtools.concurrent_benchmark``): four full runs of 100,000-user tenants in one
connector process, as a Functions instance runs up to ``batchSize`` queue messages concurrently.

Each task reads its own tenant: four local Graphs (own processes, seeds 7 to 10, Graph's costs: 8,000 RU per 10 s
each, 429 when exceeded, 300 ms latency), as four tasks of four customers' tenants would (tasks of the same
tenant would share that tenant's budget: Graph throttles per application and tenant). Azurite runs in its own
process; the connector runs in a fresh child process, first one task alone (the single-run reference), then
the four together. Printed: each run's wall time and its ratio to the single run, the process's CPU time and
peak RSS, and the targets (peak RSS under 1 GB, each run within 1.5 x the single run's time; a Flex
Consumption instance of 2 GB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devtools.benchmark import _process_rss_mb, _reset_peak_rss, task_definition

TARGET_PEAK_RSS_MB = 1024.0
TARGET_SLOWDOWN = 1.5


def _start_graphs(args: argparse.Namespace) -> list[tuple[subprocess.Popen[str], Any]]:
    from localgraph.server import ConnectionInfo

    graphs = []
    for seed in range(7, 7 + args.tasks):
        command = [
            sys.executable, "-m", "localgraph", "--json", "--users", str(args.users),
            "--groups", str(args.users // 10), "--memberships", str(args.users * 10),
            "--latency-ms", str(args.latency_ms), "--seed", str(seed),
        ]  # fmt: skip
        graphs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    started = []
    for graph in graphs:
        assert graph.stdout is not None
        line = graph.stdout.readline()
        if not line:
            raise RuntimeError("a local Graph did not start")
        started.append((graph, ConnectionInfo(**json.loads(line))))
    return started


def _usage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    from devtools.azurite import Azurite
    from shared.config import parse_config
    from shared.extract.runner import run_task
    from shared.services import Services
    from shared.settings import Settings
    from shared.storage.queues import RunRequest

    launched = time.perf_counter()
    graphs = _start_graphs(args)
    ready_s = time.perf_counter() - launched
    try:
        with tempfile.TemporaryDirectory() as folder, Azurite() as azurite:
            bundle = Path(folder) / "ca.pem"  # the four local Graphs' CAs
            bundle.write_text("".join(Path(info.ca_file).read_text() for _, info in graphs))
            environ = {"AzureWebJobsStorage": azurite.connection_string, "CONNECTOR_CA_BUNDLE": str(bundle)}
            connectors, tasks = [], []
            for number, (_, info) in enumerate(graphs):
                environ[f"BENCH_SECRET_{number}"] = info.client_secret
                connectors.append(info.connector(f"tenant{number}", f"BENCH_SECRET_{number}"))
                tasks.append(task_definition(f"task{number}", f"tenant{number}"))
            tasks.append(task_definition("single", "tenant0"))
            config = parse_config({"connectors": connectors, "tasks": tasks})
            services = Services(Settings.from_environ(environ), environ=environ)
            services.storage.ensure()

            async def timed(task: str) -> float:
                started = time.perf_counter()
                outcome = await run_task(services, RunRequest(task=task), config=config)
                if outcome.record.status != "succeeded":
                    raise RuntimeError(f"{task} failed: {outcome.record.error}")
                return time.perf_counter() - started

            cpu_before, _ = _usage()
            single_s = await timed("single")
            cpu_single, rss_single = _usage()
            _reset_peak_rss()  # the four runs' own peak (Linux)
            started = time.perf_counter()
            walls = await asyncio.gather(*(timed(f"task{n}") for n in range(len(graphs))))
            concurrent_s = time.perf_counter() - started
            cpu_after, rss_after = _usage()
        return {
            "users": args.users,
            "tasks": len(graphs),
            "latency_ms": args.latency_ms,
            "graphs_ready_s": ready_s,
            "graphs_peak_rss_mb": [_process_rss_mb(graph.pid, "VmHWM") for graph, _ in graphs],
            "single_wall_s": single_s,
            "single_cpu_s": cpu_single - cpu_before,
            "single_peak_rss_mb": rss_single,
            "walls_s": walls,
            "concurrent_wall_s": concurrent_s,
            "concurrent_cpu_s": cpu_after - cpu_single,
            "peak_rss_mb": rss_after,
        }
    finally:
        for graph, _ in graphs:
            graph.terminate()
        for graph, _ in graphs:
            try:
                graph.wait(timeout=15)
            except subprocess.TimeoutExpired:
                graph.kill()


def _report(result: dict[str, Any]) -> bool:
    single = result["single_wall_s"]
    print(
        f"\n{result['tasks']} tasks, each on its own tenant of {result['users']:,} users "
        f"({result['users'] // 10:,} groups, {result['users'] * 10:,} memberships), latency "
        f"{result['latency_ms']:.0f} ms, 8,000 RU / 10 s per tenant; local Graphs ready in "
        f"{result['graphs_ready_s']:.0f} s ({', '.join(f'{m:.0f}' for m in result['graphs_peak_rss_mb'])} MB)"
    )
    print(
        f"  one run alone:      wall {single:6.1f} s   CPU {result['single_cpu_s']:6.1f} s   "
        f"peak RSS {result['single_peak_rss_mb']:.0f} MB"
    )
    print(
        f"  {result['tasks']} runs together:  wall {result['concurrent_wall_s']:6.1f} s   "
        f"CPU {result['concurrent_cpu_s']:6.1f} s   peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    for number, wall in enumerate(result["walls_s"]):
        print(f"    task{number}: {wall:6.1f} s ({wall / single:.2f} x the single run)")
    worst = max(result["walls_s"]) / single
    rss_ok = result["peak_rss_mb"] < TARGET_PEAK_RSS_MB
    time_ok = worst <= TARGET_SLOWDOWN
    print("\nTargets:")
    print(
        f"  [{'met' if rss_ok else 'NOT met'}] peak RSS < {TARGET_PEAK_RSS_MB:.0f} MB: {result['peak_rss_mb']:.0f} MB"
    )
    print(
        f"  [{'met' if time_ok else 'NOT met'}] each run within {TARGET_SLOWDOWN} x the single run: worst "
        f"{worst:.2f} x"
    )
    return rss_ok and time_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.concurrent_benchmark", description=__doc__.splitlines()[0]
    )
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "child"])
    parser.add_argument(
        "--users", type=int, default=100_000, help="users per tenant (groups /10, memberships x10)"
    )
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.mode == "child":
        print(json.dumps(asyncio.run(_child(args))), flush=True)
        return 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [
        sys.executable, "-m", "devtools.concurrent_benchmark", "child", "--users", str(args.users),
        "--tasks", str(args.tasks), "--latency-ms", str(args.latency_ms),
    ]  # fmt: skip
    print(f"starting {args.tasks} local Graphs of {args.users:,} users ...", file=sys.stderr, flush=True)
    output = subprocess.run(command, capture_output=True, text=True, env=env)
    if output.returncode != 0:
        print(output.stderr, file=sys.stderr)
        return 1
    result = json.loads(output.stdout.strip().splitlines()[-1])
    _report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
