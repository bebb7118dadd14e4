"""Any Graph collection runs through the same runner: a stream defined by its specification alone.

Devices are not among the task's selections and nothing in the runner knows them: the test writes a
StreamSpec for ``devices`` (with the memberOf relation groups and users have), binds it to a selection and
runs it full, then incremental after changes, through ``run_task(streams=...)``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from localgraph.generate import TenantShape
from shared.config import ObjectSelection, ScheduledTask
from shared.extract.relations import member_of
from shared.extract.runner import run_task
from shared.extract.streams import Stream, StreamSpec
from shared.runs import RunRecord, RunRequest
from tests.support import read_records, task_config

DEVICES = StreamSpec(
    name="devices",
    collection="devices",
    relations=MappingProxyType({"memberOf": member_of}),
    odata_type="#microsoft.graph.device",
)
DEVICE_MAPPINGS = [
    {"external": "displayName", "local": "device.name"},
    {"external": "operatingSystem", "local": "device.os"},
    {"external": "accountEnabled", "local": "device.enabled"},
    {"external": "memberOf", "local": "device.groups"},
]


@pytest.fixture
def graph_shape():
    return TenantShape(users=100, groups=12, memberships=400, devices=40, seed=5)


def devices_only(task: ScheduledTask) -> list[Stream]:
    selection = ObjectSelection(mappings=DEVICE_MAPPINGS, target_template="device", target_folder="devices")
    return [Stream(DEVICES, selection)]


def expected_devices(control) -> dict[str, dict[str, Any]]:
    groups = control.objects("groups")
    return {
        device["id"]: {
            "device.name": device.get("displayName"),
            "device.os": device.get("operatingSystem"),
            "device.enabled": device.get("accountEnabled"),
            "device.groups": sorted(g["id"] for g in groups if device["id"] in g["members"]),
        }
        for device in control.objects("devices")
    }


async def run(services, config, **request: Any) -> RunRecord:
    outcome = await run_task(
        services, RunRequest(task="people", **request), config=config, streams=devices_only
    )
    assert outcome.record.status == "succeeded", outcome.record.error
    return outcome.record


async def test_a_stream_defined_by_its_specification_alone_runs_full_and_incremental(
    graph, control, services
):
    config = task_config(graph.info, mode="incremental")
    devices = control.objects("devices")
    groups = control.objects("groups")
    control.members(groups[0]["id"], add=[devices[0]["id"], devices[1]["id"]])  # memberships to follow

    first = await run(services, config)
    assert first.mode == "full" and set(first.files) == {"devices"}
    assert await read_records(services, first.files["devices"]) == expected_devices(control)
    assert set((await services.state.get("people")).delta_links) == {"devices", "groups"}

    control.update("devices", devices[2]["id"], {"displayName": "renamed-device"})
    control.delete("devices", devices[3]["id"])
    control.members(groups[1]["id"], add=[devices[4]["id"]])
    control.members(groups[0]["id"], remove=[devices[0]["id"]])
    control.clear_requests()
    second = await run(services, config)
    assert second.mode == "incremental", second.resync_reason
    produced = await read_records(services, second.files["devices"])
    assert produced == expected_devices(control)
    assert produced[devices[2]["id"]]["device.name"] == "renamed-device"
    assert devices[3]["id"] not in produced
    assert groups[1]["id"] in produced[devices[4]["id"]]["device.groups"]
    assert second.counts["devices"].removed == 1
    requests = control.requests()["by_path"]
    assert "GET /devices" not in requests and requests["GET /devices/delta"] >= 1  # only the delta rounds


CONTACTS = StreamSpec(name="contacts", collection="contacts", delta=False)


def contacts_only(task: ScheduledTask) -> list[Stream]:
    selection = ObjectSelection(
        mappings=[{"external": "displayName", "local": "name"}, {"external": "mail", "local": "mail"}],
        target_template="contact",
        target_folder="contacts",
    )
    return [Stream(CONTACTS, selection)]


async def test_a_stream_without_delta_in_an_incremental_task_reads_everything_each_run(
    graph, control, services
):
    config = task_config(graph.info, mode="incremental")
    records = []
    for _ in range(2):
        outcome = await run_task(services, RunRequest(task="people"), config=config, streams=contacts_only)
        assert outcome.record.status == "succeeded", outcome.record.error
        records.append(outcome.record)
    assert [r.mode for r in records] == ["full", "full"]
    assert records[1].resync_reason == "Graph offers no delta for contacts"
    expected = {
        c["id"]: {"name": c.get("displayName"), "mail": c.get("mail")} for c in control.objects("contacts")
    }
    assert expected and await read_records(services, records[1].files["contacts"]) == expected
    assert (await services.state.get("people")).delta_links == {}
