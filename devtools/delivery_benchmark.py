"""Delivery benchmark: the 100,000-user full run delivered to a local receiver of the platform's web API.

Three processes besides Azurite: the local Graph (no added latency: the read is not what is measured
here), the receiver (devtools/receiver.py, HTTPS, API key, Idempotency-Key; format checks off so its CPU
stays out of the way) and this one, the connector. A task reading users and groups with members (the
benchmark tenant: 100,000 users, 10,000 groups, 1,000,000 memberships) runs twice:

1. the first run: every record is new, so the changes file holds the whole view and every record is loaded;
2. the next run, nothing changed: what the cache check costs on every run (one pass over the view).

Printed per run: the read's and the delivery's wall time, the delivery's split (changes vs load), batches
and records sent, bytes received by the receiver, records per second, and the connector process's peak
RSS at the end of the read and at the end of the delivery.

    python -m devtools.delivery_benchmark [--users 100000 --groups 10000 --memberships 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

API_KEY = "delivery-benchmark-key"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    """The process's resident set now (Linux /proc; the peak above hides anything below the read's peak)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _RssSampler:
    """The highest current RSS while a phase runs, sampled every 20 ms from a thread."""

    def __init__(self) -> None:
        self.start_mb = self.max_mb = _current_rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.max_mb = max(self.max_mb, _current_rss_mb())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.max_mb = max(self.max_mb, _current_rss_mb())


def _start(command: list[str]) -> tuple[subprocess.Popen, dict[str, Any]]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if not line:
        process.kill()
        raise RuntimeError(f"{command[2]} did not start")
    return process, json.loads(line)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


