"""Read paths no other test ran: each in a full run, then an incremental run after changes in Graph.

Groups: excluded ids, ``memberOf`` (nested groups), a ``$filter``. Users: the source-type attribute,
array-index paths, directory extension attribute values, a ``$search``, date-time formats, a key other than
``id`` (carried in each record, named in the manifest), and scoping by transitive group membership. Expected
records are computed from the tenant's own state (the control API), never from the connector's output.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from localgraph.generate import TenantShape
from shared.config import ConfigError, parse_config
from shared.extract.mapping import Mapper
from shared.extract.runner import run_task
from shared.runs import RunRecord, RunRequest
from shared.storage import blobs
from tests.support import connector_for, read_records


@pytest.fixture
def graph_shape():
    return TenantShape(users=50, groups=10, memberships=160, seed=9)


def config_of(info, users: dict[str, Any] | None = None, groups: dict[str, Any] | None = None):
    mappings_type = "identity_and_access" if users and groups else ("identity" if users else "access")
    task: dict[str, Any] = {"name": "paths", "connector": "local", "mode": "incremental"}
    task["mappings_type"] = mappings_type
    if users:
        task["users"] = {"target_template": "account", "target_folder": "accounts", **users}
    if groups:
        task["groups"] = {"target_template": "group", "target_folder": "groups", **groups}
    return parse_config({"connectors": [connector_for(info)], "tasks": [task]})


async def run(services, config) -> RunRecord:
    outcome = await run_task(services, RunRequest(task="paths"), config=config)
    assert outcome.record.status == "succeeded", outcome.record.error
    return outcome.record


async def full_then_incremental(services, config, expected, change) -> tuple[RunRecord, RunRecord]:
    """A full run equal to ``expected()``, ``change()`` in Graph, an incremental run equal to it again."""
    first = await run(services, config)
    assert first.mode == "full"
    for stream, records in expected().items():
        assert await read_records(services, first.files[stream]) == records, stream
    change()
    second = await run(services, config)
    assert second.mode == "incremental", second.resync_reason
    for stream, records in expected().items():
        assert await read_records(services, second.files[stream]) == records, stream
    return first, second


# ---------------------------------------------------------------------------------------------- groups


async def test_groups_excluded_ids_member_of_and_a_filter(graph, control, services):
    groups = control.objects("groups")
    security = [g for g in groups if g.get("securityEnabled")]
    excluded, parent, child, leaving = security[0], security[1], security[2], security[3]
    config = config_of(
        graph.info,
        groups={
            "query": "$filter=securityEnabled eq true",
            "excluded_ids": [excluded["id"]],
            "mappings": [
                {"external": "displayName", "local": "name"},
                {"external": "memberOf", "local": "parents"},
            ],
        },
    )

    def expected() -> dict[str, Any]:
        now = control.objects("groups")
        return {
            "groups": {
                g["id"]: {
                    "name": g["displayName"],
                    "parents": sorted(p["id"] for p in now if g["id"] in p["members"]),
                }
                for g in now
                if g.get("securityEnabled") and g["id"] != excluded["id"]
            }
        }

    def change() -> None:
        control.update("groups", excluded["id"], {"displayName": "Still excluded"})
        control.members(parent["id"], add=[child["id"]])  # child's memberOf gains parent
        control.update("groups", leaving["id"], {"securityEnabled": False})  # leaves the $filter

    _, second = await full_then_incremental(services, config, expected, change)
    produced = await read_records(services, second.files["groups"])
    assert excluded["id"] not in produced and leaving["id"] not in produced
    assert parent["id"] in produced[child["id"]]["parents"]
    assert second.counts["groups"].removed == 1


# ----------------------------------------------------------------------------------------------- users


def _extension_name(users: list[dict[str, Any]]) -> str:
    return next(k for u in users for k in u if k.startswith("extension_"))


async def test_users_source_type_array_positions_extensions_dates_and_a_key(graph, control, services):
    users = control.objects("users")
    extension = _extension_name(users)
    fmt = "%d.%m.%Y %H:%M"
    config = config_of(
        graph.info,
        users={
            "key": "employeeId",
            "source_type_attribute": "source",
            "datetime_format": fmt,
            "mappings": [
                {"external": "employeeId", "local": "employee"},
                {"external": "displayName", "local": "name"},
                {"external": "businessPhones.0", "local": "phone"},
                {"external": "assignedLicenses.0.skuId", "local": "first_sku"},
                {"external": "proxyAddresses.1", "local": "second_address"},
                {"external": extension, "local": "custom"},
                {"external": "employeeHireDate", "local": "hired"},
            ],
        },
    )

    def first(values: list[Any] | None) -> Any:
        return values[0] if values else None

    def expected() -> dict[str, Any]:
        records = {}
        for u in control.objects("users"):
            hired = u.get("employeeHireDate")
            records[u["id"]] = {
                "employee": u.get("employeeId"),
                "name": u.get("displayName"),
                "phone": first(u.get("businessPhones")),
                "first_sku": (first(u.get("assignedLicenses")) or {}).get("skuId"),
                "second_address": (u.get("proxyAddresses") or [None, None])[1]
                if len(u.get("proxyAddresses") or []) > 1
                else None,
                "custom": u.get(extension),
                "hired": datetime.fromisoformat(hired).strftime(fmt) if hired else None,
                "source": "Microsoft Entra ID",
            }
        return {"users": records}

    target = next(u for u in users if u.get(extension) is not None)

    def change() -> None:
        control.update(
            "users",
            target["id"],
            {
                "businessPhones": ["+1 555 0100"],
                extension: "changed value",
                "employeeHireDate": "2025-02-03T04:05:00Z",
            },
        )

    _, second = await full_then_incremental(services, config, expected, change)
    produced = await read_records(services, second.files["users"])
    assert produced[target["id"]]["phone"] == "+1 555 0100"
    assert produced[target["id"]]["custom"] == "changed value"
    assert produced[target["id"]]["hired"] == "03.02.2025 04:05"
    assert second.counts["users"].changed == 1
    manifest = json.loads(
        services.extracts.get_blob_client(blobs.latest_name("paths")).download_blob().readall()
    )
    assert manifest["files"]["users"]["key"] == "employeeId"
    assert manifest["files"]["users"]["key_attribute"] == "employee"  # each record carries it there

    unmapped = config_of(
        graph.info, users={"key": "employeeId", "mappings": [{"external": "displayName", "local": "n"}]}
    )
    selection = unmapped.task("paths").users
    assert selection.key_attribute == "employeeId"  # carried under its own name
    assert Mapper(selection, "paths").record({"id": "x", "employeeId": "E1", "displayName": "A"}) == {
        "id": "x",
        "attributes": {"n": "A", "employeeId": "E1"},
    }
    with pytest.raises(ConfigError) as caught:
        config_of(
            graph.info,
            users={"key": "employeeId", "mappings": [{"external": "displayName", "local": "employeeId"}]},
        )
    [issue] = caught.value.errors
    assert issue.path == "tasks[0].users.key" and "map employeeId to a local code instead" in issue.message


async def test_users_search_full_and_incremental(graph, control, services):
    users = control.objects("users")
    named = users[:4]
    for index, user in enumerate(named[:3]):  # names no generated user has
        control.update("users", user["id"], {"displayName": f"Quintus Number{index}"})
    config = config_of(
        graph.info,
        users={
            "query": '$search="displayName:quintus"&$count=true',
            "headers": {"ConsistencyLevel": "eventual"},
            "mappings": [{"external": "displayName", "local": "name"}],
        },
    )

    def expected() -> dict[str, Any]:
        return {
            "users": {
                u["id"]: {"name": u["displayName"]}
                for u in control.objects("users")
                if u["displayName"].startswith("Quintus ")
            }
        }

    assert len(expected()["users"]) == 3

    def change() -> None:
        control.update("users", named[0]["id"], {"displayName": "Zed Zulu"})  # leaves
        control.update("users", named[3]["id"], {"displayName": "Quintus Newcomer"})  # joins

    _, second = await full_then_incremental(services, config, expected, change)
    produced = await read_records(services, second.files["users"])
    assert named[0]["id"] not in produced and produced[named[3]["id"]] == {"name": "Quintus Newcomer"}


async def test_users_in_groups_by_transitive_membership(graph, control, services):
    groups = control.objects("groups")
    users = {u["id"] for u in control.objects("users")}
    smallest = sorted(groups, key=lambda g: len(g["members"]))
    parent, child = smallest[0], smallest[1]  # "All Staff" would leave no one outside
    control.members(parent["id"], add=[child["id"]])
    config = config_of(
        graph.info,
        users={
            "include_members_of": [parent["id"]],
            "membership": "transitive",
            "mappings": [{"external": "displayName", "local": "name"}],
        },
    )

    def in_scope() -> set[str]:
        now = {g["id"]: g for g in control.objects("groups")}
        found, todo = set(), [parent["id"]]
        while todo:
            for member in now[todo.pop()]["members"]:
                if member in now and member not in found:
                    todo.append(member)
                found.add(member)
        return found & users

    def expected() -> dict[str, Any]:
        names = {u["id"]: u["displayName"] for u in control.objects("users")}
        return {"users": {uid: {"name": names[uid]} for uid in in_scope()}}

    outside = sorted(users - in_scope())
    leaver, newcomer = outside[0], outside[1]
    control.members(child["id"], add=[leaver])  # in scope only through the nested group
    assert leaver in in_scope() and leaver not in control.get("groups", parent["id"])["members"]

    def change() -> None:
        control.members(child["id"], add=[newcomer], remove=[leaver])

    _, second = await full_then_incremental(services, config, expected, change)
    produced = await read_records(services, second.files["users"])
    assert newcomer in produced and leaver not in produced
