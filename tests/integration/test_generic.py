"""Generic tasks: any Graph collection with sub-queries, full and incremental, against the local Graph.

Expected records come from the generator (``build_tenant`` with the test's shape), never from the server:
the managed devices, their ``windowsProtectionState``, their users and those users' managers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from localgraph.generate import TenantShape, build_tenant
from shared.config import ConfigError, parse_config
from shared.extract.runner import run_task
from shared.runs import RunRecord, RunRequest
from shared.storage.blobs import read_lines
from tests.support import connector_for, read_records

SHAPE = TenantShape(users=60, groups=10, memberships=200, devices=80, seed=7)
DEVICES = "/deviceManagement/managedDevices"
PROTECTION = f"{DEVICES}/{{id}}/windowsProtectionState"
DEVICE_GET = f"{DEVICES}/{{id}}?$select=id,userId,physicalMemoryInBytes"
MANAGER = "/users/{userId}/manager?$select=id,displayName"


@pytest.fixture
def graph_shape():
    return SHAPE


@pytest.fixture(scope="module")
def tenant():
    return build_tenant(SHAPE)


def device_task(mode: str = "incremental", **overrides: Any) -> dict[str, Any]:
    generic = {
        "collection": "deviceManagement/managedDevices",
        "timestamp_property": "lastSyncDateTime",
        "sub_queries": [
            {"path": PROTECTION},
            {"path": DEVICE_GET, "sub_queries": [{"path": MANAGER}]},  # a sub-query of a sub-query
        ],
        "mappings": [
            {"external": "deviceName", "local": "name"},
            {"external": "operatingSystem", "local": "os"},
            {"external": "deviceActionResults.0.actionName", "local": "last_action"},
            {"external": f"{PROTECTION}.malwareProtectionEnabled", "local": "malware_protection"},
            {"external": f"{PROTECTION}.lastReportedDateTime", "local": "protection_reported"},
            {"external": f"{DEVICE_GET}.physicalMemoryInBytes", "local": "memory"},
            {"external": f"{MANAGER}.displayName", "local": "owner_manager"},
        ],
        "target_template": "device",
        "target_folder": "devices",
        **overrides,
    }
    return {
        "name": "devices",
        "connector": "local",
        "mode": mode,
        "mappings_type": "generic",
        "generic": generic,
    }


def config_of(info, *tasks: dict[str, Any]):
    return parse_config({"connectors": [connector_for(info)], "tasks": list(tasks)})


def expected_devices(tenant, *, gone: set[str] = frozenset(), reported: dict[str, str] | None = None):
    users = tenant.objects
    result = {}
    for device_id, device in tenant.managed_devices.items():
        if device_id in gone:
            continue
        props, state = device.props, device.windows_protection_state
        manager_id = tenant.manager.get(props["userId"])
        actions = props.get("deviceActionResults") or []
        result[device_id] = {
            "name": props["deviceName"],
            "os": props["operatingSystem"],
            "last_action": actions[0].get("actionName") if actions else None,
            "malware_protection": state["malwareProtectionEnabled"] if state else None,
            "protection_reported": (reported or {}).get(device_id, state["lastReportedDateTime"])
            if state
            else None,
            "memory": props.get("physicalMemoryInBytes"),
            "owner_manager": users[manager_id].props["displayName"] if manager_id else None,
        }
    return result


async def run(services, config, task: str = "devices", **request: Any) -> RunRecord:
    outcome = await run_task(services, RunRequest(task=task, **request), config=config)
    assert outcome.record.status == "succeeded", outcome.record.error
    return outcome.record


async def test_managed_devices_with_two_sub_queries_and_a_second_level_full_then_incremental(
    graph, http, services, tenant
):
    config = config_of(graph.info, device_task())
    expected = expected_devices(tenant)
    windows = [d for d, device in tenant.managed_devices.items() if device.windows_protection_state]
    others = [d for d, device in tenant.managed_devices.items() if not device.windows_protection_state]
    assert len(expected) >= 20 and windows and others  # both kinds: a 404 sub-query keeps its item

    first = await run(services, config)
    assert first.mode == "full" and set(first.files) == {"managedDevices"}
    produced = await read_records(services, first.files["managedDevices"])
    assert produced == expected
    assert any(r["memory"] for r in produced.values())  # only a GET selecting it shows the value
    assert any(r["owner_manager"] for r in produced.values())
    state = await services.state.get("devices")
    assert state.delta_links["managedDevices"].startswith("watermark:lastSyncDateTime:")
    first_steps = first.requests["batch_steps"]
    assert first_steps >= 2 * len(expected)  # two first-level sub-queries per device, and the managers
    assert first.requests["throttled"] == 0 and first.requests["paced_requests"] >= 2 * len(expected)

    synced, deleted = windows[0], others[0]
    assert http.post(f"{DEVICES}/{synced}/syncDevice").status_code == 204
    assert http.delete(f"{DEVICES}/{deleted}").status_code == 204
    reported = http.get(f"{DEVICES}/{synced}/windowsProtectionState").json()["lastReportedDateTime"]

    second = await run(services, config)
    assert second.mode == "incremental", second.resync_reason
    produced = await read_records(services, second.files["managedDevices"])
    assert produced == expected_devices(tenant, gone={deleted}, reported={synced: reported})
    assert produced[synced]["protection_reported"] == reported  # the changed item's sub-queries ran again
    assert second.counts["managedDevices"].removed == 1
    assert second.counts["managedDevices"].changed == 1
    # Only the synced device's sub-queries: its protection state, its GET and its user's manager.
    assert second.requests["batch_steps"] == 3, second.requests


async def test_a_collection_sub_query_maps_lists_and_positions_and_its_children_join(graph, services, tenant):
    apps_devices = "/deviceManagement/detectedApps/{id}/managedDevices"
    owners = "/users/{userId}?$select=id,displayName"
    task = {
        "name": "apps",
        "connector": "local",
        "mode": "incremental",
        "mappings_type": "generic",
        "generic": {
            "collection": "deviceManagement/detectedApps",
            "sub_queries": [{"path": apps_devices, "sub_queries": [{"path": owners}]}],
            "mappings": [
                {"external": "displayName", "local": "app"},
                {"external": f"{apps_devices}.deviceName", "local": "devices"},
                {"external": f"{apps_devices}.0.deviceName", "local": "first_device"},
                {"external": f"{owners}.displayName", "local": "owners"},
            ],
            "target_template": "app",
            "target_folder": "apps",
        },
    }
    config = config_of(graph.info, task)
    records = []
    for _ in range(2):
        records.append(await run(services, config, task="apps"))
    assert [r.mode for r in records] == ["full", "full"]
    assert records[1].resync_reason == (
        "Graph offers no delta for detectedApps and no timestamp_property is configured"
    )
    produced = await read_records(services, records[1].files["detectedApps"])
    expected = {}
    for app_id, app in tenant.detected_apps.items():
        devices = [tenant.managed_devices[d].props for d in app.device_ids if d in tenant.managed_devices]
        expected[app_id] = {
            "app": app.props["displayName"],
            "devices": [d["deviceName"] for d in devices],
            "first_device": devices[0]["deviceName"] if devices else None,
            "owners": [tenant.objects[d["userId"]].props["displayName"] for d in devices],
        }
    assert produced == expected
    assert any(len(r["devices"]) > 1 for r in produced.values())


def test_generic_configuration_problems_are_named(graph):
    bad = device_task(
        sub_queries=[
            {"path": "/users/{userId}"},  # first level: {id} only
            {
                "path": PROTECTION,
                "sub_queries": [
                    {
                        "path": "/x/{a}",
                        "sub_queries": [{"path": "/y/{b}", "sub_queries": [{"path": "/z/{c}"}]}],
                    }
                ],
            },
        ],
    )
    with pytest.raises(ConfigError) as caught:
        config_of(graph.info, bad)
    messages = {issue.path: issue.message for issue in caught.value.errors}
    prefix = "tasks[0].generic"
    assert "first-level sub-query names the item's {id} only" in messages[f"{prefix}.sub_queries[0].path"]
    assert (
        "at most 3 levels"
        in messages[f"{prefix}.sub_queries[1].sub_queries[0].sub_queries[0].sub_queries[0]"]
    )
    unknown = device_task(
        mappings=[
            {"external": "deviceName", "local": "name"},
            {"external": "/deviceManagement/managedDevices/{id}/detectedApps.0.displayName", "local": "app"},
        ]
    )
    with pytest.raises(ConfigError) as caught:
        config_of(graph.info, unknown)
    [issue] = caught.value.errors
    assert issue.path == f"{prefix}.mappings[1].external" and "names no configured sub-query" in issue.message

    on_delta = device_task(
        collection="devices", mappings=[{"external": "displayName", "local": "n"}], sub_queries=[]
    )
    with pytest.raises(ConfigError) as caught:
        config_of(graph.info, on_delta)
    assert [str(e) for e in caught.value.errors] == [
        "tasks[0].generic.timestamp_property: Graph offers delta for devices: incremental runs use it; remove this"
    ]
    intune = device_task(timestamp_property="deviceName", query='$search="deviceName:contoso"')
    with pytest.raises(ConfigError) as caught:
        config_of(graph.info, intune)
    assert [str(e) for e in caught.value.errors] == [
        "tasks[0].generic.query: Intune collections do not support $search (docs/graph-behaviour.md section 11)",
        "tasks[0].generic.timestamp_property: Graph filters deviceManagement/managedDevices with gt only on "
        "lastSyncDateTime, enrolledDateTime, complianceGracePeriodExpirationDateTime (docs/graph-behaviour.md "
        "section 11)",
    ]
    missing = {"name": "d", "connector": "local", "mode": "full", "mappings_type": "generic"}
    with pytest.raises(ConfigError) as caught:
        config_of(graph.info, missing)
    assert [str(e) for e in caught.value.errors] == [
        "tasks[0].generic: required because mappings_type is 'generic'"
    ]


def test_validation_says_plainly_when_an_incremental_task_reads_everything(graph, tmp_path, capsys):
    from shared.config import main as config_main

    task = {
        "name": "apps",
        "connector": "local",
        "mode": "incremental",
        "mappings_type": "generic",
        "generic": {
            "collection": "deviceManagement/detectedApps",
            "mappings": [{"external": "displayName", "local": "app"}],
            "target_template": "app",
            "target_folder": "apps",
        },
    }
    path = tmp_path / "config.json"
    path.write_text(
        config_of(graph.info, task, device_task()).model_dump_json(by_alias=True, exclude_none=True)
    )
    assert config_main(["--check", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: valid",
        "  note: tasks[0].generic (apps): Graph offers no delta for deviceManagement/detectedApps and no "
        "timestamp_property is set: every run of this incremental task reads everything (a full read)",
    ]  # the devices task (a timestamp watermark) needs no note


async def test_a_collection_with_delta_re_reads_the_sub_queries_of_changed_items_only(
    graph, control, services
):
    member_of = "/devices/{id}/memberOf?$select=id,displayName"
    task = {
        "name": "devices",
        "connector": "local",
        "mode": "incremental",
        "mappings_type": "generic",
        "generic": {
            "collection": "devices",
            "sub_queries": [{"path": member_of}],
            "mappings": [
                {"external": "displayName", "local": "name"},
                {"external": f"{member_of}.displayName", "local": "groups"},
            ],
            "target_template": "device",
            "target_folder": "devices",
        },
    }
    config = config_of(graph.info, task)

    def expected() -> dict[str, Any]:
        groups = control.objects("groups")
        return {
            d["id"]: {
                "name": d["displayName"],
                "groups": sorted(g["displayName"] for g in groups if d["id"] in g["members"]),
            }
            for d in control.objects("devices")
        }

    def produced_sorted(records: dict[str, Any]) -> dict[str, Any]:
        return {i: {**r, "groups": sorted(r["groups"])} for i, r in records.items()}

    device = control.objects("devices")[0]
    group = next(g for g in control.objects("groups") if device["id"] not in g["members"])
    first = await run(services, config)
    assert first.mode == "full"
    assert produced_sorted(await read_records(services, first.files["devices"])) == expected()

    control.members(group["id"], add=[device["id"]])
    control.update("devices", device["id"], {"displayName": "renamed-device"})
    second = await run(services, config)
    assert second.mode == "incremental", second.resync_reason
    produced = produced_sorted(await read_records(services, second.files["devices"]))
    assert produced[device["id"]] == expected()[device["id"]]  # the changed item's sub-query ran again
    assert group["displayName"] in produced[device["id"]]["groups"]
    assert second.requests["batch_steps"] == second.counts["devices"].read  # one sub-query per changed device


async def test_a_removed_managed_device_is_marked_once_in_an_incremental_run(graph, http, services, tenant):
    marking = {"attribute": "status", "value": "Removed", "reason_attribute": "why"}
    config = config_of(graph.info, device_task(deletion_marking=marking))
    first = await run(services, config)
    upserts = [json.loads(line) async for line in read_lines(services.extracts, first.load.file)]
    assert len(upserts) == len(tenant.managed_devices) and {c["op"] for c in upserts} == {"upsert"}

    gone = sorted(tenant.managed_devices)[:2]
    for device_id in gone:
        assert http.delete(f"{DEVICES}/{device_id}").status_code == 204
    second = await run(services, config)
    assert second.mode == "incremental"
    changes = [json.loads(line) async for line in read_lines(services.extracts, second.load.file)]
    assert sorted((c["op"], c["id"], c["attributes"]["why"]) for c in changes) == [
        ("mark", device_id, "deleted") for device_id in gone
    ]
    third = await run(services, config)  # marked once: nothing more to deliver
    assert [line async for line in read_lines(services.extracts, third.load.file)] == []
