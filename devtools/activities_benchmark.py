"""Benchmark of the workflow activities: each activity's own overhead over its Graph calls, and the throughput
of one instance under concurrent callers.

A local Graph runs in its own process with a per-request latency (default 20 ms), Azurite in its own; this
process calls the Function App's real activity handlers with real ``azure.functions.HttpRequest`` objects.

- **Overhead:** for each activity, ``--iterations`` sequential calls; per call, the wall time around the
  handler minus the time spent waiting for Graph (reported by the activity in ``Server-Timing``). What is
  left is the activity's own work: parsing and validation, the event task lookup (cached), translation, JSON,
  the usage counter's table update (Azurite), logging. Target: p50 under 10 ms.
- **Throughput:** ``--callers`` concurrent callers (default 50) for ``--seconds``, a mix of reads, verifies
  and updates, in one process and one event loop, as one Functions worker serves them.

The local Graph's resource-unit budgets are off here (the benchmark measures the connector, not Graph's
throttling). Run: ``python -m devtools.activities_benchmark``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def graph_ms(headers: dict[str, str]) -> float:
    timing = headers.get("Server-Timing", "")
    for part in timing.split(","):
        name, _, duration = part.strip().partition(";dur=")
        if name == "graph":
            return float(duration)
    return 0.0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import azure.functions as func
    from PIL import Image

    import functions.activities
    from devtools.azurite import Azurite
    from localgraph.client import ControlClient
    from localgraph.server import ConnectionInfo
    from shared.config import parse_config
    from shared.services import Services
    from shared.settings import Settings

    graph = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localgraph",
            "--json",
            "--users",
            str(args.users),
            "--latency-ms",
            str(args.latency_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert graph.stdout is not None
        info = ConnectionInfo(**json.loads(graph.stdout.readline()))
        control = ControlClient(info)
        control.settings(enforce_budgets=False)
        users = [u for u in control.objects("users") if not u.get("onPremisesSyncEnabled")]
        groups = [
            g
            for g in control.objects("groups")
            if not g.get("onPremisesSyncEnabled") and not g.get("mailEnabled") and not g.get("groupTypes")
        ]  # cloud security groups: Graph refuses member changes of mail-enabled and dynamic ones
        with Azurite() as azurite:
            environ = {
                "AzureWebJobsStorage": azurite.connection_string,
                "BENCH_SECRET": info.client_secret,
                "CONNECTOR_CA_BUNDLE": info.ca_file,
                "DEFAULT_USER_PASSWORD": "Bench-Passw0rd!x",
            }
            services = Services(Settings.from_environ(environ), environ=environ)
            services.storage.ensure()
            user_mappings = [
                {"local": "login", "external": "userPrincipalName"},
                {"local": "name", "external": "displayName"},
                {"local": "nickname", "external": "mailNickname"},
                {"local": "title", "external": "jobTitle"},
                {"local": "department", "external": "department"},
                {"local": "enabled", "external": "accountEnabled"},
                {"local": "ext1", "external": "onPremisesExtensionAttributes.extensionAttribute1"},
            ]
            group_mappings = [
                {"local": "group_name", "external": "displayName"},
                {"local": "group_nickname", "external": "mailNickname"},
                {"local": "mail_enabled", "external": "mailEnabled"},
                {"local": "security_enabled", "external": "securityEnabled"},
                {"local": "group_description", "external": "description"},
            ]
            config = parse_config(
                {
                    "connectors": [info.connector("bench", "BENCH_SECRET")],
                    "tasks": [
                        {"usage": "event", "name": "people", "connector": "bench",
                         "mappings_type": "identity_and_access", "users": {"mappings": user_mappings},
                         "groups": {"mappings": group_mappings},
                         "password": {"source": "default", "default_password": {"app_setting": "DEFAULT_USER_PASSWORD"}}},
                        {"usage": "event", "name": "apps", "connector": "bench", "mappings_type": "generic",
                         "objects": {"object_class": "applications",
                                     "mappings": [{"local": "app_name", "external": "displayName"}]}},
                        {"name": "nightly", "connector": "bench", "mode": "full", "mappings_type": "identity",
                         "users": {"mappings": [{"external": "displayName", "local": "name"}],
                                   "target_template": "account", "target_folder": "accounts"}},
                    ],
                }
            )  # fmt: skip
            await services.config_store.save(config)
            functions.activities.services = lambda: (
                services
            )  # the benchmark's Services, not the app settings'
            app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
            app.register_functions(functions.activities.bp)
            handlers = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}

            async def call(activity: str, body: dict[str, Any]) -> tuple[int, float, float]:
                name = "activity_" + activity.replace(".", "_").replace("-", "_")
                request = func.HttpRequest(
                    method="POST", url=f"https://bench/api/v1/activities/{activity.replace('.', '/')}",
                    headers={"Content-Type": "application/json"}, body=json.dumps(body).encode(),
                )  # fmt: skip
                started = time.perf_counter()
                response = await handlers[name](request)
                wall_ms = (time.perf_counter() - started) * 1000
                if response.status_code >= 500:
                    raise RuntimeError(f"{activity}: {response.status_code} {response.get_body()[:300]!r}")
                return response.status_code, wall_ms, graph_ms(dict(response.headers))

            photo = io.BytesIO()
            Image.effect_noise((400, 400), 50).convert("RGB").save(photo, format="PNG")
            photo_b64 = base64.b64encode(photo.getvalue()).decode()
            counter = itertools.count()
            user_ids = itertools.cycle(u["id"] for u in users)
            group_ids = itertools.cycle(g["id"] for g in groups)
            created_users: list[str] = []

            def body_for(activity: str) -> dict[str, Any]:
                n = next(counter)
                user = next(user_ids)
                if activity == "users.create":
                    return {"task": "people", "values": {"login": f"bench.{n}@{info.tenant_domain}",
                            "name": f"Bench O'User {n}", "nickname": f"bench{n}", "title": "Tester"}}  # fmt: skip
                if activity in ("users.read", "users.enable", "users.disable"):
                    return {"task": "people", "user": user}
                if activity == "users.delete":
                    return {"task": "people", "user": created_users.pop()}
                if activity == "users.update":
                    return {"task": "people", "user": user, "values": {"title": f"Title {n}", "ext1": "x"}}
                if activity == "users.reset-password":
                    return {"task": "people", "user": user, "force_change_password": True}
                if activity == "users.verify":
                    return {
                        "task": "people",
                        "conditions": [
                            {"code": "name", "value": "O'Brien"},
                            {"code": "enabled", "value": True},
                        ],
                    }
                if activity == "users.set-photo":
                    return {"task": "people", "user": user, "photo": photo_b64}
                if activity == "groups.create":
                    return {"task": "people", "values": {"group_name": f"Bench {n}", "group_nickname": f"bench{n}",
                            "mail_enabled": False, "security_enabled": True}}  # fmt: skip
                if activity == "groups.update":
                    return {
                        "task": "people",
                        "group": next(group_ids),
                        "values": {"group_description": f"d{n}"},
                    }
                if activity == "groups.verify":
                    return {"task": "people", "conditions": [{"code": "group_nickname", "value": f"nick{n}"}]}
                if activity in ("memberships.add", "memberships.remove"):
                    return {"task": "people", "user": user, "groups": [next(group_ids) for _ in range(3)]}
                if activity == "memberships.verify":
                    return {"task": "people", "user": user, "group": next(group_ids)}
                if activity == "objects.create":
                    return {"task": "apps", "values": {"app_name": f"Bench app {n}"}}
                if activity == "graph.call":
                    return {
                        "task": "people",
                        "method": "GET",
                        "url": "users/$id$?$$select=id,displayName",
                        "values": {"id": user},
                    }
                if activity == "tasks.run":
                    return {"task": "nightly"}
                raise KeyError(activity)

            activities = [
                "users.create", "users.read", "users.update", "users.enable", "users.disable", "users.reset-password",
                "users.verify", "users.set-photo", "users.delete", "groups.create", "groups.update", "groups.verify",
                "memberships.add", "memberships.remove", "memberships.verify", "objects.create", "graph.call",
                "tasks.run",
            ]  # fmt: skip
            overhead: dict[str, dict[str, float]] = {}
            for activity in activities:
                own: list[float] = []
                walls: list[float] = []
                for _ in range(args.iterations + 2):
                    status, wall, graph_time = await call(activity, body_for(activity))
                    if activity == "users.create" and status == 201:
                        pass
                    own.append(wall - graph_time)
                    walls.append(wall)
                own, walls = own[2:], walls[2:]  # the first calls warm caches (token, config, tables)
                if activity == "users.create":
                    created_users.extend(
                        u["id"]
                        for u in control.objects("users")
                        if u["userPrincipalName"].startswith("bench.")
                    )
                overhead[activity] = {
                    "p50": percentile(own, 50), "p95": percentile(own, 95), "p99": percentile(own, 99),
                    "wall_p50": percentile(walls, 50),
                }  # fmt: skip

            mix = ["users.read", "users.verify", "users.update", "memberships.verify", "graph.call"]
            latencies: list[float] = []
            done = 0
            stop_at = time.perf_counter() + args.seconds
            cpu_started = time.process_time()

            async def caller(index: int) -> None:
                nonlocal done
                for activity in itertools.cycle(mix[index % len(mix) :] + mix[: index % len(mix)]):
                    if time.perf_counter() >= stop_at:
                        return
                    _, wall, _ = await call(activity, body_for(activity))
                    latencies.append(wall)
                    done += 1

            started = time.perf_counter()
            await asyncio.gather(*(caller(i) for i in range(args.callers)))
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started

            # Baseline: the same number of callers sending plain Graph reads through the same pooled client,
            # without the activities: what this local Graph and client can serve at all.
            client = services.graph(config.connector("bench"))
            baseline_done = 0
            baseline_stop = time.perf_counter() + args.seconds

            async def reader() -> None:
                nonlocal baseline_done
                while time.perf_counter() < baseline_stop:
                    await client.get_json(f"/users/{next(user_ids)}", params={"$select": "id,displayName"})
                    baseline_done += 1

            baseline_started = time.perf_counter()
            baseline_cpu_started = time.process_time()
            await asyncio.gather(*(reader() for _ in range(args.callers)))
            baseline_elapsed = time.perf_counter() - baseline_started
            baseline_cpu = time.process_time() - baseline_cpu_started
            await services.aclose()
            return {
                "latency_ms": args.latency_ms,
                "iterations": args.iterations,
                "overhead_ms": overhead,
                "throughput": {
                    "callers": args.callers,
                    "seconds": round(elapsed, 1),
                    "calls": done,
                    "calls_per_s": round(done / elapsed, 1),
                    "latency_p50_ms": round(percentile(latencies, 50), 1),
                    "latency_p95_ms": round(percentile(latencies, 95), 1),
                    "latency_p99_ms": round(percentile(latencies, 99), 1),
                    "cpu_s": round(cpu, 1),
                    "cpu_ms_per_call": round(cpu / max(done, 1) * 1000, 2),
                    "baseline_graph_reads_per_s": round(baseline_done / baseline_elapsed, 1),
                    "baseline_cpu_ms_per_read": round(baseline_cpu / max(baseline_done, 1) * 1000, 2),
                },
            }
    finally:
        graph.terminate()
        graph.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"Activity overhead over Graph (ms; local Graph latency {args.latency_ms:g} ms, {args.iterations} calls each)"
    )
    print(f"{'activity':24} {'p50':>7} {'p95':>7} {'p99':>7} {'wall p50':>9}")
    for activity, figures in result["overhead_ms"].items():
        print(
            f"{activity:24} {figures['p50']:7.2f} {figures['p95']:7.2f} {figures['p99']:7.2f} {figures['wall_p50']:9.1f}"
        )
    medians = [f["p50"] for f in result["overhead_ms"].values()]
    print(f"median of the activities' p50: {statistics.median(medians):.2f} ms (target < 10 ms)")
    t = result["throughput"]
    print(
        f"Throughput, {t['callers']} concurrent callers, one process: {t['calls_per_s']} calls/s "
        f"({t['calls']} calls in {t['seconds']} s; latency p50 {t['latency_p50_ms']} ms, p95 {t['latency_p95_ms']} ms, "
        f"p99 {t['latency_p99_ms']} ms; CPU {t['cpu_s']} s, {t['cpu_ms_per_call']} ms a call)"
    )
    print(
        f"Baseline, the same callers sending plain Graph reads (no activity layer): "
        f"{t['baseline_graph_reads_per_s']} reads/s, CPU {t['baseline_cpu_ms_per_read']} ms a read"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
