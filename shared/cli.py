"""Command line: validate and store configuration, run a task now (in-process, with progress), list history.

    python -m shared.cli validate config.json
    python -m shared.cli config import config.json      # validate, then store in the config table
    python -m shared.cli config show
    python -m shared.cli run TASK [--config config.json] [--full-resync]
    python -m shared.cli preview TASK [--id OBJECT_ID | --sample N]   # read and map, write nothing
    python -m shared.cli enqueue TASK [--force]          # let the Function App run it
    python -m shared.cli clear-cache TASK                # the next run delivers every record once
    python -m shared.cli approve TASK RUN                # release the changes of a held run, once
    python -m shared.cli tick                            # queue what is due now (as the timer would)
    python -m shared.cli history [TASK] [--limit 20]
    python -m shared.cli admin --help                    # definitions, tests, export/import (shared/admin)

Settings come from the environment; ``--settings local.settings.json`` (the Functions Core Tools file)
adds its ``Values``. Exit codes: 0 success, 1 failure (invalid configuration, failed run), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from shared.config import ConfigError, load_config


def _environment(settings_file: Path | None) -> dict[str, str]:
    environ = dict(os.environ)
    path = settings_file or (Path("local.settings.json") if Path("local.settings.json").exists() else None)
    if path is not None:
        values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
        for key, value in values.items():
            environ.setdefault(key, str(value))
    return environ


def _services(environ: dict[str, str]):
    from shared.services import Services
    from shared.settings import Settings

    services = Services(Settings.from_environ(environ), environ=environ)
    services.storage.ensure()
    return services


class ProgressLine:
    """One status line, rewritten in place on a terminal (plain lines otherwise)."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()
        self.tty = stream.isatty()
        self._last = 0.0

    def __call__(self, name: str, count: int) -> None:
        self.counts[name] = count
        now = time.monotonic()
        if now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        text = "  ".join(f"{k}: {v:,} read" for k, v in self.counts.items())
        line = f"[{now - self.started:6.1f}s] {text}"
        self.stream.write(f"\r{line}\033[K" if self.tty else f"{line}\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self.counts:
            self.stream.write("\n")


def print_record(record: Any) -> None:
    print(f"run {record.run_id} of {record.task}: {record.status}")
    if record.mode:
        reason = f" ({record.resync_reason})" if record.resync_reason else ""
        print(f"  mode: {record.mode}{reason}")
    for stream, counts in record.counts.items():
        print(
            f"  {stream}: read {counts.read:,}, written {counts.written:,}, changed {counts.changed:,}, "
            f"removed {counts.removed:,}"
        )
    for stream, name in record.files.items():
        print(f"  {stream} file: {name}")
    if record.requests:
        r = record.requests
        print(
            f"  Graph: {r.get('http_calls', 0)} HTTP calls, {r.get('batch_steps', 0)} batched requests, "
            f"{r.get('throttled', 0)} throttled, {r.get('retries', 0)} retries"
        )
    for phase in ("extract", "load"):
        report = getattr(record, phase, None)
        if report is not None:
            print(f"  {phase}: {report.status}" + (f" ({report.info})" if report.info else ""))
    if record.error:
        print(f"  error: {record.error}")


async def _run(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from shared.extract.runner import run_task
    from shared.storage.queues import RunRequest

    services = _services(environ)
    config = load_config(args.config) if args.config else None
    progress = ProgressLine()
    try:
        outcome = await run_task(
            services,
            RunRequest(task=args.task, trigger="cli", full_resync=args.full_resync, force=args.force),
            config=config,
            progress=progress,
        )
    finally:
        await services.aclose()  # the pooled Graph clients this command opened
    progress.done()
    print_record(outcome.record)
    return 0 if outcome.record.status == "succeeded" else 1


async def _preview(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from shared.extract.preview import preview, render
    from shared.services import Services
    from shared.settings import Settings

    services = Services(Settings.from_environ(environ), environ=environ)  # storage is only read
    try:
        config = load_config(args.config) if args.config else await services.config_store.load()
        items = await preview(services, config, args.task, object_id=args.id, sample=args.sample)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        print(str(exc), file=sys.stderr)
        return 2
    finally:
        await services.aclose()
    if not items:
        print(
            f"no object {args.id} in any stream of {args.task}" if args.id else "no objects", file=sys.stderr
        )
        return 1
    print(json.dumps(render(items), indent=2, ensure_ascii=False, default=str))
    return 0


async def _enqueue(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from shared.storage.queues import RunRequest

    services = _services(environ)
    try:
        task = (await services.config_store.load()).task(args.task)
    except (KeyError, ConfigError):
        task = None  # the run itself records why it cannot run
    if task is not None and not task.enabled and not args.force:
        print(f"task {args.task} is disabled: add --force to run it anyway", file=sys.stderr)
        return 1
    # The task's stable id, when known, keys the queued history row where the run's own rows go.
    key = task.storage_key if task is not None else None
    request = RunRequest(task=args.task, task_key=key, trigger="cli", force=args.force)
    await services.queue.enqueue(request)
    print(f"queued run {request.run_id} of {args.task}")
    return 0


async def _clear_cache(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from shared.delivery.release import clear_cache

    services = _services(environ)
    task = (await services.config_store.load()).task(args.task)  # an unknown task is an error
    await clear_cache(services, task)  # keyed by the task's stable id, like its runs
    print(f"cache of {args.task} cleared: its next run delivers every record once (delta links kept)")
    return 0


async def _approve(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from shared.delivery.release import ApprovalError, approve

    services = _services(environ)
    config = await services.config_store.load()
    task = config.task(args.task)
    try:
        record = await approve(services, task, config.connector(task.connector), args.run)
    except ApprovalError as exc:
        print(f"not approved: {exc}", file=sys.stderr)
        return 1
    finally:
        await services.aclose()
    print_record(record)
    return 0


async def _history(args: argparse.Namespace, environ: dict[str, str]) -> int:
    services = _services(environ)
    key = args.task
    if args.task is not None:
        key = await services.config_store.task_key(args.task)  # history is keyed by the task's stable id
    records = await services.history.list(key, limit=args.limit)
    if not records:
        print("no runs recorded")
    for record in records:
        started = record.started_at.strftime("%Y-%m-%d %H:%M:%S") if record.started_at else "-"
        took = (
            f"{(record.completed_at - record.started_at).total_seconds():.1f}s"
            if record.completed_at and record.started_at
            else "-"
        )
        counts = " ".join(f"{k}={v.written}(+/-{v.changed}/{v.removed})" for k, v in record.counts.items())
        mode = record.mode or "-"
        load = f"  load={record.load.status}" if record.load is not None else ""
        print(
            f"{started}  {record.task:<24} {record.run_id:<24} {record.status:<9} {mode:<11} {took:>8}  {counts}"
            f"{load}"
        )
        if record.error:
            print(f"    error: {record.error.splitlines()[0]}")
    return 0


async def _admin(args: argparse.Namespace, environ: dict[str, str]) -> int:
    from shared.admin import commands as admin_commands
    from shared.admin.service import AdminService

    services = _services(environ)
    try:
        return await admin_commands.run(args, AdminService(services))
    finally:
        await services.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.cli", description="Entra ID Graph connector")
    parser.add_argument("--settings", type=Path, help="a local.settings.json whose Values are app settings")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a configuration file; list every problem")
    validate.add_argument("file", type=Path)
    config = commands.add_parser("config", help="stored configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_import = config_commands.add_parser("import", help="validate a file and store it (replaces)")
    config_import.add_argument("file", type=Path)
    config_commands.add_parser("show", help="print the stored configuration")
    run = commands.add_parser("run", help="run a task now, in this process")
    run.add_argument("task")
    run.add_argument("--config", type=Path, help="use this file instead of the stored configuration")
    run.add_argument(
        "--full-resync", action="store_true", help="incremental tasks: read everything this time"
    )
    run.add_argument("--force", action="store_true", help="run even though the task is disabled")
    show = commands.add_parser("preview", help="read and map a task's objects as a run would; write nothing")
    show.add_argument("task")
    chosen = show.add_mutually_exclusive_group()
    chosen.add_argument("--id", help="one object's id (looked up in each of the task's streams)")
    chosen.add_argument(
        "--sample", type=int, default=3, help="the first N objects of each stream (default 3)"
    )
    show.add_argument("--config", type=Path, help="use this file instead of the stored configuration")
    enqueue = commands.add_parser("enqueue", help="queue a run for the Function App")
    enqueue.add_argument("task")
    enqueue.add_argument("--force", action="store_true", help="run even though the task is disabled")
    clear = commands.add_parser("clear-cache", help="clear a task's cache: its next run delivers everything")
    clear.add_argument("task")
    approve = commands.add_parser("approve", help="release the changes of a run the deletion guard held")
    approve.add_argument("task")
    approve.add_argument("run")
    commands.add_parser("tick", help="queue the tasks that are due now")
    history = commands.add_parser("history", help="list recent runs")
    history.add_argument("task", nargs="?")
    history.add_argument("--limit", type=int, default=20)
    from shared.admin import commands as admin_commands

    admin_commands.add_parser(commands)  # admin ...: every administration operation (shared/admin)
    args = parser.parse_args(argv)
    environ = _environment(args.settings)

    try:
        if args.command == "validate":
            from shared.config.generic import config_notices

            checked = load_config(args.file)
            print(f"{args.file}: valid")
            for notice in config_notices(checked):
                print(f"  note: {notice}")
            return 0
        if args.command == "config" and args.config_command == "import":
            loaded = load_config(args.file)
            asyncio.run(_services(environ).config_store.save(loaded))
            print(f"stored {len(loaded.connectors)} connector(s) and {len(loaded.tasks)} task(s)")
            return 0
        if args.command == "config":
            stored = asyncio.run(_services(environ).config_store.load())
            print(stored.model_dump_json(indent=2, by_alias=True, exclude_none=True))
            return 0
        if args.command == "run":
            return asyncio.run(_run(args, environ))
        if args.command == "preview":
            return asyncio.run(_preview(args, environ))
        if args.command == "enqueue":
            return asyncio.run(_enqueue(args, environ))
        if args.command == "clear-cache":
            return asyncio.run(_clear_cache(args, environ))
        if args.command == "approve":
            return asyncio.run(_approve(args, environ))
        if args.command == "tick":
            from shared.scheduling import tick

            queued = asyncio.run(tick(_services(environ)))
            print(f"queued {len(queued)} run(s)" + "".join(f"\n  {r.task} {r.run_id}" for r in queued))
            return 0
        if args.command == "history":
            return asyncio.run(_history(args, environ))
        if args.command == "admin":
            return asyncio.run(_admin(args, environ))
    except ConfigError as exc:
        print(f"invalid configuration ({len(exc.errors)} problem(s)):\n{exc}", file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"unknown: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
