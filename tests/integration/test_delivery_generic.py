"""Deletion marks of a generic task: why an object that is not a directory object (an Intune managed device)
left the task's view, against Azurite and the local Graph."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localgraph.generate import TenantShape
from shared.config import parse_config
from shared.extract.runner import run_task
from shared.runs import RunRequest
from shared.storage.blobs import read_lines
from tests.support import connector_for

DEVICES = "/deviceManagement/managedDevices"


@pytest.fixture
def graph_shape():
    return TenantShape(users=20, groups=4, memberships=20, devices=12, seed=3)


def devices_config(info, excluded: list[str]):
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
