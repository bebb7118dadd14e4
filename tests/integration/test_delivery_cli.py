"""The command line around delivery: a requested run is recorded as queued, a disabled task needs --force,
clear-cache and approve."""

from __future__ import annotations

import asyncio

import pytest

from localgraph.generate import TenantShape
from shared.cli import main
from shared.extract.runner import run_task
from shared.storage.queues import RunRequest
from tests.integration.test_delivery import delivery_config


def last_run(output: str) -> str:
    """The run id in the CLI's "run RUN of TASK: STATUS" line."""
    return next(line.split()[1] for line in output.splitlines() if line.startswith("run "))


@pytest.fixture
def graph_shape():
    return TenantShape(users=12, groups=2, memberships=10, seed=5)


@pytest.fixture
def cli_env(environ, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no local.settings.json
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    return environ


def test_a_requested_run_is_queued_and_a_disabled_task_runs_only_when_forced(
    graph, services, cli_env, capsys
):
    config = delivery_config(graph.info, None, enabled=False)
    asyncio.run(services.config_store.save(config))

    assert main(["enqueue", "people"]) == 1
    assert "disabled: add --force" in capsys.readouterr().err
    assert main(["enqueue", "people", "--force"]) == 0
    run_id = capsys.readouterr().out.split()[2]
    queued = asyncio.run(services.history.get("people", run_id))
    assert queued is not None and queued.status == "queued" and queued.trigger == "cli"

    refused = asyncio.run(run_task(services, RunRequest(task="people", trigger="manual")))
    assert refused.record.status == "skipped" and "disabled" in refused.record.error
    forced = asyncio.run(
        run_task(services, RunRequest(task="people", run_id=run_id, trigger="cli", force=True))
    )
    assert forced.record.status == "succeeded" and forced.record.attempt == 1
    assert main(["run", "people"]) == 1  # the CLI's own run is refused too
    assert main(["run", "people", "--force"]) == 0


def test_clear_cache_and_approve_from_the_command_line(graph, control, services, cli_env, capsys):
    config = delivery_config(graph.info, None, guard={"max_marks": 1})
    asyncio.run(services.config_store.save(config))
    assert main(["run", "people"]) == 0
    for user in control.objects("users")[:2]:
        control.delete("users", user["id"])
    capsys.readouterr()
    assert main(["run", "people"]) == 1
    held_run = asyncio.run(services.history.get("people", last_run(capsys.readouterr().out)))
    assert held_run.status == "held"
    assert main(["approve", "people", "20261130T000000Z-000000"]) == 1
    assert "is not held" in capsys.readouterr().err
    assert main(["approve", "people", held_run.run_id]) == 0
    assert "load: succeeded" in capsys.readouterr().out
    assert main(["approve", "people", held_run.run_id]) == 1
    assert "already released" in capsys.readouterr().err

    assert main(["clear-cache", "people"]) == 0
    capsys.readouterr()
    assert main(["run", "people"]) == 0
    everything = asyncio.run(services.history.get("people", last_run(capsys.readouterr().out)))
    assert everything.load.counts["upserts"] == len(control.objects("users"))
    assert main(["clear-cache", "nobody"]) == 1


async def test_the_history_lists_runs_of_one_second_by_their_start(services):
    from datetime import UTC, datetime, timedelta

    from shared.runs import RunRecord

    second = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
    # Run ids of one second sort by their random part: here against the order the runs started in.
    runs = [
        ("20261130T095959Z-aaaaaa", second - timedelta(seconds=1)),
        ("20261130T100000Z-ffffff", second + timedelta(milliseconds=900)),
        ("20261130T100000Z-000000", second + timedelta(milliseconds=100)),
        ("20261130T100000Z-777777", second + timedelta(milliseconds=500)),
    ]
    for run_id, started in runs:
        await services.history.put(RunRecord(task="people", run_id=run_id, trigger="cli", started_at=started))
    newest_first = ["20261130T100000Z-ffffff", "20261130T100000Z-777777", "20261130T100000Z-000000"]
    for limit in (1, 2, 3):
        assert [r.run_id for r in await services.history.list("people", limit=limit)] == newest_first[:limit]
    assert [r.run_id for r in await services.history.list("people", limit=4)][-1] == "20261130T095959Z-aaaaaa"


def test_clear_cache_reaches_a_task_keyed_by_its_id(graph, control, services, cli_env, capsys):
    config = delivery_config(graph.info, None, task_id="people-7f3a")  # a stored task's stable id
    asyncio.run(services.config_store.save(config))
    assert main(["run", "people"]) == 0 and main(["run", "people"]) == 0
    assert main(["clear-cache", "people"]) == 0
    capsys.readouterr()
    assert main(["run", "people"]) == 0
    everything = asyncio.run(services.history.get("people-7f3a", last_run(capsys.readouterr().out)))
    assert everything.load.counts["upserts"] == len(control.objects("users"))
