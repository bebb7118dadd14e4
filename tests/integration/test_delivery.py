"""Delivery: changes against the task cache, deletion marks, the deletion guard, loads that fail, the cache
clear, housekeeping; against Azurite, the local Graph and a local HTTPS receiver of the platform's web API
(devtools/receiver.py) that records what it applied and fails on request."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.receiver import PlatformReceiver
from localgraph.generate import TenantShape
from shared.config import parse_config
from shared.delivery.release import ApprovalError, approve, clear_cache, delivery_store
from shared.extract.runner import run_task
from shared.storage.blobs import read_lines
from shared.storage.queues import RunRequest
from tests.support import USER_MAPPINGS, connector_for

API_KEY = "receiver-test-key-4f1c"
MARKING = {
    "attribute": "status",
    "value": "Deleted",
    "reason_attribute": "removal",
    "restored_value": "Active",
}


@pytest.fixture
def graph_shape():
    return TenantShape(users=40, groups=6, memberships=80, seed=11)


@pytest.fixture
def environ(graph, storage_environ):
    return {
        **storage_environ,
        "LOCALGRAPH_CLIENT_SECRET": graph.info.client_secret,
        "CONNECTOR_CA_BUNDLE": graph.info.ca_file,
        "RECEIVER_API_KEY": API_KEY,
        "GRAPH_BACKOFF_SECONDS": "0.01",
    }


@pytest.fixture
def receiver(graph):
    with PlatformReceiver(
        str(graph.tls.server_cert_file), str(graph.tls.server_key_file), api_key=API_KEY
    ) as r:
        yield r


def delivery_config(
    info,
    url: str | None,
    *,
    mode: str = "full",
    guard: dict[str, Any] | None = None,
    users: dict[str, Any] | None = None,
    endpoint: dict[str, Any] | None = None,
    enabled: bool = True,
    keep_runs: int = 10,
    task_id: str | None = None,
):
    delivery: dict[str, Any] = {
        "deletion_guard": guard or {},
        "failure": {"target_template": "task_failure", "target_folder": "failures", "attribute": "error"},
        "keep_runs": keep_runs,
    }
    if url is not None:
        delivery["endpoint"] = {
            "url": url,
            "auth": {"type": "api_key", "key": {"app_setting": "RECEIVER_API_KEY"}},
            **(endpoint or {}),
        }
    task = {
        "name": "people",
        "connector": "local",
        "mode": mode,
        "enabled": enabled,
        "mappings_type": "identity",
        "users": {
            "mappings": USER_MAPPINGS,
            "target_template": "account",
            "target_folder": "accounts",
            "deletion_marking": MARKING,
            **(users or {}),
        },
        "delivery": delivery,
    }
    if task_id is not None:
        task["id"] = task_id
    return parse_config({"connectors": [connector_for(info)], "tasks": [task]})


async def run(services, config, expect: str = "succeeded", **request):
    outcome = await run_task(services, RunRequest(task="people", **request), config=config)
    assert outcome.record.status == expect, (outcome.record.error, outcome.record.load)
    return outcome.record


def delivered(receiver: PlatformReceiver, since: int = 0) -> list[dict[str, Any]]:
    """The records the receiver applied (failure records left out), from batch ``since`` on."""
    return [r for batch in receiver.applied[since:] for r in batch.records if r["stream"] != "failure"]


def failure_records(receiver: PlatformReceiver, since: int = 0) -> list[dict[str, Any]]:
    return [r for batch in receiver.applied[since:] for r in batch.records if r["stream"] == "failure"]


async def changes(services, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) async for line in read_lines(services.extracts, name)]


async def test_first_run_delivers_every_record_in_the_documented_batch_format(
    graph, control, services, receiver
):
    config = delivery_config(graph.info, receiver.url, endpoint={"batch_size": 15})
    record = await run(services, config)
    users = {u["id"] for u in control.objects("users")}
    assert record.extract.status == "succeeded" and record.load.status == "succeeded"
    assert {r["id"] for r in delivered(receiver)} == users
    # The receiver refuses a body whose batch_id differs from its Idempotency-Key (400); the ids differ.
    keys = [b.headers["idempotency-key"] for b in receiver.applied]
    assert len(set(keys)) == 3 and all(len(key) == 32 and int(key, 16) >= 0 for key in keys)
    assert [len(b.records) for b in receiver.applied] == [15, 15, len(users) - 30]
    assert receiver.applied[0].streams == {
        "users": {"target_template": "account", "target_folder": "accounts", "key": "id"}
    }
    first = delivered(receiver)[0]
    assert first["op"] == "upsert" and set(first["attributes"]) == {m["local"] for m in USER_MAPPINGS}
    lines = await changes(services, record.load.file)
    assert len(lines) == len(users) and all(line["op"] == "upsert" for line in lines)
    again = await run(services, config)
    assert again.load.counts["upserts"] == 0 and len(receiver.applied) == 3  # nothing changed: nothing sent


async def test_guard_holds_a_mass_deletion_and_approval_releases_exactly_it(
    graph, control, services, receiver, caplog
):
    config = delivery_config(graph.info, receiver.url, guard={"max_marks": 3})
    task, connector = config.tasks[0], config.connectors[0]
    await run(services, config)
    delivered_first = len(receiver.applied)
    doomed = sorted(u["id"] for u in control.objects("users")[:5])
    for object_id in doomed:
        control.delete("users", object_id)

    caplog.set_level(logging.ERROR, logger="shared.delivery.failures")
    held = await run(services, config, expect="held")
    assert held.load.status == "held" and "mark 5 objects" in held.load.info
    assert delivered(receiver, delivered_first) == []  # nothing of it delivered ...
    [failure] = failure_records(receiver, delivered_first)  # ... but the failure record
    assert failure["attributes"]["error"].startswith(f"people run {held.run_id} held: the run would mark 5")
    events = [r for r in caplog.records if getattr(r, "event", None) == "TaskRunFailed"]
    assert [e.run_status for e in events] == ["held"] and "mark 5 objects" in events[0].error_text

    again = await run(services, config, expect="held")  # a held task does not deliver on its next run
    assert delivered(receiver, delivered_first) == []
    with pytest.raises(ApprovalError, match=f"is not held; the held run is {again.run_id}"):
        await approve(services, task, connector, held.run_id)  # replaced by the newer hold

    before = len(receiver.applied)
    released = await approve(services, task, connector, again.run_id)
    marks = delivered(receiver, before)
    assert sorted(r["id"] for r in marks) == doomed
    assert all(
        r["op"] == "mark" and r["attributes"] == {"status": "Deleted", "removal": "soft_deleted"}
        for r in marks
    )
    assert released.status == "succeeded" and released.load.status == "succeeded"
    stored = await services.history.get("people", again.run_id)
    assert stored.status == "succeeded" and stored.load.status == "succeeded"
    with pytest.raises(ApprovalError, match="already released"):
        await approve(services, task, connector, again.run_id)

    after = len(receiver.applied)
    quiet = await run(services, config)  # marked once: never again
    assert quiet.load.counts["marks"] == 0 and len(receiver.applied) == after


async def test_correcting_the_configuration_clears_the_hold(graph, control, services, receiver):
    config = delivery_config(graph.info, receiver.url, guard={"max_marks": 3, "max_share": 0.5})
    task, connector = config.tasks[0], config.connectors[0]
    await run(services, config)
    users = len(control.objects("users"))
    wrong = delivery_config(
        graph.info,
        receiver.url,
        guard={"max_marks": 3},
        users={"query": "$filter=startsWith(displayName,'zzz')"},
    )
    sent = len(receiver.applied)
    held = await run(services, wrong, expect="held")
    lines = await changes(services, held.load.file)
    assert len(lines) == users and {line["reason"] for line in lines} == {"out_of_scope"}
    fixed = await run(services, config)
    assert fixed.load.counts == {**fixed.load.counts, "upserts": 0, "marks": 0}
    assert "hold of run" in fixed.load.info and delivered(receiver, sent) == []
    assert (await delivery_store(services).get("people")).held is None
    with pytest.raises(ApprovalError, match="no run is held"):
        await approve(services, task, connector, held.run_id)


async def test_cache_clear_delivers_everything_once_and_keeps_delta_links(graph, control, services, receiver):
    from shared.delivery import cache

    config = delivery_config(graph.info, receiver.url, mode="incremental")
    users = {u["id"] for u in control.objects("users")}
    await run(services, config)
    assert (await run(services, config)).load.counts["upserts"] == 0
    links = (await services.state.get("people")).delta_links
    store = delivery_store(services)
    await cache.clear(store, "people")
    assert (await services.state.get("people")).delta_links == links

    sent = len(receiver.applied)
    cleared = await run(services, config)
    assert cleared.mode == "incremental"  # the delta links survived the clear
    assert {r["id"] for r in delivered(receiver, sent)} == users
    assert (await run(services, config)).load.counts["upserts"] == 0  # once

    # The daily clear: a configured hour (00:00 UTC by default) passed since the cache was built.
    state = await store.get("people")
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    assert state.delivered is not None
    await store.put(
        "people",
        state.model_copy(
            update={
                "cleared_at": two_days_ago,
                "delivered": state.delivered.model_copy(update={"delivered_at": two_days_ago}),
            }
        ),
    )
    sent = len(receiver.applied)
    daily = await run(services, config)
    assert {r["id"] for r in delivered(receiver, sent)} == users
    assert daily.load.counts["upserts"] == len(users)
    assert (await run(services, config)).load.counts["upserts"] == 0


async def test_failed_loads_lose_nothing_and_never_apply_a_batch_twice(
    graph, control, services, receiver, caplog
):
    caplog.set_level(logging.INFO, logger="shared.telemetry")
    config = delivery_config(graph.info, receiver.url, endpoint={"batch_size": 7})
    users = sorted(u["id"] for u in control.objects("users"))
    receiver.fail(503, times=100, after=3)  # three batches land, then the receiver is down
    failed = await run(services, config, expect="failed")
    assert failed.extract.status == "succeeded" and failed.load.status == "failed"
    assert "503" in failed.error and failed.load.counts["batches_sent"] == 3
    assert (await delivery_store(services).get("people")).delivered is None  # the cache did not advance
    events = [r for r in caplog.records if getattr(r, "connector.event", None) == "delivery.finished"]
    assert [(e.outcome, e.records, e.task) for e in events] == [("failed", 21, "people")]
    first_ids = [b.batch_id for b in receiver.applied]

    receiver.heal()
    receiver.fail(503, times=1, after=5, apply_first=True)  # batch 6 lands, but its answer is a 503
    second = await run(services, config)
    assert second.load.counts["batches_skipped"] == 3  # acknowledged before: not sent again
    assert [b.batch_id for b in receiver.applied[:3]] == first_ids
    assert sorted(r["id"] for r in delivered(receiver)) == users  # nothing lost, nothing twice
    applied = [b.batch_id for b in receiver.applied]
    assert len(applied) == len(set(applied))
    sixth = applied[5]
    assert [status for key, status in receiver.attempts if key == sixth] == [503, 200]  # sent again, same key
    assert (await run(services, config)).load.counts["upserts"] == 0


@pytest.mark.parametrize("mode", ["full", "incremental"])
async def test_marks_say_why_once_and_a_restored_object_comes_back_unmarked(
    mode, graph, control, services, receiver
):
    config = delivery_config(
        graph.info, receiver.url, mode=mode, users={"query": "$filter=accountEnabled eq true"}
    )
    await run(services, config)
    enabled = [u for u in control.objects("users") if u["accountEnabled"]]
    soft, hard, disabled = enabled[0]["id"], enabled[1]["id"], enabled[2]["id"]
    control.delete("users", soft)
    control.delete("users", hard, hard=True)
    control.update("users", disabled, {"accountEnabled": False})

    sent = len(receiver.applied)
    marked = await run(services, config)
    assert marked.mode == mode
    marks = {r["id"]: r for r in delivered(receiver, sent)}
    assert {k: (v["op"], v["reason"], v["attributes"]) for k, v in marks.items()} == {
        soft: ("mark", "soft_deleted", {"status": "Deleted", "removal": "soft_deleted"}),
        hard: ("mark", "deleted", {"status": "Deleted", "removal": "deleted"}),
        disabled: ("mark", "out_of_scope", {"status": "Deleted", "removal": "out_of_scope"}),
    }
    sent = len(receiver.applied)
    assert (await run(services, config)).load.counts["marks"] == 0 and delivered(receiver, sent) == []

    control.restore("users", soft)
    await run(services, config)
    [back] = delivered(receiver, sent)
    assert back["id"] == soft and back["op"] == "upsert" and back["restored"] is True
    assert back["attributes"]["status"] == "Active" and back["attributes"]["removal"] is None
    assert back["attributes"]["login"] == enabled[0]["userPrincipalName"]
    sent = len(receiver.applied)
    await run(services, config)
    assert delivered(receiver, sent) == []


async def test_housekeeping_keeps_the_last_runs_and_what_the_state_refers_to(
    graph, control, services, receiver
):
    config = delivery_config(graph.info, receiver.url, guard={"max_marks": 1}, keep_runs=2)
    first = await run(services, config)
    for user in control.objects("users")[:3]:
        control.delete("users", user["id"])
    held = [await run(services, config, expect="held") for _ in range(4)]
    folders = {
        blob.name.split("/")[2] for blob in services.extracts.list_blobs(name_starts_with="people/runs/")
    }
    # the two newest, the delivered view (first), the held run (the newest, also the latest view)
    assert folders == {first.run_id, held[-2].run_id, held[-1].run_id}
    state = await delivery_store(services).get("people")
    assert state.delivered.run_id == first.run_id and state.held.run_id == held[-1].run_id


async def test_a_task_without_endpoint_delivers_to_blob_only(graph, control, services):
    config = delivery_config(graph.info, None)
    first = await run(services, config)
    assert "blob only" in first.load.info and len(await changes(services, first.load.file)) == len(
        control.objects("users")
    )
    user = control.objects("users")[0]["id"]
    control.update("users", user, {"jobTitle": "Cartographer"})
    second = await run(services, config)
    [change] = await changes(services, second.load.file)
    assert change["id"] == user and change["attributes"]["title"] == "Cartographer"


async def test_entra_token_for_the_receivers_scope(graph, control, services):
    control.create(
        "applications", {"displayName": "Platform API", "identifierUris": ["api://platform-receiver"]}
    )

    def token_check(token: str) -> bool:
        claims = graph.ctx.identity.claims(token)
        return claims is not None and claims["aud"] == "api://platform-receiver"

    with PlatformReceiver(
        str(graph.tls.server_cert_file), str(graph.tls.server_key_file), token_check=token_check
    ) as receiver:
        config = delivery_config(
            graph.info,
            receiver.url,
            endpoint={"auth": {"type": "entra", "scope": "api://platform-receiver/.default"}},
        )
        await run(services, config)
        assert len(delivered(receiver)) == len(control.objects("users"))
        assert receiver.applied[0].headers["authorization"].startswith("Bearer ")


def test_the_batch_format_schema_in_the_repository_is_the_generated_one():
    from shared.delivery.batches import SCHEMA_PATH, render_batch_schema

    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_batch_schema(), (
        "run: python -m shared.delivery --write-schema"
    )


async def test_a_failed_run_produces_its_failure_record_and_event(graph, services, receiver, caplog, environ):
    caplog.set_level(logging.ERROR, logger="shared.delivery.failures")
    config = delivery_config(graph.info, receiver.url)
    environ["LOCALGRAPH_CLIENT_SECRET"] = "wrong-Secret-value-7"  # the identity platform refuses it
    failed = await run(services, config, expect="failed")
    assert failed.extract.status == "failed" and failed.load is None
    [record] = failure_records(receiver)
    assert record["id"] == f"people/{failed.run_id}"
    assert record["attributes"]["error"].startswith(
        f"people run {failed.run_id} failed: AuthenticationFailed"
    )
    assert receiver.applied[-1].streams == {
        "failure": {"target_template": "task_failure", "target_folder": "failures", "key": "id"}
    }
    [event] = [r for r in caplog.records if getattr(r, "event", None) == "TaskRunFailed"]
    assert event.run_status == "failed" and event.failed_run == failed.run_id
    assert event.error_text == failed.error
    assert delivered(receiver) == []


@pytest.mark.parametrize("mode", ["full", "incremental"])
async def test_groups_are_marked_too(mode, graph, control, services, receiver):
    from tests.support import GROUP_MAPPINGS

    task = {
        "name": "people",
        "connector": "local",
        "mode": mode,
        "mappings_type": "access",
        "groups": {
            "mappings": GROUP_MAPPINGS,
            "target_template": "entitlement",
            "target_folder": "entitlements",
            "deletion_marking": {"attribute": "status", "value": "5 - Removed", "reason_attribute": "why"},
        },
        "delivery": {
            "endpoint": {
                "url": receiver.url,
                "auth": {"type": "api_key", "key": {"app_setting": "RECEIVER_API_KEY"}},
            }
        },
    }
    config = parse_config({"connectors": [connector_for(graph.info)], "tasks": [task]})
    await run(services, config)
    groups = control.objects("groups")
    assert {r["id"] for r in delivered(receiver)} == {g["id"] for g in groups}
    soft, hard = groups[0]["id"], groups[1]["id"]
    control.delete("groups", soft)
    control.delete("groups", hard, hard=True)
    sent = len(receiver.applied)
    await run(services, config)
    marks = {r["id"]: (r["op"], r["attributes"]) for r in delivered(receiver, sent) if r["op"] == "mark"}
    assert marks == {
        soft: ("mark", {"status": "5 - Removed", "why": "soft_deleted"}),
        hard: ("mark", {"status": "5 - Removed", "why": "deleted"}),
    }


async def test_changing_the_deletion_marking_keeps_incremental_reads(graph, control, services, receiver):
    config = delivery_config(graph.info, receiver.url, mode="incremental")
    await run(services, config)
    remarked = delivery_config(
        graph.info,
        receiver.url,
        mode="incremental",
        users={"deletion_marking": {**MARKING, "value": "Removed", "reason_attribute": None}},
    )
    second = await run(services, remarked)
    assert (second.mode, second.resync_reason) == ("incremental", None)  # delivery-only: no re-read
    assert second.load.counts["upserts"] == 0
    gone = control.objects("users")[0]["id"]
    control.delete("users", gone)
    sent = len(receiver.applied)
    third = await run(services, remarked)
    assert third.mode == "incremental"
    assert [(r["id"], r["attributes"]) for r in delivered(receiver, sent)] == [(gone, {"status": "Removed"})]
    retitled = delivery_config(
        graph.info, receiver.url, mode="incremental", users={"mappings": USER_MAPPINGS[:-1]}
    )
    assert (await run(services, retitled)).mode == "full"  # a mapping shapes the records: a full read


async def test_a_cache_clear_made_while_a_run_loads_is_kept(graph, control, services, receiver):
    import asyncio
    import threading

    config = delivery_config(graph.info, receiver.url)
    users = {u["id"] for u in control.objects("users")}
    await run(services, config)
    control.update("users", sorted(users)[0], {"jobTitle": "Surveyor"})

    def clear_while_loading(_batch) -> None:  # the CLI or the admin API, from another process
        receiver.on_apply = None
        clearing = threading.Thread(target=asyncio.run, args=(clear_cache(services, config.tasks[0]),))
        clearing.start()
        clearing.join()

    receiver.on_apply = clear_while_loading
    loaded = await run(services, config)
    assert loaded.load.counts["upserts"] == 1 and receiver.on_apply is None  # the clear came during its load
    sent = len(receiver.applied)
    await run(services, config)  # the next run delivers every record once
    assert sorted(r["id"] for r in delivered(receiver, sent)) == sorted(users)


def platform_view(receiver: PlatformReceiver) -> dict[str, dict[str, Any]]:
    """What the platform holds after applying the batches in the order it received them (last write wins)."""
    held: dict[str, dict[str, Any]] = {}
    for record in delivered(receiver):
        held[record["id"]] = {**held.get(record["id"], {}), **record["attributes"]}
    return held


async def test_a_batch_id_is_not_reused_for_content_the_receiver_has_since_overwritten(
    graph, control, services, receiver
):
    config = delivery_config(graph.info, receiver.url, endpoint={"batch_size": 1})
    await run(services, config)
    one, two = sorted(u["id"] for u in control.objects("users"))[:2]
    control.update("users", one, {"jobTitle": "Alpha"})
    control.update("users", two, {"jobTitle": "Beta"})
    sent = len(receiver.applied)
    receiver.fail(400, times=100, after=sent + 1)  # the first change lands, the second is refused
    await run(services, config, expect="failed")
    [landed] = delivered(receiver, sent)
    assert landed["attributes"]["title"] in ("Alpha", "Beta")
    first = landed["id"]
    control.update("users", first, {"jobTitle": "Gamma"})  # then it changes again ...
    receiver.heal()
    receiver.fail(400, times=100, after=len(receiver.applied) + 1)
    await run(services, config, expect="failed")
    assert platform_view(receiver)[first]["title"] == "Gamma"  # ... and that lands, the rest refused again
    control.update("users", first, {"jobTitle": landed["attributes"]["title"]})  # ... and back
    receiver.heal()
    await run(services, config)
    platform = platform_view(receiver)
    assert (platform[one]["title"], platform[two]["title"]) == ("Alpha", "Beta")  # what the cache says
    assert (await run(services, config)).load.counts["upserts"] == 0


async def test_the_api_key_and_tokens_are_never_logged_nor_kept(graph, control, services, receiver, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpcore included
    # httpx too, even where shared.logs.quiet_http_client raised its level (an earlier test may have called it):
    # even at its most verbose, nothing it logs carries the key.
    caplog.set_level(logging.DEBUG, logger="httpx")
    config = delivery_config(graph.info, receiver.url, endpoint={"batch_size": 15})
    receiver.fail(401, times=1, after=1, echo_key=True)  # an answer the history keeps, repeating the key
    failed = await run(services, config, expect="failed")
    assert "401" in failed.error and receiver.applied[0].headers["x-api-key"] == API_KEY  # it was sent
    assert "refused credential ***" in failed.error  # the receiver's answer, without the key it repeated
    await run(services, config)
    stored = [r.model_dump_json() for r in await services.history.list("people", limit=10)]
    state = (await delivery_store(services).get("people")).model_dump_json()
    run_logs = [
        b"".join(services.extracts.download_blob(blob.name).chunks()).decode()
        for blob in services.extracts.list_blobs(name_starts_with="people/runs/")
        if blob.name.endswith(".log")
    ]
    assert run_logs and len(stored) == 2 and "HTTP Request: POST" in caplog.text
    for text in [caplog.text, state, *stored, *run_logs]:
        assert API_KEY not in text and graph.info.client_secret not in text


async def test_a_new_target_template_or_folder_receives_every_record_once(graph, control, services, receiver):
    config = delivery_config(graph.info, receiver.url, mode="incremental")
    users = sorted(u["id"] for u in control.objects("users"))
    await run(services, config)
    moved = delivery_config(graph.info, receiver.url, mode="incremental", users={"target_folder": "people"})
    sent = len(receiver.applied)
    again = await run(services, moved)
    assert again.mode == "incremental"  # a target is no read setting
    assert sorted(r["id"] for r in delivered(receiver, sent)) == users
    assert {b.streams["users"]["target_folder"] for b in receiver.applied[sent:]} == {"people"}
    assert (await run(services, moved)).load.counts["upserts"] == 0  # once


async def test_a_load_the_receiver_took_but_the_cache_did_not_record_is_not_sent_again(
    graph, control, services, receiver
):
    """Between the receiver's last answer and the cache's advance the run loses its lease (another process
    took the task, as after a crash): the cache stays, and the next run finds every batch acknowledged."""
    import time as clock

    from azure.storage.blob import BlobLeaseClient

    config = delivery_config(graph.info, receiver.url, endpoint={"batch_size": 15})
    users = sorted(u["id"] for u in control.objects("users"))

    def take_the_lease(batch) -> None:
        if len(receiver.applied) == 3:  # the last batch
            receiver.on_apply = None
            BlobLeaseClient(services.leases.get_blob_client("people.lock")).break_lease(lease_break_period=0)
            clock.sleep(services.settings.lease_s / 3 + 1.5)  # the run's next renewal fails meanwhile

    receiver.on_apply = take_the_lease
    lost = await run(services, config, expect="failed")
    assert "lease was lost" in lost.error and lost.load.counts["batches_sent"] == 3
    assert (await delivery_store(services).get("people")).delivered is None  # the cache stayed

    second = await run(services, config)
    assert second.load.counts["batches_skipped"] == 3 and second.load.counts["batches_sent"] == 0
    assert sorted(r["id"] for r in delivered(receiver)) == users  # each once
    keys = [key for key, _ in receiver.attempts]
    assert len(keys) == len(set(keys)) == 4  # three batches and the lost run's failure record, each once
    assert (await delivery_store(services).get("people")).delivered.run_id == second.run_id


async def test_a_lease_taken_during_the_load_keeps_the_cache_even_before_the_renewer_notices(
    graph, control, services, receiver
):
    """Another process takes the task over during the load, and the run's background renewal has not run since:
    the run still does not advance the cache (the lease is renewed right before, and that fails)."""
    from azure.storage.blob import BlobLeaseClient

    config = delivery_config(graph.info, receiver.url, endpoint={"batch_size": 15})
    lock = services.leases.get_blob_client("people.lock")
    second = BlobLeaseClient(lock)

    def take_the_lease(batch) -> None:
        if len(receiver.applied) == 3:  # the last batch
            receiver.on_apply = None
            BlobLeaseClient(lock).break_lease(lease_break_period=0)
            second.acquire(lease_duration=60)

    receiver.on_apply = take_the_lease
    lost = await run(services, config, expect="failed")
    assert "lease was lost" in lost.error and lost.load.counts["batches_sent"] == 3
    assert (await delivery_store(services).get("people")).delivered is None  # the cache stayed
    assert lock.get_blob_properties().lease.state == "leased"  # still the second holder's
    second.release()


async def test_a_run_the_queue_gave_up_on_delivers_its_failure_record(graph, services, receiver):
    from shared.extract.poison import record_poisoned

    await services.config_store.save(delivery_config(graph.info, receiver.url))
    request = RunRequest(task="people", trigger="timer")
    record = await record_poisoned(services, request.model_dump_json().encode(), 5)
    assert record.status == "failed" and record.error == "gave up after 5 attempts"
    [failure] = failure_records(receiver)
    assert failure == {
        "op": "failure",
        "stream": "failure",
        "id": f"people/{record.run_id}",
        "attributes": {"error": f"people run {record.run_id} failed: gave up after 5 attempts"},
    }


async def test_an_object_restored_after_a_cache_clear_comes_back_unmarked(graph, control, services, receiver):
    config = delivery_config(graph.info, receiver.url, mode="incremental")
    await run(services, config)
    first, second = (u["id"] for u in control.objects("users")[:2])
    control.delete("users", first)
    control.delete("users", second)
    assert (await run(services, config)).load.counts["marks"] == 2

    await clear_cache(services, config.tasks[0])  # the daily clear, or on demand
    control.restore("users", first)
    sent = len(receiver.applied)
    cleared = await run(services, config)
    everything = delivered(receiver, sent)
    assert len(everything) == len(control.objects("users"))  # every record once, no mark again
    [back] = [r for r in everything if r["id"] == first]
    assert back["restored"] is True and back["attributes"]["status"] == "Active"
    assert back["attributes"]["removal"] is None and cleared.load.counts["marks"] == 0
    control.restore("users", second)  # and one restored a day later still is
    sent = len(receiver.applied)
    await run(services, config)
    [later] = delivered(receiver, sent)
    assert later["id"] == second and later["restored"] is True and later["attributes"]["status"] == "Active"


async def test_load_logs_of_an_abandoned_base_are_removed_once_the_cache_advances(graph, services, receiver):
    config = delivery_config(graph.info, receiver.url, endpoint={"batch_size": 7})
    await run(services, config)
    await clear_cache(services, config.tasks[0])
    receiver.fail(400, times=1, after=len(receiver.applied) + 2)  # a partial load after the clear
    await run(services, config, expect="failed")
    logs = [b.name for b in services.extracts.list_blobs(name_starts_with="people/cache/acknowledged-")]
    assert len(logs) == 1
    await clear_cache(services, config.tasks[0])  # cleared again: the next load starts from another base
    await run(services, config)
    assert [b.name for b in services.extracts.list_blobs(name_starts_with="people/cache/")] == []


async def test_a_mark_carries_the_key_value_of_a_task_keyed_by_another_attribute(
    graph, control, services, receiver
):
    config = delivery_config(graph.info, receiver.url, users={"key": "userPrincipalName"})
    await run(services, config)
    user = control.objects("users")[0]
    control.delete("users", user["id"])
    sent = len(receiver.applied)
    await run(services, config)
    [mark] = delivered(receiver, sent)
    assert receiver.applied[-1].streams["users"]["key"] == "userPrincipalName"
    assert (mark["op"], mark["id"]) == ("mark", user["id"])
    assert mark["attributes"] == {
        "status": "Deleted",
        "removal": "soft_deleted",
        "login": user["userPrincipalName"],
    }


async def test_a_run_redelivered_after_its_delivery_but_before_its_history_row_still_marks(
    graph, control, services, receiver
):
    config = delivery_config(graph.info, receiver.url, mode="incremental")
    await run(services, config)
    crashed = await run(services, config)
    record = await services.history.get("people", crashed.run_id)
    assert record is not None
    record.status = "running"  # the process died after the cache advanced, before the history row
    await services.history.put(record)
    gone = control.objects("users")[0]["id"]
    control.delete("users", gone)
    sent = len(receiver.applied)
    await run(services, config, run_id=crashed.run_id, trigger="timer")  # the queue delivers it again
    await run(services, config)
    assert [(r["op"], r["id"]) for r in delivered(receiver, sent)] == [("mark", gone)]


async def test_a_storage_error_reading_the_delivery_state_is_a_failed_load_with_its_history(
    graph, services, receiver
):
    """The task's delivery state is read inside the load's own error handling: a storage error there fails
    the load (the extract stays committed), and the run's history row says so."""
    from shared.storage.delivery import ROW_KEY

    config = delivery_config(graph.info, receiver.url)
    await run(services, config)
    services.state.table.upsert_entity({"PartitionKey": "people", "RowKey": ROW_KEY, "state": "{not json"})
    failed = await run(services, config, expect="failed")
    assert failed.extract.status == "succeeded" and failed.load.status == "failed"
    assert failed.load.info.startswith("load failed: ValidationError")
    stored = await services.history.get("people", failed.run_id)
    assert stored.status == "failed" and stored.load.status == "failed"


