"""Benchmark (``make bench``): a full read then an incremental read of a large tenant, with Graph's costs.

The local Graph runs in its own process with Graph's documented cost model: resource units per request,
the large-tenant budget of 8,000 RU per 10 s (429 with Retry-After when exceeded) and a per-request latency
(300 ms by default). Azurite runs in its own process too, so the connector process's CPU time and peak
memory are the connector's alone. Each tenant size runs in a fresh child process, so peak RSS is per size.

Printed per run: Graph HTTP calls and batched sub-requests, resource units, wall and CPU seconds, peak RSS,
records per second, and the physical floor for that tenant: the larger of (resource units / budget rate)
and (the longest chain of pages that must be fetched one after another x latency), with the ratio of the
measured wall time to it; and the resource units against the fewest the read could cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAGE = 999
MEMBER_PAGES = "GET /groups/{id}/members"
BUDGET_RU_PER_10S = 8000  # tenants over 500 users


def _child_command(args: argparse.Namespace, users: int, groups: int, memberships: int) -> list[str]:
    return [
        sys.executable, "-m", "devtools.benchmark", "child",
        "--users", str(users), "--groups", str(groups), "--memberships", str(memberships),
        "--latency-ms", str(args.latency_ms), "--churn", str(args.churn),
    ]  # fmt: skip


def task_definition(name: str, connector: str) -> dict[str, Any]:
    """The benchmark's task: an incremental task reading users (seven attributes) and groups with members."""
    return {
        "name": name,
        "connector": connector,
        "mode": "incremental",
        "mappings_type": "identity_and_access",
        "users": {
            "mappings": [
                {"external": "userPrincipalName", "local": "login"},
                {"external": "displayName", "local": "name"},
                {"external": "mail", "local": "email"},
                {"external": "department", "local": "department"},
                {"external": "jobTitle", "local": "title"},
                {"external": "accountEnabled", "local": "enabled"},
                {"external": "onPremisesExtensionAttributes.extensionAttribute1", "local": "ext1"},
            ],
            "target_template": "account",
            "target_folder": "accounts",
        },
        "groups": {
            "mappings": [
                {"external": "displayName", "local": "name"},
                {"external": "members", "local": "members"},
            ],
            "target_template": "group",
            "target_folder": "groups",
        },
    }


@dataclass
class Floor:
    chain_pages: int
    min_units: int
    user_pages: int = 0
    group_chain_pages: int = 0  # the largest group's: its groups page, then its member pages


