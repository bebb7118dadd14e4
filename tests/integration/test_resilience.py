"""Runs that meet trouble: throttling, 5xx bursts, a killed worker, a concurrent run, expiring tokens,
refused delta links, rejected credentials. Each ends with output equal to the tenant (or, for a failure,
with the previous output and state untouched).

Local Graph (real HTTPS, real tokens, fault rules and a real resource-unit bucket) -> runner -> Azurite.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import shared.extract.pipeline
from localgraph.context import GraphSettings
from localgraph.generate import TenantShape
from shared.extract.runner import run_task
from shared.services import Services
from shared.settings import Settings
from shared.storage import blobs
from shared.storage.queues import RunRequest
from shared.storage.tables import RunRecord
from tests.support import expected_groups, expected_users, read_records, task_config


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    # Backoff without Retry-After starts at 50 ms instead of 1 s, so bursts of 5xx stay quick.
    return {**environ, "GRAPH_BACKOFF_SECONDS": "0.05"}


async def run(services: Services, config, run_id: str | None = None, **request: Any) -> RunRecord:
    kwargs = {"run_id": run_id} if run_id else {}
    return (await run_task(services, RunRequest(task="people", **kwargs, **request), config=config)).record


async def assert_output_is_the_tenant(services: Services, control, record: RunRecord) -> None:
    assert record.status == "succeeded", record.error
    if "users" in record.files:
        assert await read_records(services, record.files["users"]) == expected_users(control)
    if "groups" in record.files:
        assert await read_records(services, record.files["groups"]) == expected_groups(control)


def paged_config(info, top: int, **options: Any):
    """The standard task, reading users ``top`` at a time (more pages, more chances for faults)."""
    return task_config(info, users={"query": f"$top={top}"}, **options)


# ----------------------------------------------------------------------------------- throttling


async def test_429_storm_with_retry_after_is_ridden_out(graph, control, services):
    control.set_faults(
        {"status": 429, "retry_after": 1, "path": "^/users", "every": 3},
        {"status": 429, "retry_after": 1, "path": "^/groups/.*/members", "every": 3},
    )
    record = await run(services, paged_config(graph.info, 20))
    await assert_output_is_the_tenant(services, control, record)
    stored = await services.history.get("people", record.run_id)
    server = control.requests()
    assert stored.requests["throttled"] == server["throttled"] == int(server["statuses"]["429"]) > 0
    assert stored.requests["retries"] > 0
    # 60 users, 20 a page: 3 pages, the 3rd throttled once; 10 groups' members: every 3rd step throttled.
    assert server["by_path"]["GET /users"] == 4


async def test_429_storm_without_retry_after_backs_off_and_succeeds(graph, control, services):
    control.set_faults(
        {"status": 429, "retry_after": None, "path": "^/users", "count": 2},
        {"status": 429, "retry_after": None, "path": "^/groups/.*/members", "count": 4},
    )
    record = await run(services, paged_config(graph.info, 20))
    await assert_output_is_the_tenant(services, control, record)
    assert record.requests["throttled"] == 6
    assert record.requests["waited_s"] > 0
    assert control.requests()["statuses"]["429"] == 6


async def test_503_burst_is_retried_and_changes_nothing(graph, control, services):
    control.set_faults({"status": 503, "count": 5, "retry_after": None})
    record = await run(services, task_config(graph.info))
    await assert_output_is_the_tenant(services, control, record)
    assert control.requests()["statuses"]["503"] == 5
    assert record.requests["retries"] >= 1 and record.requests["throttled"] == 0


@pytest.mark.parametrize("graph_shape", [TenantShape(users=40, seed=5)])
async def test_a_real_resource_unit_budget_throttles_the_run_and_it_still_completes(graph, control, services):
    # Under 50 users Graph's budget is 3,500 RU per 10 s, which a run this small never reaches; the same
    # bucket with 10 RU per second makes the run meet it within a second [docs/graph-behaviour.md section 5].
    control.settings(resource_unit_budget=10, resource_unit_window_s=1.0)
    record = await run(services, task_config(graph.info))
    await assert_output_is_the_tenant(services, control, record)
    server = control.requests()
    assert server["throttled"] > 0
    assert record.requests["throttled"] == server["throttled"]  # every 429 was seen and ridden out
    assert record.requests["retries"] > 0


# ---------------------------------------------------------------------------------- killed worker


@pytest.mark.parametrize("graph_shape", [TenantShape(users=3000, groups=10, memberships=3000, seed=7)])
async def test_a_killed_run_leaves_the_last_output_and_the_redelivered_run_resumes(
    graph, control, services, monkeypatch
):
    config = task_config(graph.info, mappings_type="identity", users={"query": "$top=100"})
    first = await run(services, config, run_id="20261128T010000Z-aaaaaa")
    await assert_output_is_the_tenant(services, control, first)

    monkeypatch.setattr(shared.extract.pipeline, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint after every page
    control.settings(latency_ms=50)
    killed_id = "20261128T020000Z-bbbbbb"
    task = asyncio.create_task(run(services, config, run_id=killed_id))
    while True:  # until the run has checkpointed a few pages
        await asyncio.sleep(0.05)
        assert not task.done(), task.result()
        checkpoint = (await services.state.get("people")).checkpoint
        if (
            checkpoint is not None
            and "users" in checkpoint.streams
            and checkpoint.streams["users"].read >= 500
        ):
            break
    task.cancel()  # the worker is recycled mid-run
    with pytest.raises(asyncio.CancelledError):
        await task

    # Nothing of the killed run is visible; the current view is still the first run's.
    state = await services.state.get("people")
    assert state.view.run_id == first.run_id
    assert (await blobs.get_json(services.extracts, "people/latest.json"))["run_id"] == first.run_id
    assert state.checkpoint is not None and state.checkpoint.run_id == killed_id
    saved = state.checkpoint.streams["users"]
    assert saved.next_link and saved.blocks and saved.read % 100 == 0
    prefix = blobs.run_prefix("people", killed_id)
    assert [b.name for b in services.extracts.list_blobs(name_starts_with=prefix)] == []
    assert await blobs.get_json(services.extracts, f"{prefix}/manifest.json") is None
    # The runner released the lease as it was cancelled: the next delivery need not wait for it to expire.
    lock = services.leases.get_blob_client("people.lock").get_blob_properties()
    assert lock.lease.state == "available"
    interrupted = await services.history.get("people", killed_id)
    assert interrupted.status == "running"

    # The queue delivers the message again: same run id, it resumes from the checkpoint.
    control.settings(latency_ms=0)
    control.clear_requests()
    resumed = await run(services, config, run_id=killed_id)
    await assert_output_is_the_tenant(services, control, resumed)
    assert resumed.mode == "full" and resumed.attempt == 2
    assert control.requests()["by_path"]["GET /users"] == 30 - saved.read // 100
    assert resumed.counts["users"].read == resumed.counts["users"].written == 3000
    state = await services.state.get("people")
    assert state.view.run_id == killed_id and state.checkpoint is None
    assert (await blobs.get_json(services.extracts, "people/latest.json"))["previous_run_id"] == first.run_id


# ------------------------------------------------------------------------------ concurrent runs


async def test_two_concurrent_runs_of_one_task_one_runs_the_other_is_skipped(
    graph, control, services, caplog
):
    caplog.set_level(logging.INFO)  # the level the Functions host logs at: each run keeps its log lines
    control.settings(latency_ms=150)  # the run holds the lease well past the other's attempt to take it
    config = task_config(graph.info)
    one, two = await asyncio.gather(
        run(services, config, run_id="20261128T010000Z-111111"),
        run(services, config, run_id="20261128T010000Z-222222"),
    )
    statuses = sorted([one.status, two.status])
    assert statuses == ["skipped", "succeeded"], (one.error, two.error)
    winner, loser = (one, two) if one.status == "succeeded" else (two, one)
    stored = await services.history.get("people", loser.run_id)
    assert stored.status == "skipped" and stored.error == "another run of this task is in progress"
    assert stored.files == {}
    await assert_output_is_the_tenant(services, control, winner)
    assert (await services.state.get("people")).view.run_id == winner.run_id
    assert (await blobs.get_json(services.extracts, "people/latest.json"))["run_id"] == winner.run_id
    names = {b.name for b in services.extracts.list_blobs(name_starts_with="people/runs/")}
    # The skipped run wrote no data: only its own log lines, which say why it did not run.
    assert {name for name in names if loser.run_id in name} == {f"people/runs/{loser.run_id}/run.log"}
    assert (
        b"another run of this task holds the lease: skipped"
        in services.extracts.download_blob(f"people/runs/{loser.run_id}/run.log").readall()
    )


# --------------------------------------------------------------------------------- token expiry


@pytest.mark.parametrize("graph_settings", [GraphSettings(token_lifetime_s=2, latency_ms=300)])
async def test_tokens_expiring_during_a_run_are_renewed(graph, control, services):
    # 60 users 4 a page: 15 sequential pages of 300 ms each outlive two-second tokens twice over.
    config = task_config(graph.info, mappings_type="identity", users={"query": "$top=4"})
    record = await run(services, config)
    await assert_output_is_the_tenant(services, control, record)
    server = control.requests()
    assert server["token_requests"] >= 3
    assert record.requests["token_acquisitions"] >= 3
    # A 401 (a token that expired in flight) is answered by one renewal: never two 401s for one request,
    # which the client would have turned into a failed run.
    assert int(server["statuses"].get("401", 0)) < server["token_requests"]
    assert server["statuses"]["200"] == 15


# ---------------------------------------------------------------------------- refused delta links


@pytest.mark.parametrize(
    ("mode", "code"), [("syncStateNotFound", "syncStateNotFound"), ("reset", "resyncRequired")]
)
async def test_a_refused_delta_link_turns_the_run_into_a_full_resync(graph, control, services, mode, code):
    config = task_config(graph.info, mode="incremental")
    first = await run(services, config)
    assert first.status == "succeeded" and first.mode == "full", first.error
    old_links = (await services.state.get("people")).delta_links
    assert set(old_links) == {"users", "groups"}

    users = control.objects("users")
    control.update("users", users[0]["id"], {"jobTitle": "Resynced"})
    control.delete("users", users[1]["id"])
    control.invalidate_delta_tokens(mode)
    second = await run(services, config)
    await assert_output_is_the_tenant(services, control, second)
    assert second.mode == "full"
    assert second.resync_reason == f"Graph refused the delta link ({code}): full resync"
    assert second.counts["users"].changed == 1 and second.counts["users"].removed == 1
    state = await services.state.get("people")
    assert state.view.run_id == second.run_id
    assert set(state.delta_links) == {"users", "groups"}
    assert not set(state.delta_links.values()) & set(old_links.values())

    # The new links work: the next run is incremental again.
    third = await run(services, config)
    await assert_output_is_the_tenant(services, control, third)
    assert third.mode == "incremental"


# ------------------------------------------------------------------------------------- failures


async def test_a_rejected_secret_fails_the_run_and_leaves_the_last_output(graph, control, services, environ):
    config = task_config(graph.info, mode="incremental")
    good = await run(services, config)
    assert good.status == "succeeded"
    before = await services.state.get("people")
    assert set(before.delta_links) == {"users", "groups"}
    wrong_secret = "not-the-secret-Zq8r2VbT"
    bad_environ = {**environ, "LOCALGRAPH_CLIENT_SECRET": wrong_secret}
    bad_services = Services(Settings.from_environ(bad_environ), environ=bad_environ)
    failed = await run(bad_services, config)

    assert failed.status == "failed"
    assert "AADSTS7000215" in failed.error  # the identity platform's code for an invalid client secret
    stored = await services.history.get("people", failed.run_id)
    assert stored.status == "failed" and stored.error == failed.error
    for secret in (wrong_secret, graph.info.client_secret):
        assert secret not in stored.error and secret not in stored.model_dump_json()
    await assert_unchanged(services, good, before)


async def test_an_app_without_permissions_fails_with_graphs_code(graph, control, services, environ):
    config = task_config(graph.info)
    good = await run(services, config)
    before = await services.state.get("people")
    app = control.add_app(roles=[], display_name="No permissions")
    weak = config.model_copy(
        update={"connectors": [config.connectors[0].model_copy(update={"client_id": app["client_id"]})]}
    )
    weak_environ = {**environ, "LOCALGRAPH_CLIENT_SECRET": app["client_secret"]}
    weak_services = Services(Settings.from_environ(weak_environ), environ=weak_environ)
    failed = await run(weak_services, weak)

    assert failed.status == "failed"
    assert "Forbidden: 403 Authorization_RequestDenied" in failed.error
    assert "request-id" in failed.error
    assert app["client_secret"] not in failed.error
    await assert_unchanged(services, good, before)


async def assert_unchanged(services: Services, good: RunRecord, before) -> None:
    """The view, the delta links and latest.json are the good run's, as before the failed run."""
    state = await services.state.get("people")
    assert state == before  # view, delta links, and no checkpoint left behind by the failed run
    assert state.view.run_id == good.run_id
    assert (await blobs.get_json(services.extracts, "people/latest.json"))["run_id"] == good.run_id
    assert await read_records(services, good.files["users"])  # still there, still readable


