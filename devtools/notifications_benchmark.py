"""Benchmark: the time from a change in the local Graph to the task's committed output, through change
notifications (``python -m devtools.notifications_benchmark``).

The local Graph runs in its own process (default: 100,000 users, 300 ms per Graph request, Graph's resource
unit budgets), Azurite in its own. The notification endpoint is the connector's own handler
(``shared.notifications.endpoint.receive``) behind an HTTPS server the local Graph calls; a worker in this
process takes run requests off the queue as the queue-triggered function would (polling every
``--poll-s``) and runs them. The task is incremental, reads users (``identity``), opts in to notifications
with the shortest interval, and has no schedule.

After the first (full) run and the subscription's creation, each sample changes one user through the
control API (as an administrator would in the portal) once the previous run has committed and the
interval has passed (so no sample waits on the debounce), and measures until the first run started after
the change commits; it then checks the output holds the change. Printed: p50 / p95 / max of the total and of
its parts (change -> notification received, received -> run started, run start -> commit).

Not included: the Functions host's queue polling when idle backs off up to ``maxPollingInterval`` (5 s in
host.json), which can add up to that much in Azure; Graph's own notification delay (documented only as
"within 3 s" answers and undocumented aggregation; the local Graph aggregates for 200 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PATH = "/api/notifications/graph"
KEY = "bench-key"


@dataclass
class Sample:
    changed_at: float
    received_at: float | None = None
    started_at: float | None = None
    committed_at: float | None = None


@dataclass
class Timeline:
    received: list[float] = field(default_factory=list)  # when a notification POST reached the endpoint
    runs: list[tuple[float, float, Any]] = field(default_factory=list)  # (started, committed, record)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


async def _worker(services: Any, timeline: Timeline, poll_s: float) -> None:
    from shared.extract.runner import run_task
    from shared.storage.queues import RunRequest

    queue = services.queue.queue
    while True:
        messages = await asyncio.to_thread(
            lambda: list(queue.receive_messages(max_messages=4, visibility_timeout=600))
        )
        if not messages:
            await asyncio.sleep(poll_s)
            continue
        for message in messages:
            request = RunRequest.model_validate_json(message.content)
            started = time.perf_counter()
            outcome = await run_task(services, request)
            timeline.runs.append((started, time.perf_counter(), outcome.record))
            await asyncio.to_thread(queue.delete_message, message)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from devtools.azurite import Azurite
    from localgraph.client import ControlClient
    from localgraph.server import ConnectionInfo
    from localgraph.subscriptions_endpoint import EndpointServer
    from localgraph.tls import load_or_write_material
    from shared.config import parse_config
    from shared.extract.runner import run_task
    from shared.notifications.endpoint import receive
    from shared.notifications.upkeep import upkeep
    from shared.services import Services
    from shared.settings import Settings
    from shared.storage import blobs
    from shared.storage.queues import RunRequest

    state_dir = Path(tempfile.mkdtemp(prefix="notifications-bench-"))
    graph = subprocess.Popen(
        [sys.executable, "-m", "localgraph", "--json", "--users", str(args.users), "--latency-ms",
         str(args.latency_ms), "--seed", "7", "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    timeline = Timeline()
    holder: dict[str, Services] = {}

    async def endpoint_handler(request: Request) -> Response:
        if request.query_params.get("code") != KEY:
            return Response(status_code=401)
        query = {k: v for k, v in request.query_params.items() if k != "code"}
        if "validationToken" not in query:
            timeline.received.append(time.perf_counter())
        answer = await receive(holder["services"], query, await request.body())
        return Response(answer.body, answer.status, media_type=answer.content_type)

    try:
        line = graph.stdout.readline() if graph.stdout else ""
        if not line:
            raise RuntimeError("the local Graph did not start")
        info = ConnectionInfo(**json.loads(line))
        control = ControlClient(info, timeout=600)
        tls = load_or_write_material(state_dir)
        app = Starlette(routes=[Route(PATH, endpoint_handler, methods=["POST"])])
        with Azurite() as azurite, EndpointServer(app, tls) as endpoint:
            environ = {
                "AzureWebJobsStorage": azurite.connection_string,
                "BENCH_SECRET": info.client_secret,
                "CONNECTOR_CA_BUNDLE": info.ca_file,
                "NOTIFICATION_HOST": endpoint.origin.removeprefix("https://"),
                "NOTIFICATION_FUNCTION_KEY": KEY,
            }
            services = Services(Settings.from_environ(environ), environ=environ)
            holder["services"] = services
            services.storage.ensure()
            task = {
                "name": "bench", "connector": "bench", "mode": "incremental", "mappings_type": "identity",
                "users": {"mappings": [
                    {"external": "userPrincipalName", "local": "login"},
                    {"external": "displayName", "local": "name"},
                    {"external": "department", "local": "department"},
                    {"external": "jobTitle", "local": "title"},
                    {"external": "accountEnabled", "local": "enabled"},
                ], "target_template": "account", "target_folder": "accounts"},
                "change_notifications": {"enabled": True, "min_interval_seconds": args.interval},
            }  # fmt: skip
            config = parse_config({"connectors": [info.connector("bench", "BENCH_SECRET")], "tasks": [task]})
            await services.config_store.save(config)

            started = time.perf_counter()
            first = await run_task(services, RunRequest(task="bench", trigger="manual"))
            full_s = time.perf_counter() - started
            if first.record.status != "succeeded":
                raise RuntimeError(f"the first run failed: {first.record.error}")
            report = await upkeep(services)
            if report.created != ["bench|users"]:
                raise RuntimeError(f"no subscription: {report.failed}")
            users_blob = first.record.files["users"]
            user_ids = []
            async for raw in blobs.read_lines(services.extracts, users_blob):
                user_ids.append(json.loads(raw)["id"])
                if len(user_ids) >= args.samples:
                    break

            worker = asyncio.create_task(_worker(services, timeline, args.poll_s))
            samples: list[Sample] = []
            try:
                for index, user_id in enumerate(user_ids):
                    await asyncio.sleep(args.interval + 0.5)  # the previous slot is behind: no debounce wait
                    sample = Sample(time.perf_counter())
                    await asyncio.to_thread(control.update, "users", user_id, {"jobTitle": f"Bench {index}"})
                    deadline = sample.changed_at + args.timeout_s
                    while sample.committed_at is None and time.perf_counter() < deadline:
                        await asyncio.sleep(0.05)
                        after = [
                            r
                            for r in timeline.runs
                            if r[0] >= sample.changed_at and r[2].status == "succeeded"
                        ]
                        if after:
                            sample.started_at, sample.committed_at = after[0][0], after[0][1]
                    received = [t for t in timeline.received if t >= sample.changed_at]
                    sample.received_at = received[0] if received else None
                    samples.append(sample)
            finally:
                worker.cancel()
            latest = json.loads(services.extracts.download_blob(blobs.latest_name("bench")).readall())
            final: dict[str, str] = {}
            async for raw in blobs.read_lines(services.extracts, latest["files"]["users"]["path"]):
                record = json.loads(raw)
                if record["id"] == user_ids[-1]:
                    final = record["attributes"]
                    break
            history = await services.history.list("bench", limit=1000)
        return {
            "users": args.users,
            "latency_ms": args.latency_ms,
            "interval_s": args.interval,
            "full_run_s": full_s,
            "samples": samples,
            "last_change_in_output": final.get("title") == f"Bench {len(user_ids) - 1}",
            "triggers": sorted({r.trigger for r in history}),
            "runs": len(history),
        }
    finally:
        graph.terminate()
        try:
            graph.wait(timeout=15)
        except subprocess.TimeoutExpired:
            graph.kill()


def _line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<34} (none)"
    return (
        f"{name:<34} p50 {percentile(values, 0.5):6.2f} s   p95 {percentile(values, 0.95):6.2f} s   "
        f"max {max(values):6.2f} s"
    )


def report(result: dict[str, Any]) -> None:
    samples: list[Sample] = result["samples"]
    done = [s for s in samples if s.committed_at is not None]
    print(f"tenant: {result['users']:,} users, Graph latency {result['latency_ms']:.0f} ms per request")
    print(f"first (full) run: {result['full_run_s']:.1f} s; interval {result['interval_s']} s; "
          f"{len(done)}/{len(samples)} changes reached the output")  # fmt: skip
    print(_line("change -> committed output", [s.committed_at - s.changed_at for s in done]))  # type: ignore[operator]
    print(
        _line(
            "change -> notification received", [s.received_at - s.changed_at for s in done if s.received_at]
        )
    )
    print(_line("notification -> run started", [s.started_at - s.received_at for s in done if s.received_at and s.started_at]))  # fmt: skip
    print(_line("run started -> committed", [s.committed_at - s.started_at for s in done if s.started_at]))  # type: ignore[operator]
    print(f"last change in the output: {result['last_change_in_output']}; runs {result['runs']}, "
          f"triggers {', '.join(result['triggers'])}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.notifications_benchmark", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--interval", type=int, default=5, help="the task's min_interval_seconds")
    parser.add_argument("--poll-s", type=float, default=0.25, help="how often the worker polls the queue")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="give up on a sample after this long")
    args = parser.parse_args(argv)
    report(asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
