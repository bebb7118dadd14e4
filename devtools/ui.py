"""The management page locally (``make ui``): Azurite, the local Graph's demo tenant, a demo configuration with
every task kind and some history, and the admin app under uvicorn in development mode (every caller is an
administrator; it refuses to start on an Azure host).

    python -m devtools.ui [--port 8000] [--users 300]

then open the printed URL. The browser tests (``tests/admin/test_browser.py``) start the same environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn

from devtools.azurite import Azurite
from devtools.demo import TASK, demo_config
from localgraph.generate import TenantShape
from localgraph.server import LocalGraph
from shared import logs
from shared.activities.api import ActivityApi
from shared.admin.app import build_app
from shared.config import parse_config
from shared.extract.runner import run_task
from shared.runs import RunRequest
from shared.services import Services
from shared.settings import Settings

ROOT = "/api/manage"  # where the Function App serves the page (functions/admin.py)


def ui_config(info) -> dict[str, Any]:
    """The demo's configuration plus a scheduled users-only task, an event task, an authentication task and
    a second connector whose secret is missing (so the overview shows a failed task too)."""
    config = demo_config(info)
    users = config["tasks"][0]["users"]
    other = {**info.connector("other-tenant", "OTHER_TENANT_SECRET"), "tenant_id": "fabrikam.onmicrosoft.com"}
    other["client_id"] = "11111111-2222-3333-4444-555555555555"
    config["connectors"].append(other)
    config["tasks"] += [
        {"name": "demo-staff-nightly", "connector": "demo-tenant", "mode": "full", "mappings_type": "identity",
         "schedule": "0 0 2 * * *", "users": {**users, "query": "$filter=userType eq 'Member'"}},
        {"usage": "event", "name": "demo-provisioning", "connector": "demo-tenant", "mappings_type": "identity",
         "users": {"mappings": [{"local": "account.login", "external": "userPrincipalName"},
                                {"local": "account.name", "external": "displayName"},
                                {"local": "account.nick", "external": "mailNickname"}]}},
        {"usage": "authentication", "name": "demo-sign-in", "connector": "demo-tenant", "protocol": "openid_connect",
         "realm": "employees", "users": {"filter": "accountEnabled eq true and userType eq 'Member'"}},
        {"name": "fabrikam-people", "connector": "other-tenant", "mode": "full", "mappings_type": "identity",
         "schedule": "0 0 * * * *", "users": users},
    ]  # fmt: skip
    return config


@dataclass
class UiEnvironment:
    services: Services
    graph: LocalGraph
    environ: dict[str, str]


@contextlib.contextmanager
def ui_environment(users: int = 300) -> Iterator[UiEnvironment]:
    """Azurite and the local Graph, with the demo configuration stored and a few runs in the history."""
    logging.getLogger("shared").setLevel(
        logging.INFO
    )  # the runs keep their INFO lines (shared/storage/runlogs.py)
    with Azurite() as azurite, LocalGraph(TenantShape(users=users, seed=42)) as graph:
        info = graph.info
        assert info is not None  # set once the server listens
        environ = {
            "AzureWebJobsStorage": azurite.connection_string,
            "DEMO_CLIENT_SECRET": info.client_secret,
            "CONNECTOR_CA_BUNDLE": info.ca_file,
        }
        services = Services(Settings.from_environ(environ), environ=environ)
        services.storage.ensure()

        async def seed() -> None:
            await services.config_store.save(parse_config(ui_config(info)))
            await run_task(services, RunRequest(task=TASK, trigger="cli"))
            await run_task(services, RunRequest(task=TASK, trigger="timer"))
            await run_task(services, RunRequest(task="fabrikam-people", trigger="timer"))  # fails: no secret
            usage = await ActivityApi(services).usage()
            for activity in ("users.create", "users.update", "users.update", "users.disable"):
                await usage.record("demo-provisioning", activity, 200, datetime.now(UTC))
            await services.aclose()

        # Its own thread: a caller may already run an event loop (pytest-asyncio does).
        seeding = threading.Thread(target=asyncio.run, args=(seed(),))
        seeding.start()
        seeding.join()
        yield UiEnvironment(services, graph, environ)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(env: UiEnvironment, port: int | None = None) -> Iterator[str]:
    """The admin app under uvicorn in a thread; yields the page's URL."""
    port = port or _free_port()
    app = build_app(env.services, mode="development", environ=os.environ, root=ROOT)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the admin app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}{ROOT}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.ui", description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # stop Azurite and the local Graph on SIGTERM too
    logs.install(logging.WARNING)  # the terminal shows warnings; each run keeps its own INFO lines
    print(f"Starting Azurite, the local Graph ({args.users} users) and the demo configuration...", flush=True)
    with ui_environment(args.users) as env, serving(env, args.port) as url:
        print(f"\nThe management page (development mode: no sign-in): {url}\nCtrl+C stops.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
