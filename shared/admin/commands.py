"""``python -m shared.cli admin ...``: every administration operation from the command line, through the same
:class:`AdminService` as the API and the page. Definitions are named by name or id; changes need the ETag
``admin show`` printed (``--etag``), or an explicit ``--overwrite``. Export passwords are read from an
environment variable (``--password-env``) or asked for, never taken as an argument (shell history).

    admin list [connectors|tasks] [--kind scheduled|event|authentication]
    admin show connector|task NAME            (definition JSON; the ETag on stderr)
    admin create connector|task FILE
    admin update connector|task NAME FILE (--etag ETAG | --overwrite) [--force]
    admin delete connector|task NAME (--etag ETAG | --overwrite) [--force]
    admin copy connector|task NAME NEW_NAME [--usage authentication --protocol saml2 --realm R]
    admin test CONNECTOR                      (token, one Graph read, permissions per feature)
    admin overview | admin settings
    admin run TASK RUN_ID                     (one run's details; `history` lists runs)
    admin log TASK RUN_ID                     (the run's own log lines)
    admin stop TASK
    admin sign-in TASK USER | admin sign-in-config TASK
    admin export CONNECTOR... --out FILE [--password-env VAR | --password] [--include-secrets]
    admin import FILE [--password-env VAR | --password] [--apply] [--key-vault-url URL]

Run now, history, clear cache and approve are the top-level ``enqueue``, ``history``, ``clear-cache`` and
``approve`` commands.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from shared.admin import signin, transfer
from shared.admin.definitions import Kind
from shared.admin.errors import AdminError, Invalid
from shared.admin.service import AdminService

KINDS = ("connector", "task")


def add_parser(commands: Any) -> None:
    admin = commands.add_parser("admin", help="administration: definitions, tests, export/import, sign-in")
    sub = admin.add_subparsers(dest="admin_command", required=True)
    listing = sub.add_parser("list", help="connectors and tasks with their ids")
    listing.add_argument("what", nargs="?", choices=("connectors", "tasks"), default="tasks")
    listing.add_argument("--kind", choices=("scheduled", "event", "authentication"))
    show = sub.add_parser("show", help="a definition (JSON) and its ETag")
    show.add_argument("kind", choices=KINDS)
    show.add_argument("name")
    create = sub.add_parser("create", help="store a new definition from a JSON file")
    create.add_argument("kind", choices=KINDS)
    create.add_argument("file", type=Path)
    for name in ("update", "delete"):
        change = sub.add_parser(name, help=f"{name} a definition (needs its ETag, or --overwrite)")
        change.add_argument("kind", choices=KINDS)
        change.add_argument("name")
        if name == "update":
            change.add_argument("file", type=Path)
        version = change.add_mutually_exclusive_group(required=True)
        version.add_argument("--etag", help="the ETag `admin show` printed")
        version.add_argument("--overwrite", action="store_true", help="change whatever version is stored")
        change.add_argument(
            "--force", action="store_true", help="even if workflows called the event task lately"
        )
    copy = sub.add_parser("copy", help="copy a definition under a new name")
    copy.add_argument("kind", choices=KINDS)
    copy.add_argument("name")
    copy.add_argument("new_name")
    copy.add_argument("--usage", choices=("authentication",), help="a scheduled task copied as this kind")
    copy.add_argument("--protocol", choices=("saml2", "openid_connect"))
    copy.add_argument("--realm")
    test = sub.add_parser("test", help="test a connector: token, one Graph read, permissions per feature")
    test.add_argument("connector")
    sub.add_parser("overview", help="status of every connector and task")
    sub.add_parser("settings", help="environment type and version")
    run = sub.add_parser("run", help="one run's details")
    run.add_argument("task")
    run.add_argument("run_id")
    run_log = sub.add_parser("log", help="a run's own log lines")
    run_log.add_argument("task")
    run_log.add_argument("run_id")
    stop = sub.add_parser("stop", help="stop a task's running run")
    stop.add_argument("task")
    check = sub.add_parser("sign-in", help="may this user sign in (authentication task)")
    check.add_argument("task")
    check.add_argument("user")
    sign_in_config = sub.add_parser("sign-in-config", help="the sign-in configuration for the platform")
    sign_in_config.add_argument("task")
    for name in ("export", "import"):
        command = sub.add_parser(name, help=f"{name} connectors with their tasks")
        if name == "export":
            command.add_argument("connectors", nargs="+")
            command.add_argument("--out", type=Path, required=True)
            command.add_argument("--include-secrets", action="store_true", help="secret values, encrypted")
        else:
            command.add_argument("file", type=Path)
            command.add_argument(
                "--apply", action="store_true", help="change the configuration (default: dry run)"
            )
            command.add_argument("--key-vault-url", help="where secret values from the file are stored")
        password = command.add_mutually_exclusive_group()
        password.add_argument(
            "--password-env", metavar="VAR", help="read the export password from this variable"
        )
        password.add_argument("--password", action="store_true", help="ask for the export password")


def _password(args: argparse.Namespace) -> str | None:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise Invalid([], f"the environment variable {args.password_env} is not set")
        return value
    if args.password:
        return getpass.getpass("export password: ")
    return None


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


async def run(args: argparse.Namespace, admin: AdminService) -> int:
    """One admin command; AdminError is printed (with every invalid field) and exits 1."""
    try:
        return await _run(args, admin)
    except AdminError as exc:
        print(f"{exc.title}: {exc.detail}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, admin: AdminService) -> int:
    command = args.admin_command
    if command == "list":
        kind: Kind = "connector" if args.what == "connectors" else "task"
        for item in await admin.definitions(kind):
            if args.kind and item.usage != args.kind:
                continue
            extra = f"  connector {item.data.get('connector')}" if kind == "task" else ""
            print(f"{item.id}  {item.usage:<14} {item.name}{extra}")
        return 0
    if command == "overview":
        for connector in await admin.overview():
            counts = ", ".join(f"{n} {k}" for k, n in connector.counts.items())
            print(f"{connector.status:<13} {connector.name}  ({counts})")
            for task in connector.tasks:
                print(f"  {task.status:<13} {task.name}  [{task.usage}]")
        return 0
    if command == "settings":
        _print(admin.settings())
        return 0
    if command in ("show", "update", "delete", "copy"):
        found = await admin.find(args.kind, args.name)
        if command == "show":
            _print({k: v for k, v in found.data.items() if k != "id"} | {"id": found.id})
            print(f"ETag: {found.etag}", file=sys.stderr)
            return 0
        if command == "copy":
            options = {k: v for k, v in {"protocol": args.protocol, "realm": args.realm}.items() if v}
            copied = await admin.copy(args.kind, found.id, args.new_name, usage=args.usage, extra=options)
            print(f"copied to {copied.name} (id {copied.id})")
            return 0
        etag = found.etag if args.overwrite else args.etag
        if command == "delete":
            await admin.delete(args.kind, found.id, etag, force=args.force)
            print(f"deleted {args.kind} {found.name}")
            return 0
        updated = await admin.update(args.kind, found.id, _read_json(args.file), etag, force=args.force)
        print(f"updated {args.kind} {updated.name}; ETag: {updated.etag}")
        return 0
    if command == "create":
        created = await admin.create(args.kind, _read_json(args.file))
        print(f"created {args.kind} {created.name} (id {created.id})")
        return 0
    if command == "test":
        _print(await admin.test_connection((await admin.find("connector", args.connector)).id))
        return 0
    if command == "run":
        record = await admin.run((await admin.find("task", args.task)).id, args.run_id)
        _print(record.model_dump(mode="json"))
        return 0
    if command == "log":
        sys.stdout.write(
            (await admin.run_log((await admin.find("task", args.task)).id, args.run_id)).decode()
        )
        return 0
    if command == "stop":
        record = await admin.stop((await admin.find("task", args.task)).id)
        print(f"asked run {record.run_id} of {record.task} to stop at its next page boundary")
        return 0
    if command == "sign-in":
        answer = await signin.may_sign_in(admin, (await admin.find("task", args.task)).id, args.user)
        print("may sign in" if answer["allowed"] else f"may not sign in: {answer['reason']}")
        return 0 if answer["allowed"] else 1
    if command == "sign-in-config":
        _print(await signin.sign_in_configuration(admin, (await admin.find("task", args.task)).id))
        return 0
    if command == "export":
        ids = [(await admin.find("connector", name)).id for name in args.connectors]
        document = await transfer.export(
            admin, ids, password=_password(args), include_secrets=args.include_secrets
        )
        args.out.write_text(json.dumps(document, indent=2), encoding="utf-8")
        print(
            f"exported {len(document['connectors'])} connector(s), {len(document['tasks'])} task(s) to {args.out}"
        )
        return 0
    if command == "import":
        plan = await transfer.import_file(
            admin,
            args.file.read_bytes(),
            password=_password(args),
            dry_run=not args.apply,
            key_vault_url=args.key_vault_url,
        )
        print("imported:" if plan.applied else "would change (dry run; --apply to import):")
        for change in plan.changes:
            print(
                f"  {change.action:<9} {change.kind} {change.name}"
                + (f" ({change.detail})" if change.detail else "")
            )
        return 0
    return 2


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise Invalid([], f"cannot read {path}: {exc}") from None