@pytest.mark.parametrize("graph_shape", [TenantShape(users=200, groups=600, memberships=3000, seed=9)])
async def test_a_killed_group_read_resumes_without_losing_or_repeating_groups(
    graph, control, services, monkeypatch
):
    # Group pages are processed a few at a time and finish out of order; the checkpoint must name exactly
    # the blocks of the finished prefix of pages, or a resumed run repeats or loses groups.
    config = task_config(graph.info, mappings_type="access", groups={"query": "$top=20"})
    monkeypatch.setattr(shared.extract.pipeline, "CHECKPOINT_EVERY_S", 0.0)
    control.settings(latency_ms=10, latency_jitter_ms=20)  # pages finish out of order, close together
    run_id = "20261128T030000Z-cccccc"
    task = asyncio.create_task(run(services, config, run_id=run_id))
    while True:
        await asyncio.sleep(0.05)
        assert not task.done(), task.result()
        checkpoint = (await services.state.get("people")).checkpoint
        if (
            checkpoint is not None
            and "groups" in checkpoint.streams
            and checkpoint.streams["groups"].read >= 100
        ):
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    saved = (await services.state.get("people")).checkpoint.streams["groups"]
    assert len(saved.blocks) == len(set(saved.blocks)) == saved.read // 20
    control.settings(latency_ms=0, latency_jitter_ms=0)
    resumed = await run(services, config, run_id=run_id)
    await assert_output_is_the_tenant(services, control, resumed)  # read_records refuses duplicates