def floor_for(users: int, group_sizes: list[int], groups: int) -> Floor:
    user_pages = math.ceil(users / PAGE)
    group_pages = max(1, math.ceil(groups / PAGE))
    largest = max(group_sizes or [0])
    # A group's member pages can only start once its groups page has arrived; the largest group sits on
    # the first page in the generated tenant, so its chain is 1 + its pages.
    group_chain = 1 + max(1, math.ceil(largest / PAGE))
    chain = max(user_pages, group_chain)
    units = user_pages * 1 + group_pages * 1  # list with $select: 2-1 and 1-1 (min 1)
    units += sum(max(1, math.ceil(size / PAGE)) * 2 for size in group_sizes)  # members: 3-1 per page
    return Floor(chain, units, user_pages, group_chain)


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    from devtools.azurite import Azurite
    from localgraph.client import ControlClient
    from localgraph.server import ConnectionInfo
    from shared.config import parse_config
    from shared.extract.runner import run_task
    from shared.services import Services
    from shared.settings import Settings
    from shared.storage.queues import RunRequest

    launched = time.perf_counter()
    graph = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localgraph",
            "--json",
            "--users",
            str(args.users),
            "--groups",
            str(args.groups),
            "--memberships",
            str(args.memberships),
            "--latency-ms",
            str(args.latency_ms),
            "--seed",
            "7",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert graph.stdout is not None
        line = graph.stdout.readline()
        if not line:
            raise RuntimeError("the local Graph did not start")
        info = ConnectionInfo(**json.loads(line))
        graph_ready_s = time.perf_counter() - launched
        graph_ready_rss_mb = _process_rss_mb(graph.pid, "VmHWM")
        graph_ready_cpu_s = _process_cpu_s(graph.pid)
        control = ControlClient(info, timeout=600)
        group_sizes = control.tenant_info()[
            "group_sizes"
        ]  # not the groups themselves: keep this process lean
        with Azurite() as azurite:
            environ = {
                "AzureWebJobsStorage": azurite.connection_string,
                "BENCH_SECRET": info.client_secret,
                "CONNECTOR_CA_BUNDLE": info.ca_file,
            }
            services = Services(Settings.from_environ(environ), environ=environ)
            services.storage.ensure()
            config = parse_config(
                {
                    "connectors": [info.connector("bench", "BENCH_SECRET")],
                    "tasks": [task_definition("bench", "bench")],
                }
            )
            # The run's read (Graph -> committed view) and what follows it (delivery of the changes, when the
            # runner hands over to it) are timed apart: the floor is the read's.
            import shared.extract.runner as runner_module

            phase: dict[str, float] = {}
            deliver = getattr(runner_module, "after_commit", None)
            if deliver is not None:

                async def timed_delivery(*args: Any, **kwargs: Any) -> Any:
                    phase["read_end"] = time.perf_counter()
                    phase["read_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                    return await deliver(*args, **kwargs)

                runner_module.after_commit = timed_delivery
            results = {}
            staged_bytes = count_staged_bytes()
            for label in ("full", "incremental"):
                phase.clear()
                if label == "incremental":
                    control.churn(args.churn, seed=3)
                control.clear_requests()
                staged_bytes()
                graph_cpu_before = control.requests()["process_cpu_s"]
                _reset_peak_rss()  # each run's own peak (Linux), not the process's so far
                before = resource.getrusage(resource.RUSAGE_SELF)
                started = time.perf_counter()
                outcome = await run_task(services, RunRequest(task="bench"), config=config)
                wall = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_SELF)
                record = outcome.record
                if record.status != "succeeded":
                    raise RuntimeError(f"{label} run failed: {record.error}")
                summary = control.requests()
                results[label] = {
                    "mode": record.mode,
                    "wall_s": wall,
                    "read_wall_s": phase.get("read_end", started + wall) - started,
                    "read_peak_rss_mb": phase.get("read_rss_mb", after.ru_maxrss / 1024),
                    "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                    "peak_rss_mb": after.ru_maxrss / 1024,
                    "records": sum(c.written for c in record.counts.values()),
                    "changed": sum(c.changed + c.removed for c in record.counts.values()),
                    "http_calls": summary["http_calls"],
                    "batch_steps": summary["batch_steps"],
                    "resource_units": summary["resource_units"],
                    "throttled": summary["throttled"],
                    "token_requests": summary["token_requests"],
                    # The local Graph's own time: all requests, and the chain of users pages (the floor's).
                    "graph_service_s": summary.get("service_s", 0.0),
                    "chain_service_s": summary.get("service_s_by_path", {}).get("GET /users", 0.0),
                    "chain_requests": summary.get("by_path", {}).get("GET /users", 0),
                    # Member pages followed by their links (the largest group's are a chain of their own).
                    "member_pages_service_s": summary.get("service_s_by_path", {}).get(MEMBER_PAGES, 0.0),
                    "member_pages": summary.get("by_path", {}).get(MEMBER_PAGES, 0),
                    "graph_cpu_s": summary.get("process_cpu_s", 0.0) - graph_cpu_before,
                    "blob_bytes_written": staged_bytes(),
                }
        floor = floor_for(args.users, group_sizes, args.groups)
        return {
            "users": args.users,
            "groups": args.groups,
            "memberships": sum(group_sizes),
            "largest_group": max(group_sizes or [0]),
            "latency_ms": args.latency_ms,
            "floor_chain_pages": floor.chain_pages,
            "floor_user_pages": floor.user_pages,
            "floor_group_chain_pages": floor.group_chain_pages,
            "floor_units": floor.min_units,
            "runs": results,
            "graph_ready_s": graph_ready_s,
            "graph_ready_rss_mb": graph_ready_rss_mb,
            "graph_ready_cpu_s": graph_ready_cpu_s,
            "graph_peak_rss_mb": _process_rss_mb(graph.pid, "VmHWM"),
        }
    finally:
        graph.terminate()
        try:
            graph.wait(timeout=15)
        except subprocess.TimeoutExpired:
            graph.kill()


