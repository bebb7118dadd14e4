"""Figures for the administration layer (``python -m devtools.admin_bench [--tasks 50]``): how long the
overview, the page, an export (plain and sealed with the password KDF) and an import (dry run and applied, into
a second storage account) take on Azurite with the local Graph. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import httpx

from devtools.azurite import Azurite
from localgraph.generate import TenantShape
from localgraph.server import LocalGraph
from shared.admin.app import build_app
from shared.admin.service import AdminService
from shared.admin.transfer import SCRYPT, _keys, export, import_file
from shared.config import parse_config
from shared.extract.runner import run_task
from shared.runs import RunRequest
from shared.services import Services
from shared.settings import Settings


def _config(info: Any, tasks: int) -> dict[str, Any]:
    users = {
        "mappings": [
            {"external": "userPrincipalName", "local": "login"},
            {"external": "displayName", "local": "name"},
        ],
        "target_template": "account",
        "target_folder": "accounts",
    }
    return {
        "connectors": [info.connector("bench", "BENCH_SECRET")],
        "tasks": [
            {"name": f"task-{n:03d}", "connector": "bench", "mode": "full", "mappings_type": "identity",
             "schedule": "0 0 * * * *", "users": users}
            for n in range(tasks)
        ],
    }  # fmt: skip


async def _timed(label: str, make: Any, repeat: int = 5) -> None:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await make()
        times.append(time.perf_counter() - started)
    print(f"  {label:<46} median {statistics.median(times) * 1000:8.1f} ms  (n={repeat})")


async def bench(tasks: int, runs: int) -> None:
    with Azurite() as source, Azurite() as target, LocalGraph(TenantShape(users=200, seed=5)) as graph:
        info = graph.info
        assert info is not None
        environ = {"AzureWebJobsStorage": source.connection_string, "BENCH_SECRET": info.client_secret,
                   "CONNECTOR_CA_BUNDLE": info.ca_file}  # fmt: skip
        services = Services(Settings.from_environ(environ), environ=environ)
        services.storage.ensure()
        await services.config_store.save(parse_config(_config(info, tasks)))
        for n in range(runs):
            await run_task(services, RunRequest(task=f"task-{n:03d}"))
        admin = AdminService(services)
        print(f"{tasks} scheduled tasks ({runs} with a run in their history), Azurite, 2-core machine")
        await _timed("overview (service)", admin.overview)
        app = build_app(services, mode="development", environ={}, root="/api/manage")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:

            async def page() -> None:
                assert (await http.get("/api/manage/")).status_code == 200

            await _timed("overview page (HTML, through the ASGI app)", page)
        connector = (await admin.definitions("connector"))[0].id
        await _timed("export, digest only", lambda: export(admin, [connector]))
        await _timed(
            "export, sealed with a password", lambda: export(admin, [connector], password="bench-pass")
        )
        started = time.perf_counter()
        _keys("bench-pass", b"0123456789abcdef", **SCRYPT)
        print(f"  {'scrypt key derivation alone':<46} {(time.perf_counter() - started) * 1000:8.1f} ms")
        text = json.dumps(await export(admin, [connector], password="bench-pass"))
        print(f"  {'export file size':<46} {len(text) / 1024:8.1f} KiB")
        target_environ = {**environ, "AzureWebJobsStorage": target.connection_string}
        other = Services(Settings.from_environ(target_environ), environ=target_environ)
        other.storage.ensure()
        target_admin = AdminService(other)
        await _timed(
            "import, dry run (empty target)", lambda: import_file(target_admin, text, password="bench-pass")
        )
        started = time.perf_counter()
        plan = await import_file(target_admin, text, password="bench-pass", dry_run=False)
        elapsed = (time.perf_counter() - started) * 1000
        print(f"  {'import, applied (' + str(len(plan.changes)) + ' definitions)':<46} {elapsed:8.1f} ms")
        await services.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.admin_bench", description=__doc__)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(bench(args.tasks, args.runs))


if __name__ == "__main__":
    main()