async def test_a_checkpoint_made_for_another_configuration_is_not_resumed(
    graph, control, services, monkeypatch
):
    monkeypatch.setattr(shared.extract.pipeline, "CHECKPOINT_EVERY_S", 0.0)
    old = task_config(graph.info, mappings_type="identity", users={"query": "$top=10"})
    control.settings(latency_ms=30)
    run_id = "20261128T040000Z-dddddd"
    task = asyncio.create_task(run(services, old, run_id=run_id))
    while True:  # until the users stream has checkpointed
        await asyncio.sleep(0.05)
        checkpoint = (await services.state.get("people")).checkpoint
        if checkpoint is not None and checkpoint.streams.get("users"):
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    control.settings(latency_ms=0)
    control.clear_requests()
    new = task_config(graph.info, mappings_type="identity", users={"query": "$top=10", "mappings": [
        {"external": "displayName", "local": "display"}]})  # fmt: skip
    record = await run(services, new, run_id=run_id)
    assert record.status == "succeeded", record.error
    assert control.requests()["by_path"]["GET /users"] == 6  # all 60 users read again, 10 a page
    produced = await read_records(services, record.files["users"])
    assert all(set(attributes) == {"display", "task"} for attributes in produced.values())


async def test_a_token_refused_before_it_expires_is_replaced_by_a_new_one(graph, control, services):
    config = task_config(graph.info)
    first = await run(services, config)
    await assert_output_is_the_tenant(services, control, first)
    control.revoke_tokens()  # e.g. a signing-key rollover: the cached token is refused from now on
    control.clear_requests()
    record = await run(services, config)
    await assert_output_is_the_tenant(services, control, record)
    summary = control.requests()
    # Each stream in flight met one 401 with the old token; one new token served them all.
    assert summary["statuses"]["401"] >= 1 and summary["token_requests"] == 1
