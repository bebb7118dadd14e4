"""Benchmark of a generic task: Intune managed devices with two sub-queries each, paced by Intune's budget.

``python -m devtools.generic_benchmark [--devices 25000] [--latency-ms 300]``: the local Graph (its own
process, Intune's budget of 2,000 requests per 20 s per app enforced, 429 beyond it) generates a tenant
whose devices are about 80% Intune-managed; a generic task reads every managed device and, for each,
``/deviceManagement/managedDevices/{id}/windowsProtectionState`` and a GET of the device selecting
properties only a GET shows. A second, incremental run follows (nothing changed: the id listing and the
changed-since-watermark page only).

Printed per run: Graph HTTP calls, ``$batch`` calls and steps, Intune requests (paced), 429s, seconds spent
waiting for the budget, wall time, and the floor: Intune requests / Intune's rate (2,000 per 20 s), with the
ratio of the wall time to it, and the share of the budget the run used over its wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

INTUNE_REQUESTS = 2000
INTUNE_WINDOW_S = 20.0
DEVICES = "/deviceManagement/managedDevices"


def task(mode: str) -> dict[str, Any]:
    protection = f"{DEVICES}/{{id}}/windowsProtectionState"
    device_get = f"{DEVICES}/{{id}}?$select=id,physicalMemoryInBytes,ethernetMacAddress"
    return {
        "name": "devices",
        "connector": "bench",
        "mode": mode,
        "mappings_type": "generic",
        "generic": {
            "collection": "deviceManagement/managedDevices",
            "timestamp_property": "lastSyncDateTime",
            "sub_queries": [{"path": protection}, {"path": device_get}],
            "mappings": [
                {"external": "deviceName", "local": "name"},
                {"external": "operatingSystem", "local": "os"},
                {"external": "complianceState", "local": "compliance"},
                {"external": "lastSyncDateTime", "local": "last_sync"},
                {"external": f"{protection}.malwareProtectionEnabled", "local": "malware_protection"},
                {"external": f"{protection}.deviceState", "local": "protection_state"},
                {"external": f"{device_get}.physicalMemoryInBytes", "local": "memory"},
                {"external": f"{device_get}.ethernetMacAddress", "local": "mac"},
            ],
            "target_template": "device",
            "target_folder": "devices",
        },
    }


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    from devtools.azurite import Azurite
    from localgraph.client import ControlClient
    from localgraph.server import ConnectionInfo
    from shared.config import parse_config
    from shared.extract.runner import run_task
    from shared.runs import RunRequest
    from shared.services import Services
    from shared.settings import Settings

    graph = subprocess.Popen(
        [sys.executable, "-m", "localgraph", "--json", "--users", str(args.users), "--devices",
         str(args.devices), "--latency-ms", str(args.latency_ms), "--seed", "7"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    results = []
    try:
        assert graph.stdout is not None
        line = graph.stdout.readline()
        if not line:
            raise RuntimeError("the local Graph did not start")
        info = ConnectionInfo(**json.loads(line))
        managed = ControlClient(info, timeout=600).tenant_info()["managed_devices"]
        with Azurite() as azurite:
            environ = {
                "AzureWebJobsStorage": azurite.connection_string,
                "BENCH_SECRET": info.client_secret,
                "CONNECTOR_CA_BUNDLE": info.ca_file,
            }
            services = Services(Settings.from_environ(environ), environ=environ)
            services.storage.ensure()
            config = parse_config(
                {"connectors": [info.connector("bench", "BENCH_SECRET")], "tasks": [task("incremental")]}
            )
            for label in ("full", "incremental"):
                started = time.perf_counter()
                outcome = await run_task(services, RunRequest(task="devices"), config=config)
                wall = time.perf_counter() - started
                record = outcome.record
                if record.status != "succeeded":
                    raise RuntimeError(f"{label} run {record.status}: {record.error}")
                requests = record.requests
                intune = requests["paced_requests"]
                floor = intune / (INTUNE_REQUESTS / INTUNE_WINDOW_S)
                results.append(
                    {
                        "run": label,
                        "mode": record.mode,
                        "managed_devices": managed,
                        "records": record.counts["managedDevices"].written,
                        "http_calls": requests["http_calls"],
                        "batch_calls": requests["batch_calls"],
                        "batch_steps": requests["batch_steps"],
                        "intune_requests": intune,
                        "throttled_429": requests["throttled"],
                        "paced_s": requests["paced_s"],
                        "wall_s": round(wall, 1),
                        "floor_s": round(floor, 1),
                        "ratio_to_floor": round(wall / floor, 3) if floor else None,
                        "budget_use": round(intune / (wall / INTUNE_WINDOW_S * INTUNE_REQUESTS), 3),
                    }
                )
                print(json.dumps(results[-1]), flush=True)
            await services.aclose()
    finally:
        graph.terminate()
        graph.wait(timeout=30)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.generic_benchmark", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--devices", type=int, default=25000, help="Entra devices (about 80%% managed)")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args))
    print()
    print(f"{'run':<12}{'devices':>8}{'calls':>8}{'steps':>8}{'intune':>8}{'429s':>6}{'paced s':>9}"
          f"{'wall s':>8}{'floor s':>9}{'ratio':>7}{'budget':>8}")  # fmt: skip
    for r in results:
        print(
            f"{r['run']:<12}{r['records']:>8}{r['http_calls']:>8}{r['batch_steps']:>8}{r['intune_requests']:>8}"
            f"{r['throttled_429']:>6}{r['paced_s']:>9.1f}{r['wall_s']:>8.1f}{r['floor_s']:>9.1f}"
            f"{r['ratio_to_floor'] or 0:>7.2f}{r['budget_use']:>8.0%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
