"""Critical paths nothing else runs: a lost lease, a group beyond one page of members, list-index attribute
paths, a base64 PKCS#12 certificate, an invalid stored configuration."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from azure.storage.blob import BlobLeaseClient
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    load_pem_private_key,
    pkcs12,
)

from localgraph.generate import TenantShape
from shared.config import parse_config
from shared.extract.runner import run_task
from shared.runs import RunRequest
from shared.storage import blobs
from tests.support import expected_groups, expected_users, read_records, task_config


@pytest.fixture
def graph_shape():
    return TenantShape(users=1300, groups=8, memberships=2000, seed=17)


async def test_a_run_that_loses_its_lease_commits_nothing_and_the_new_holder_keeps_it(
    graph, control, services
):
    config = task_config(graph.info, mappings_type="identity", users={"query": "$top=50"})
    control.settings(latency_ms=250)  # 26 pages: the run outlives a renewal period (LEASE_SECONDS 15 -> 5 s)
    run_id = "20261130T010000Z-aaaaaa"
    task = asyncio.create_task(run_task(services, RunRequest(task="people", run_id=run_id), config=config))
    lock = services.leases.get_blob_client("people.lock")
    while True:  # until the run holds the lease
        await asyncio.sleep(0.1)
        if lock.exists() and lock.get_blob_properties().lease.state == "leased":
            break
    # A second writer takes the task over: the lease is broken and taken by someone else.
    BlobLeaseClient(lock).break_lease(lease_break_period=0)
    second = BlobLeaseClient(lock)
    second.acquire(lease_duration=60)
    outcome = await asyncio.wait_for(task, timeout=120)
    assert outcome.record.status == "failed"
    assert "lease was lost" in (outcome.record.error or "")
    assert await blobs.get_json(services.extracts, f"people/runs/{run_id}/manifest.json") is None
    assert await blobs.get_json(services.extracts, "people/latest.json") is None
    assert (await services.state.get("people")).view is None
    assert lock.get_blob_properties().lease.state == "leased"  # still the second writer's
    second.release()


async def test_a_group_with_more_than_999_members_continues_on_its_own_page_chain(graph, control, services):
    group = control.objects("groups")[0]
    users = [u["id"] for u in control.objects("users")]
    missing = [u for u in users if u not in set(group["members"])]
    control.members(group["id"], add=missing[:1200])
    config = task_config(graph.info, mappings_type="access")
    control.clear_requests()
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.status == "succeeded", record.error
    produced = await read_records(services, record.files["groups"])
    assert produced == expected_groups(control)
    assert len(produced[group["id"]]["members"]) > 999
    requests = control.requests()
    assert requests["batched_by_path"]["GET /groups/{id}/members"] == 8  # first pages, batched
    assert requests["by_path"]["GET /groups/{id}/members"] >= 1  # the next page, on its own chain


async def test_list_index_attribute_paths_map_list_items(graph, control, services):
    mappings = [
        {"external": "id", "local": "id"},
        {"external": "assignedLicenses.0.skuId", "local": "sku"},
        {"external": "businessPhones.0", "local": "phone"},
    ]
    config = task_config(graph.info, mappings_type="identity", users={"mappings": mappings})
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.status == "succeeded", record.error
    produced = await read_records(services, record.files["users"])

    def first(values, key=None):
        if not values:
            return None
        return values[0][key] if key else values[0]

    expected = {
        u["id"]: {
            "id": u["id"],
            "sku": first(u.get("assignedLicenses"), "skuId"),
            "phone": first(u.get("businessPhones")),
            "task": "people",
        }
        for u in control.objects("users")
    }
    assert produced == expected
    assert any(r["sku"] for r in produced.values()) and any(r["sku"] is None for r in produced.values())


def pkcs12_base64(pem_file: str, password: bytes) -> str:
    pem = Path(pem_file).read_bytes()
    key = load_pem_private_key(pem, password=None)
    certificate = x509.load_pem_x509_certificate(pem)
    data = pkcs12.serialize_key_and_certificates(
        b"connector",
        key,
        certificate,
        None,
        BestAvailableEncryption(password),  # type: ignore[arg-type]
    )
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("graph_shape", [TenantShape(users=30, groups=4, memberships=60, seed=3)])
async def test_a_base64_pkcs12_certificate_with_a_password_reads_the_tenant(graph, control, services):
    services.environ["GRAPH_PFX"] = pkcs12_base64(graph.info.client_certificate, b"s3cret")
    services.environ["GRAPH_PFX_PASSWORD"] = "s3cret"
    config = task_config(graph.info, mappings_type="identity")
    data = json.loads(config.model_dump_json(by_alias=True, exclude_none=True))
    data["connectors"][0]["credential"] = {
        "type": "certificate",
        "certificate": {"app_setting": "GRAPH_PFX"},
        "password": {"app_setting": "GRAPH_PFX_PASSWORD"},
    }
    record = (await run_task(services, RunRequest(task="people"), config=parse_config(data))).record
    assert record.status == "succeeded", record.error
    assert await read_records(services, record.files["users"]) == expected_users(control)


@pytest.mark.parametrize("graph_shape", [TenantShape(users=30, groups=4, memberships=60, seed=3)])
async def test_an_invalid_stored_configuration_fails_the_run_naming_every_bad_field(graph, services):
    config = task_config(graph.info, mappings_type="identity")
    await services.config_store.save(config)
    table = services.config_store.table
    row = next(e for e in table.list_entities() if e["PartitionKey"] == "task")
    definition = json.loads(row["definition"])
    definition["mode"] = "sometimes"
    definition["users"]["mappings"][0]["local"] = "not a code!"
    table.upsert_entity({**row, "definition": json.dumps(definition)})
    record = (await run_task(services, RunRequest(task="people"))).record
    assert record.status == "failed"
    assert record.error.startswith("invalid stored configuration")
    assert "tasks[0].mode" in record.error and "tasks[0].users.mappings[0].local" in record.error
    assert (await services.state.get("people")).view is None  # nothing was read or written


async def test_a_lease_taken_while_the_run_commits_its_files_stops_it_before_manifest_and_state(
    graph, control, services, monkeypatch
):
    """The lease can go at any moment, also between the commit's first check and its last write: the
    manifest, latest.json and the state are written only while the run still holds it (it is renewed right
    before them, so it cannot expire in between)."""
    config = task_config(graph.info, mappings_type="identity")
    run_id = "20261130T020000Z-bbbbbb"
    lock = services.leases.get_blob_client("people.lock")
    second = BlobLeaseClient(lock)
    commit_files = blobs.StagedJsonl.commit
    taken = []

    async def commit_while_another_takes_over(self: blobs.StagedJsonl) -> None:
        # A second writer takes the task over as the run commits its files (the renewer has not noticed).
        if not taken:
            BlobLeaseClient(lock).break_lease(lease_break_period=0)
            second.acquire(lease_duration=60)
            taken.append(second.id)
        await commit_files(self)

    monkeypatch.setattr(blobs.StagedJsonl, "commit", commit_while_another_takes_over)
    outcome = await run_task(services, RunRequest(task="people", run_id=run_id), config=config)
    assert taken
    assert outcome.record.status == "failed"
    assert "lease was lost" in (outcome.record.error or "")
    assert await blobs.get_json(services.extracts, f"people/runs/{run_id}/manifest.json") is None
    assert await blobs.get_json(services.extracts, "people/latest.json") is None
    assert (await services.state.get("people")).view is None
    assert lock.get_blob_properties().lease.state == "leased"  # still the second writer's
    second.release()