async def _benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from devtools.azurite import Azurite
    from localgraph.server import ConnectionInfo
    from shared.config import parse_config
    from shared.extract import runner
    from shared.services import Services
    from shared.settings import Settings
    from shared.storage.queues import RunRequest

    graph, raw = _start(
        [sys.executable, "-m", "localgraph", "--json", "--users", str(args.users), "--groups", str(args.groups),
         "--memberships", str(args.memberships), "--latency-ms", "0", "--seed", "7"]
    )  # fmt: skip
    info = ConnectionInfo(**raw)
    tls = Path(info.ca_file).parent
    receiver, started = _start(
        [sys.executable, "-m", "devtools.receiver", "--cert", str(tls / "server.pem"),
         "--key", str(tls / "server-key.pem"), "--api-key", API_KEY, "--no-validate"]
    )  # fmt: skip
    url = started["url"]
    try:
        with Azurite() as azurite:
            environ = {
                "AzureWebJobsStorage": azurite.connection_string,
                "BENCH_SECRET": info.client_secret,
                "RECEIVER_KEY": API_KEY,
                "CONNECTOR_CA_BUNDLE": info.ca_file,
            }
            services = Services(Settings.from_environ(environ), environ=environ)
            services.storage.ensure()
            config = parse_config(
                {
                    "connectors": [info.connector("bench", "BENCH_SECRET")],
                    "tasks": [
                        {
                            "name": "bench",
                            "connector": "bench",
                            "mode": "full",
                            "mappings_type": "identity_and_access",
                            "users": {
                                "mappings": [
                                    {"external": "userPrincipalName", "local": "login"},
                                    {"external": "displayName", "local": "name"},
                                    {"external": "mail", "local": "email"},
                                    {"external": "department", "local": "department"},
                                    {"external": "jobTitle", "local": "title"},
                                    {"external": "accountEnabled", "local": "enabled"},
                                ],
                                "target_template": "account",
                                "target_folder": "accounts",
                                "deletion_marking": {"attribute": "status", "value": "Deleted"},
                            },
                            "groups": {
                                "mappings": [
                                    {"external": "displayName", "local": "name"},
                                    {"external": "members", "local": "members"},
                                ],
                                "target_template": "group",
                                "target_folder": "groups",
                                "deletion_marking": {"attribute": "status", "value": "5 - Removed"},
                            },
                            "delivery": {
                                "endpoint": {
                                    "url": url,
                                    "auth": {"type": "api_key", "key": {"app_setting": "RECEIVER_KEY"}},
                                    "batch_size": args.batch_size,
                                }
                            },
                        }
                    ],
                }
            )
            marks: dict[str, float] = {}
            deliver = runner.after_commit

            async def timed(*a: Any, **k: Any) -> Any:
                marks["read_end"] = time.perf_counter()
                marks["read_rss"] = _rss_mb()
                sampler = _RssSampler()
                if args.trace_memory:
                    tracemalloc.start()
                try:
                    return await deliver(*a, **k)
                finally:
                    sampler.stop()
                    marks["delivery_rss_start"], marks["delivery_rss_max"] = sampler.start_mb, sampler.max_mb
                    if args.trace_memory:
                        marks["delivery_traced_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
                        tracemalloc.stop()

            runner.after_commit = timed  # type: ignore[assignment]
            results = {}
            async with httpx.AsyncClient(verify=info.ca_file) as http:
                for label in ("first run", "nothing changed"):
                    before = (await http.get(url.replace("/batches", "/stats"))).json()
                    start = time.perf_counter()
                    outcome = await runner.run_task(services, RunRequest(task="bench"), config=config)
                    end = time.perf_counter()
                    record = outcome.record
                    if record.status != "succeeded" or record.load is None:
                        raise RuntimeError(f"{label}: {record.status}: {record.error}")
                    after = (await http.get(url.replace("/batches", "/stats"))).json()
                    load = record.load
                    results[label] = {
                        "records_in_view": sum(c.written for c in record.counts.values()),
                        "read_s": marks["read_end"] - start,
                        "delivery_s": end - marks["read_end"],
                        "load_phase_s": (load.completed_at - load.started_at).total_seconds(),
                        "upserts": load.counts.get("upserts", 0),
                        "marks": load.counts.get("marks", 0),
                        "batches": load.counts.get("batches_sent", 0),
                        "records_sent": load.counts.get("records_sent", 0),
                        "http_requests": load.counts.get("http_requests", 0),
                        "retries": load.counts.get("retries", 0),
                        "received_batches": after["batches_applied"] - before["batches_applied"],
                        "received_records": after["records_applied"] - before["records_applied"],
                        "received_mb": (after["bytes_received"] - before["bytes_received"]) / 1e6,
                        "read_peak_rss_mb": marks["read_rss"],
                        "peak_rss_mb": _rss_mb(),
                        "delivery_rss_start_mb": marks["delivery_rss_start"],
                        "delivery_rss_max_mb": marks["delivery_rss_max"],
                        "delivery_traced_peak_mb": marks.get("delivery_traced_mb"),
                    }
            return {
                "users": args.users,
                "groups": args.groups,
                "batch_size": args.batch_size,
                "runs": results,
            }
    finally:
        _stop(receiver)
        _stop(graph)


def _report(result: dict[str, Any]) -> None:
    print(
        f"\nDelivery of a {result['users']:,}-user, {result['groups']:,}-group tenant to a local receiver "
        f"(batches of at most {result['batch_size']} records or 4 MiB)"
    )
    for label, run in result["runs"].items():
        rate = run["records_sent"] / run["delivery_s"] if run["delivery_s"] else 0
        print(f"  {label}:")
        print(f"    records in the view    {run['records_in_view']:>10,}")
        print(f"    read (Graph -> view)   {run['read_s']:>10.1f} s")
        print(
            f"    delivery               {run['delivery_s']:>10.1f} s   "
            f"(changes + load {run['load_phase_s']:.1f} s; {rate:,.0f} records/s)"
        )
        print(
            f"    changes                {run['upserts']:>10,} upserts, {run['marks']:,} marks; "
            f"{run['batches']:,} batches, {run['records_sent']:,} records, {run['http_requests']:,} requests, "
            f"{run['retries']} retries"
        )
        print(
            f"    receiver got           {run['received_batches']:>10,} batches, "
            f"{run['received_records']:,} records, {run['received_mb']:.0f} MB"
        )
        print(
            f"    peak RSS               {run['peak_rss_mb']:>10.0f} MB   (at the end of the read "
            f"{run['read_peak_rss_mb']:.0f} MB)"
        )
        print(
            f"    RSS during delivery    {run['delivery_rss_max_mb']:>10.0f} MB at most   (at its start "
            f"{run['delivery_rss_start_mb']:.0f} MB; sampled every 20 ms)"
        )
        if run["delivery_traced_peak_mb"] is not None:
            print(
                f"    delivery's allocations {run['delivery_traced_peak_mb']:>10.1f} MB at most   "
                "(tracemalloc: Python memory allocated by the delivery and held at once; slows it)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.delivery_benchmark", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--memberships", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="also trace the delivery's Python allocations (tracemalloc; its wall time is then slower)",
    )
    args = parser.parse_args(argv)
    result = asyncio.run(_benchmark(args))
    _report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