@pytest.mark.parametrize("mode", ["full", "incremental"])
async def test_a_stream_taken_out_of_the_task_marks_its_objects_once(
    mode, graph, control, services, receiver
):
    """identity_and_access -> identity: the groups the task delivered are marked (with the marking they were
    delivered with), once; they leave the cache, and the users go on as before."""
    from tests.support import GROUP_MAPPINGS

    def config(mappings_type: str):
        task: dict[str, Any] = {
            "name": "people",
            "connector": "local",
            "mode": mode,
            "mappings_type": mappings_type,
            "users": {
                "mappings": USER_MAPPINGS,
                "target_template": "account",
                "target_folder": "accounts",
                "deletion_marking": MARKING,
            },
            "delivery": {
                "endpoint": {
                    "url": receiver.url,
                    "auth": {"type": "api_key", "key": {"app_setting": "RECEIVER_API_KEY"}},
                }
            },
        }
        if mappings_type == "identity_and_access":
            task["groups"] = {
                "mappings": GROUP_MAPPINGS,
                "target_template": "entitlement",
                "target_folder": "entitlements",
                "deletion_marking": {
                    "attribute": "status",
                    "value": "5 - Removed",
                    "reason_attribute": "why",
                },
            }
        return parse_config({"connectors": [connector_for(graph.info)], "tasks": [task]})

    await run(services, config("identity_and_access"))
    groups = {g["id"] for g in control.objects("groups")}
    assert {r["id"] for r in delivered(receiver) if r["stream"] == "groups"} == groups
    sent = len(receiver.applied)
    narrowed = await run(services, config("identity"))
    marks = [r for r in delivered(receiver, sent)]
    assert {r["id"] for r in marks} == groups and {r["op"] for r in marks} == {"mark"}
    assert {r["stream"] for r in marks} == {"groups"}
    assert all(r["attributes"] == {"status": "5 - Removed", "why": "out_of_scope"} for r in marks)
    [batch] = receiver.applied[sent:]
    assert batch.streams["groups"] == {
        "target_template": "entitlement",
        "target_folder": "entitlements",
        "key": "id",
    }
    assert narrowed.load.counts["streams"]["groups"]["marked"] == len(groups)
    state = await delivery_store(services).get("people")
    assert set(state.delivered.digests) == {"users"}
    sent = len(receiver.applied)
    again = await run(services, config("identity"))
    assert again.load.counts["marks"] == 0 and len(receiver.applied) == sent  # marked once
