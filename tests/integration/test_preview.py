"""Preview: the Graph object, the mapped record and what would be delivered, writing nothing."""

from __future__ import annotations

import asyncio
import json

import pytest

from localgraph.generate import TenantShape
from shared.cli import main
from shared.extract.runner import run_task
from shared.runs import RunRequest
from tests.integration.test_generic import PROTECTION, config_of, device_task
from tests.support import task_config


@pytest.fixture
def graph_shape():
    return TenantShape(users=30, groups=6, memberships=80, devices=20, seed=11)


@pytest.fixture
def cli_env(environ, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no local.settings.json
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    return environ


def snapshot(services) -> dict:
    """Every blob (name, etag) and every row of the state and history tables."""
    return {
        "blobs": sorted((b.name, b.etag) for b in services.extracts.list_blobs()),
        "state": sorted(
            json.dumps(dict(e), sort_keys=True, default=str) for e in services.state.table.list_entities()
        ),
        "history": sorted(
            json.dumps(dict(e), sort_keys=True, default=str) for e in services.history.table.list_entities()
        ),
    }


def preview_json(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["preview", *args]) == 0
    return json.loads(capsys.readouterr().out)


async def test_preview_says_what_would_be_delivered_and_writes_nothing(
    graph, control, services, cli_env, capsys, tmp_path
):
    config = task_config(graph.info, mode="incremental")
    await services.config_store.save(config)
    outcome = await run_task(services, RunRequest(task="people"), config=config)
    assert outcome.record.status == "succeeded", outcome.record.error
    users = control.objects("users")
    changed, same = users[0], users[1]
    control.update("users", changed["id"], {"displayName": "Renamed In Graph"})
    before = snapshot(services)

    [item] = await asyncio.to_thread(preview_json, capsys, "people", "--id", changed["id"])
    assert item["stream"] == "users" and item["graph"]["displayName"] == "Renamed In Graph"
    assert item["record"] == {
        "id": changed["id"],
        "attributes": {**item["record"]["attributes"], "name": "Renamed In Graph"},
    }
    assert item["delivery"]["status"] == "changed" and item["delivery"]["sent"] is True
    [item] = await asyncio.to_thread(preview_json, capsys, "people", "--id", same["id"])
    assert item["delivery"] == {
        "status": "unchanged",
        "sent": False,
        "target_template": "account",
        "target_folder": "accounts",
    }
    sample = await asyncio.to_thread(preview_json, capsys, "people", "--sample", "2")
    assert [i["stream"] for i in sample] == ["users", "users", "groups", "groups"]
    group = sample[2]
    assert group["related"]["members"] == group["record"]["attributes"]["members"]  # read for it alone

    assert snapshot(services) == before  # nothing written: no blob, no state, no history
    assert (
        await asyncio.to_thread(main, ["preview", "people", "--id", "00000000-0000-0000-0000-000000000000"])
        == 1
    )


async def test_preview_of_a_generic_task_shows_sub_query_results(graph, services, cli_env, capsys, tmp_path):
    config_file = tmp_path / "config.json"
    config = config_of(graph.info, device_task("full"))
    config_file.write_text(config.model_dump_json(by_alias=True, exclude_none=True))
    items = await asyncio.to_thread(
        preview_json, capsys, "devices", "--sample", "3", "--config", str(config_file)
    )
    assert len(items) == 3
    for item in items:
        assert item["delivery"]["status"] == "new"  # never delivered
        protection = item["related"]["subQueries"][PROTECTION]
        attributes = item["record"]["attributes"]
        assert attributes["malware_protection"] == (protection or {}).get("malwareProtectionEnabled")
        assert attributes["name"] == item["graph"]["deviceName"]
    assert list(services.extracts.list_blobs()) == []
