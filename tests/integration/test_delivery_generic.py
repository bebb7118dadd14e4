"""Deletion marks of a generic task: why an object that is not a directory object (an Intune managed device)
left the task's view, against Azurite and the local Graph."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools.receiver import PlatformReceiver
from localgraph.generate import TenantShape
from shared.config import parse_config
from shared.delivery.release import approve
from shared.extract.runner import run_task
from shared.runs import RunRequest
from shared.storage.blobs import read_lines
from tests.support import connector_for

DEVICES = "/deviceManagement/managedDevices"
API_KEY = "receiver-generic-key-93d1"


@pytest.fixture
def graph_shape():
    return TenantShape(users=20, groups=4, memberships=20, devices=12, seed=3)


@pytest.fixture
def environ(graph, storage_environ):
    return {
        **storage_environ,
        "LOCALGRAPH_CLIENT_SECRET": graph.info.client_secret,
        "CONNECTOR_CA_BUNDLE": graph.info.ca_file,
        "RECEIVER_API_KEY": API_KEY,
    }


def devices_config(info, excluded: list[str], delivery: dict[str, Any] | None = None):
    task = {
        "name": "devices",
        "connector": "local",
        "mode": "full",
        "mappings_type": "generic",
        "generic": {
            "collection": "deviceManagement/managedDevices",
            "mappings": [{"external": "deviceName", "local": "name"}],
            "target_template": "device",
            "target_folder": "devices",
            "excluded_ids": excluded,
            "deletion_marking": {"attribute": "status", "value": "Removed", "reason_attribute": "why"},
        },
        "delivery": delivery or {},
    }
    return parse_config({"connectors": [connector_for(info)], "tasks": [task]})


async def changes_of(services, config) -> list[dict[str, Any]]:
    outcome = await run_task(services, RunRequest(task="devices"), config=config)
    assert outcome.record.status == "succeeded", outcome.record.error
    return [json.loads(line) async for line in read_lines(services.extracts, outcome.record.load.file)]


async def test_a_managed_device_out_of_scope_is_not_marked_as_deleted(graph, http, services):
    devices = [c["id"] for c in await changes_of(services, devices_config(graph.info, []))]
    left_out, deleted = devices[:2]
    assert http.delete(f"{DEVICES}/{deleted}").status_code == 204
    marks = await changes_of(services, devices_config(graph.info, [left_out]))
    assert sorted((c["op"], c["id"], c["attributes"]["why"]) for c in marks) == sorted(
        [("mark", left_out, "out_of_scope"), ("mark", deleted, "deleted")]
    )


async def test_an_approved_generic_run_goes_to_its_target(graph, http, services):
    target = {"managedDevices": {"target_template": "device", "target_folder": "devices", "key": "id"}}
    with PlatformReceiver(
        str(graph.tls.server_cert_file), str(graph.tls.server_key_file), api_key=API_KEY
    ) as receiver:
        delivery = {
            "deletion_guard": {"max_marks": 1},
            "endpoint": {
                "url": receiver.url,
                "auth": {"type": "api_key", "key": {"app_setting": "RECEIVER_API_KEY"}},
            },
        }
        config = devices_config(graph.info, [], delivery)
        devices = [c["id"] for c in await changes_of(services, config)]
        assert [b.streams for b in receiver.applied] == [target]
        for device_id in devices[:2]:
            assert http.delete(f"{DEVICES}/{device_id}").status_code == 204
        held = await run_task(services, RunRequest(task="devices"), config=config)
        assert held.record.status == "held"
        await approve(services, config.tasks[0], config.connectors[0], held.record.run_id)
        released = receiver.applied[1]
        assert released.streams == target and {r["id"] for r in released.records} == set(devices[:2])
