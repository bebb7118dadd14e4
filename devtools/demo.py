"""The demo (``make demo``): the connector's main job, end to end, with no Azure account.

1. Starts Azurite (storage) and the local Graph with a generated demo tenant (1,000 users).
2. Stores a configuration whose task reads users and groups with memberships, incrementally.
3. Runs it: the first run reads everything (and takes delta links).
4. Changes the tenant as an administrator would (rename, disable, delete, create, membership changes).
5. Runs it again: an incremental run applies just those changes.
6. Shows what changed between the two outputs, the run history, and where the output is: the files are
   copied to ``out/demo/`` because the emulator keeps them in memory only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from devtools.azurite import Azurite
from localgraph.client import ControlClient
from localgraph.generate import TenantShape
from localgraph.server import LocalGraph
from shared.cli import ProgressLine, print_record
from shared.config import parse_config
from shared.extract.runner import run_task
from shared.services import Services
from shared.settings import Settings
from shared.storage.blobs import read_lines
from shared.storage.queues import RunRequest

OUT = Path("out/demo")
TASK = "demo-people"


def demo_config(info) -> dict[str, Any]:
    return {
        "connectors": [info.connector("demo-tenant", "DEMO_CLIENT_SECRET")],
        "tasks": [
            {
                "name": TASK,
                "connector": "demo-tenant",
                "description": "Users and groups with memberships, every 15 minutes, incrementally.",
                "schedule": "0 */15 * * * *",
                "mode": "incremental",
                "mappings_type": "identity_and_access",
                "users": {
                    "mappings": [
                        {"external": "userPrincipalName", "local": "account.login"},
                        {"external": "displayName", "local": "account.name"},
                        {"external": "mail", "local": "account.email"},
                        {"external": "department", "local": "account.department"},
                        {"external": "jobTitle", "local": "account.title"},
                        {"external": "accountEnabled", "local": "account.enabled"},
                        {"external": "userType", "local": "account.type"},
                        {
                            "external": "onPremisesExtensionAttributes.extensionAttribute1",
                            "local": "account.ext1",
                        },
                    ],
                    "target_template": "identity-account",
                    "target_folder": "demo/accounts",
                    "task_id_attribute": "meta.task",
                    "source_type_attribute": "meta.source",
                },
                "groups": {
                    "mappings": [
                        {"external": "displayName", "local": "group.name"},
                        {"external": "mail", "local": "group.email"},
                        {"external": "securityEnabled", "local": "group.security"},
                        {"external": "members", "local": "group.members"},
                    ],
                    "target_template": "access-group",
                    "target_folder": "demo/groups",
                    "task_id_attribute": "meta.task",
                },
            }
        ],
    }


def say(text: str = "") -> None:
    print(text, flush=True)


def admin_changes(control: ControlClient, domain: str) -> list[str]:
    """Changes an administrator makes in the portal between the two runs."""
    users = [u for u in control.objects("users") if u.get("userType") == "Member" and u.get("accountEnabled")]
    groups = sorted(control.objects("groups"), key=lambda g: len(g["members"]))
    done = []
    control.update(
        "users", users[0]["id"], {"displayName": "Siobhán O'Connor-Virtanen", "jobTitle": "Director"}
    )
    done.append(f"renamed {users[0]['displayName']!r} to 'Siobhán O'Connor-Virtanen' (Director)")
    control.update("users", users[1]["id"], {"accountEnabled": False})
    done.append(f"disabled {users[1]['userPrincipalName']}")
    control.delete("users", users[2]["id"])
    done.append(f"deleted {users[2]['userPrincipalName']} (to deleted items)")
    control.delete("users", users[3]["id"], hard=True)
    done.append(f"permanently deleted {users[3]['userPrincipalName']}")
    created = control.create(
        "users",
        {
            "displayName": "Zoë D'Arcy",
            "givenName": "Zoë",
            "surname": "D'Arcy",
            "userPrincipalName": f"zoe.d'arcy@{domain}",
            "mailNickname": "zoe.darcy",
            "mail": "zoe.darcy@contoso.example",
            "department": "Legal",
            "accountEnabled": True,
            "userType": "Member",
        },
    )
    done.append(f"created {created['userPrincipalName']}")
    group = groups[len(groups) // 2]
    control.members(group["id"], add=[created["id"]], remove=group["members"][:1])
    done.append(f"added Zoë to {group['displayName']!r} and removed one member from it")
    new_group = control.create(
        "groups",
        {"displayName": "Demo Project Ω", "mailNickname": "demo-project", "mailEnabled": False,
         "securityEnabled": True, "groupTypes": []},
    )  # fmt: skip
    control.members(new_group["id"], add=[created["id"], users[4]["id"]])
    done.append("created group 'Demo Project Ω' with two members")
    return done


async def load(services: Services, blob: str) -> dict[str, dict[str, Any]]:
    records = {}
    async for line in read_lines(services.extracts, blob):
        record = json.loads(line)
        records[record["id"]] = record["attributes"]
    return records


def show_differences(stream: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    added = [i for i in after if i not in before]
    removed = [i for i in before if i not in after]
    changed = [i for i in after if i in before and after[i] != before[i]]
    say(f"  {stream}: {len(added)} added, {len(changed)} changed, {len(removed)} removed")
    label = "account.login" if stream == "users" else "group.name"
    for object_id in added:
        say(f"    + {after[object_id].get(label)}")
    for object_id in removed:
        say(f"    - {before[object_id].get(label)}")
    for object_id in changed:
        diffs = []
        for code, value in after[object_id].items():
            old = before[object_id].get(code)
            if old != value:
                if isinstance(value, list):
                    gained, lost = sorted(set(value) - set(old or ())), sorted(set(old or ()) - set(value))
                    diffs.append(f"{code}: +{len(gained)} -{len(lost)} members")
                else:
                    diffs.append(f"{code}: {old!r} -> {value!r}")
        say(f"    ~ {after[object_id].get(label)}: {'; '.join(diffs)}")


async def save_locally(services: Services, record, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for stream, blob in record.files.items():
        with (target / f"{stream}.jsonl").open("wb") as handle:
            async for line in read_lines(services.extracts, blob):
                handle.write(line + b"\n")
    manifest = (
        services.extracts.get_blob_client(blob.rsplit("/", 1)[0] + "/manifest.json").download_blob().readall()
    )
    (target / "manifest.json").write_bytes(manifest)


async def demo(users: int) -> int:
    say(f"Starting Azurite and the local Graph (a generated tenant of {users:,} users)...")
    with Azurite() as azurite, LocalGraph(TenantShape(users=users, seed=42)) as graph:
        info = graph.info
        say(f"  local Graph: {info.graph_base_url} (tenant {info.tenant_id}, domain {info.tenant_domain})")
        environ = {
            "AzureWebJobsStorage": azurite.connection_string,
            "DEMO_CLIENT_SECRET": info.client_secret,
            "CONNECTOR_CA_BUNDLE": info.ca_file,
        }
        services = Services(Settings.from_environ(environ), environ=environ)
        services.storage.ensure()
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        config_data = demo_config(info)
        (OUT / "config.json").write_text(json.dumps(config_data, indent=2), encoding="utf-8")
        config = parse_config(config_data)
        await services.config_store.save(config)
        say(
            f"  configuration stored (a copy is in {OUT / 'config.json'}; the secret is an app setting reference)"
        )

        say("\n1) First run of the incremental task: reads everything, takes delta links")
        progress = ProgressLine(sys.stdout)
        first = (await run_task(services, RunRequest(task=TASK, trigger="cli"), progress=progress)).record
        progress.done()
        print_record(first)
        if first.status != "succeeded":
            return 1
        await save_locally(services, first, OUT / "run1")

        say("\n2) An administrator changes the tenant:")
        control = ControlClient(info)
        for line in admin_changes(control, info.tenant_domain):
            say(f"  - {line}")

        say("\n3) Second run: Graph delta returns only the changes; they are applied to the first run's view")
        control.clear_requests()
        second = (await run_task(services, RunRequest(task=TASK, trigger="cli"))).record
        print_record(second)
        if second.status != "succeeded":
            return 1
        await save_locally(services, second, OUT / "run2")

        say("\n4) What changed between the two outputs:")
        for stream in second.files:
            show_differences(
                stream, await load(services, first.files[stream]), await load(services, second.files[stream])
            )

        say("\n5) Run history:")
        for record in await services.history.list(TASK):
            took = (record.completed_at - record.started_at).total_seconds()
            counts = ", ".join(
                f"{k} {v.written} (changed {v.changed}, removed {v.removed})"
                for k, v in record.counts.items()
            )
            say(f"  {record.run_id}  {record.status}  {record.mode:<11} {took:5.1f}s  {counts}")

        say(
            f"\nOutput: blob container '{services.settings.extracts_container}', {TASK}/runs/<run id>/ (see README)."
        )
        say(f"Copied to {OUT.resolve()}/run1 and run2 (users.jsonl, groups.jsonl, manifest.json).")
        say("Done: Azurite and the local Graph stop now.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args(argv)
    return asyncio.run(demo(args.users))


if __name__ == "__main__":
    sys.exit(main())