def _process_rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident set (``VmRSS``) or its peak (``VmHWM``), in MB (Linux; 0 elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _reset_peak_rss() -> None:
    """Reset this process's peak RSS (Linux: ``clear_refs`` 5 resets VmHWM, which ``ru_maxrss`` reports), so a
    run's peak is its own; elsewhere the peak stays the process's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _process_cpu_s(pid: int) -> float:
    """A process's CPU time so far (user + system; Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def count_staged_bytes() -> Any:
    """Counts the bytes the connector stages to blob storage (every block of every output file); returns
    a function that answers the bytes staged since the previous call."""
    from azure.storage.blob import BlobClient

    staged: dict[str, int] = {}
    stage_block = BlobClient.stage_block

    def counting(self: Any, block_id: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        parts = self.blob_name.split("/")
        kind = "/".join(parts[-2:]) if len(parts) > 1 and parts[-2] == "cache" else parts[-1]
        staged[kind] = staged.get(kind, 0) + len(data)
        return stage_block(self, block_id, data, *args, **kwargs)

    BlobClient.stage_block = counting  # type: ignore[method-assign]

    def since() -> dict[str, int]:
        """Bytes staged since the last call, by file (``users.jsonl``, ``changes.jsonl``, ``cache/...``)."""
        value = dict(staged)
        staged.clear()
        return value

    return since


def floors(result: dict[str, Any], label: str = "full") -> dict[str, float]:
    """The floors of one run: as before (the larger of RU / budget rate and the chain of sequential pages x
    latency), and with the chain's measured service time added (the local Graph's own time on those pages:
    it shares the machine's cores with the connector, as Graph's own service time adds to its latency)."""
    run = result["runs"][label]
    latency = result["latency_ms"] / 1000
    units = run["resource_units"] / (BUDGET_RU_PER_10S / 10)
    chain = result["floor_chain_pages"] * latency if label == "full" else 0.0
    # Two chains of pages fetched one after another: the users pages (their measured service time), and the
    # largest group's member pages (the mean measured service time of a member page followed by its link).
    user_pages = result.get("floor_user_pages", result["floor_chain_pages"])
    group_pages = result.get("floor_group_chain_pages", 0)
    users_chain = user_pages * latency + run.get("chain_service_s", 0.0) * user_pages / max(
        1, run.get("chain_requests", 0)
    )
    member_page_s = run.get("member_pages_service_s", 0.0) / max(1, run.get("member_pages", 0))
    group_chain = group_pages * latency + max(0, group_pages - 1) * member_page_s
    chain_with_service = max(users_chain, group_chain) if chain else 0.0
    chain_service = chain_with_service - chain if chain else 0.0
    today = max(units, chain)
    with_service = max(units, chain_with_service)
    return {
        "units_s": units,
        "chain_s": chain,
        "chain_service_s": chain_service,
        "floor_s": today,
        "floor_with_service_s": with_service,
        "ratio": run["wall_s"] / today if today else 0.0,
        "ratio_with_service": run["wall_s"] / with_service if with_service else 0.0,
    }


def _report(result: dict[str, Any]) -> None:
    latency = result["latency_ms"] / 1000
    if "graph_ready_s" in result:
        print(
            f"  local Graph: ready in {result['graph_ready_s']:.1f} s (CPU {result.get('graph_ready_cpu_s', 0):.1f} s) "
            f"at {result['graph_ready_rss_mb']:,.0f} MB; "
            f"peak {result['graph_peak_rss_mb']:,.0f} MB"
        )
    print(
        f"\nTenant: {result['users']:,} users, {result['groups']:,} groups, {result['memberships']:,} memberships "
        f"(largest group {result['largest_group']:,}); latency {result['latency_ms']:.0f} ms; "
        f"budget {BUDGET_RU_PER_10S:,} RU / 10 s"
    )
    rate = BUDGET_RU_PER_10S / 10
    for label, run in result["runs"].items():
        chain = result["floor_chain_pages"] * latency if label == "full" else 0.0
        unit_floor = run["resource_units"] / rate
        floor = max(chain, unit_floor)
        print(f"  {label} run ({run['mode']}):")
        print(
            f"    Graph HTTP calls       {run['http_calls']:>10,}   batched sub-requests {run['batch_steps']:,}"
        )
        print(
            f"    resource units         {run['resource_units']:>10,}   throttled answers {run['throttled']:,}"
        )
        if label == "full":
            print(
                f"    fewest possible RU     {result['floor_units']:>10,}   "
                f"ratio {run['resource_units'] / max(1, result['floor_units']):.2f}"
            )
        print(
            f"    wall time              {run['wall_s']:>10.1f} s   of which the read {run['read_wall_s']:.1f} s"
        )
        print(
            f"    CPU time               {run['cpu_s']:>10.1f} s   local Graph: CPU {run.get('graph_cpu_s', 0):.1f} s, "
            f"service time {run.get('graph_service_s', 0):.1f} s"
        )
        written = run.get("blob_bytes_written") or {}
        if isinstance(written, int):
            written = {"all": written}
        print(
            f"    bytes staged to blob   {sum(written.values()):>10,}   "
            + ", ".join(f"{kind} {size:,}" for kind, size in sorted(written.items()))
        )
        print(
            f"    peak RSS               {run['peak_rss_mb']:>10.0f} MB   at the end of the read "
            f"{run['read_peak_rss_mb']:.0f} MB"
        )
        print(
            f"    records written        {run['records']:>10,}   {run['records'] / run['wall_s']:,.0f} records/s"
        )
        if label == "full":
            print(
                f"    floor                  {floor:>10.1f} s   (RU/budget {unit_floor:.1f} s; chain "
                f"{result['floor_chain_pages']} pages x {latency:.1f} s = {chain:.1f} s); "
                f"measured/floor {run['wall_s'] / floor:.2f} (the read: {run['read_wall_s'] / floor:.2f})"
            )
            honest = floors(result, label)
            print(
                f"    floor with service     {honest['floor_with_service_s']:>10.1f} s   (chain {chain:.1f} s + the "
                f"chain's measured service time {honest['chain_service_s']:.1f} s); "
                f"measured/floor {honest['ratio_with_service']:.2f}"
            )
        else:
            full_units = result["runs"]["full"]["resource_units"]
            print(
                f"    changes applied        {run['changed']:>10,}   RU vs full read "
                f"{100 * run['resource_units'] / max(1, full_units):.1f}%"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="all", choices=["all", "child"])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--memberships", type=int, default=1_000_000)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument(
        "--churn", type=float, default=0.01, help="share of objects changed before the incremental run"
    )
    parser.add_argument(
        "--compare-users", type=int, default=10_000, help="a smaller tenant for the memory comparison"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.mode == "child":
        print(json.dumps(asyncio.run(_child(args))), flush=True)
        return 0
    results = []
    sizes = [(args.users, args.groups, args.memberships)]
    if args.compare_users:
        scale = args.compare_users / args.users
        sizes.insert(
            0, (args.compare_users, max(10, round(args.groups * scale)), round(args.memberships * scale))
        )
    for users, groups, memberships in sizes:
        print(f"running {users:,} users ...", file=sys.stderr, flush=True)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        output = subprocess.run(
            _child_command(args, users, groups, memberships), capture_output=True, text=True, env=env
        )
        if output.returncode != 0:
            print(output.stderr, file=sys.stderr)
            return 1
        result = json.loads(output.stdout.strip().splitlines()[-1])
        results.append(result)
        _report(result)
    if len(results) == 2:
        small, large = (r["runs"]["full"]["peak_rss_mb"] for r in results)
        print(
            f"\nPeak RSS, full run: {small:.0f} MB at {results[0]['users']:,} users, {large:.0f} MB at "
            f"{results[1]['users']:,} users (difference {large - small:.0f} MB)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
