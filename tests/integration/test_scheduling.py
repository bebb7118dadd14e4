"""Scheduling: which tasks are due (NCRONTAB, coalesced), the tick that queues them (Azurite), the queue
worker that runs one (the Function App's handler, called as the host calls it), and poison messages."""

from __future__ import annotations

import base64
import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

import function_app
import functions.scheduling
from shared.config import parse_config
from shared.extract.poison import record_poisoned
from shared.scheduling import due_requests, latest_occurrence, tick
from shared.services import Services
from shared.storage.queues import RunRequest, scheduled_run_id
from tests.support import expected_users, read_records, task_config

AT = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)  # a Friday

OFFLINE_CONNECTOR = {
    "name": "local",
    "tenant_id": "contoso.onmicrosoft.com",
    "client_id": "3f2c1a9e-8b7d-4c6e-9f01-2a3b4c5d6e7f",
    "credential": {"type": "client_secret", "secret": {"app_setting": "LOCALGRAPH_CLIENT_SECRET"}},
}
USERS = {
    "mappings": [{"external": "displayName", "local": "name"}],
    "target_template": "account",
    "target_folder": "accounts",
}


def scheduled(*tasks: dict[str, Any], connector: dict[str, Any] = OFFLINE_CONNECTOR):
    return parse_config(
        {
            "connectors": [connector],
            "tasks": [
                {"connector": "local", "mode": "full", "mappings_type": "identity", "users": USERS, **t}
                for t in tasks
            ],
        }
    )


# ------------------------------------------------------------------------------- due occurrences


def test_latest_occurrence_reads_six_fields_seconds_first():
    # "30 * * * * *" is second 30 of every minute (in five-field cron it would be minute 30).
    assert latest_occurrence("30 * * * * *", AT, AT + timedelta(minutes=2, seconds=40)) == AT + timedelta(
        minutes=2, seconds=30
    )
    assert latest_occurrence("0 */15 * * * *", AT, AT + timedelta(minutes=14, seconds=59)) is None


def test_latest_occurrence_excludes_the_start_and_includes_the_end():
    every_15 = "0 */15 * * * *"
    assert latest_occurrence(every_15, AT, AT) is None
    assert latest_occurrence(every_15, AT - timedelta(seconds=1), AT) == AT
    assert latest_occurrence(every_15, AT, AT + timedelta(minutes=15)) == AT + timedelta(minutes=15)


def test_missed_occurrences_are_coalesced_into_the_latest():
    # Stopped from 09:00 to 10:50: 09:15 ... 10:45 were missed; one run, planned at 10:45.
    assert latest_occurrence("0 */15 * * * *", AT, AT + timedelta(hours=1, minutes=50)) == AT + timedelta(
        hours=1, minutes=45
    )
    # Weekdays at 02:30: from Friday 09:00 to Monday 09:00 the only occurrence is Monday 02:30.
    monday = AT + timedelta(days=3)
    assert latest_occurrence("0 30 2 * * 1-5", AT, monday) == monday.replace(hour=2, minute=30)
    assert latest_occurrence("0 30 2 * * 1-5", AT, monday - timedelta(days=1)) is None  # Sunday


def test_due_requests_consider_scheduled_tasks_only():
    config = scheduled({"name": "quarterly", "schedule": "0 */15 * * * *"})
    event = {"usage": "event", "name": "provisioning", "connector": "local", "mappings_type": "identity",
             "users": {"mappings": [{"local": "login", "external": "userPrincipalName"}]}}  # fmt: skip
    data = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    mixed = parse_config({**data, "tasks": [event, *data["tasks"]]})  # an event task has no schedule
    until = AT + timedelta(minutes=31)
    assert [r.task for r in due_requests(mixed, AT, until)] == ["quarterly"]


def test_due_requests_skip_disabled_and_unscheduled_tasks():
    config = scheduled(
        {"name": "quarterly", "schedule": "0 */15 * * * *"},
        {"name": "paused", "schedule": "0 */15 * * * *", "enabled": False},
        {"name": "on-demand"},
        {"name": "nightly", "schedule": "0 30 2 * * *"},
    )
    until = AT + timedelta(minutes=31)
    requests = due_requests(config, AT, until)
    planned = AT + timedelta(minutes=30)
    assert [(r.task, r.run_id, r.trigger, r.planned_at) for r in requests] == [
        ("quarterly", scheduled_run_id("quarterly", planned), "timer", planned)
    ]
    # Over a whole day: the nightly one too; the disabled and unscheduled ones never.
    names = [r.task for r in due_requests(config, AT, AT + timedelta(days=1))]
    assert names == ["quarterly", "nightly"]


def test_scheduled_run_ids_are_deterministic_and_sortable():
    one = scheduled_run_id("people", AT)
    assert one == scheduled_run_id("people", AT)
    assert one != scheduled_run_id("groups", AT)
    assert one.startswith("20261127T090000Z-")
    assert scheduled_run_id("people", AT + timedelta(seconds=1)) > one


# -------------------------------------------------------------------------------------- the tick


def queued(environ: dict[str, str]) -> list[RunRequest]:
    """The run queue's messages as the Functions host reads them: base64 text, then JSON."""
    raw = QueueClient.from_connection_string(environ["AzureWebJobsStorage"], environ["RUNS_QUEUE"])
    messages = raw.peek_messages(max_messages=32)
    return [RunRequest.model_validate_json(base64.b64decode(m.content, validate=True)) for m in messages]


async def test_tick_enqueues_each_due_task_once(services, environ):
    config = scheduled(
        {"name": "every-minute", "schedule": "0 * * * * *"},
        {"name": "hourly", "schedule": "0 0 * * * *"},
        {"name": "paused", "schedule": "0 * * * * *", "enabled": False},
    )
    await services.config_store.save(config)
    now = AT + timedelta(seconds=30)  # first tick: looks back one minute
    sent = sorted(await tick(services, now), key=lambda r: r.task)  # in no particular order
    assert [(r.task, r.planned_at) for r in sent] == [("every-minute", AT), ("hourly", AT)]
    on_queue = sorted(queued(environ), key=lambda r: r.task)
    assert [(r.task, r.run_id, r.trigger, r.planned_at) for r in on_queue] == [
        (r.task, scheduled_run_id(r.task, AT), "timer", AT) for r in sent
    ]
    # The same moment again (a timer fired twice): nothing new.
    assert await tick(services, now) == []
    assert len(queued(environ)) == 2
    # Three minutes later: the missed minutes are one run, planned at the latest.
    later = await tick(services, now + timedelta(minutes=3))
    assert [(r.task, r.planned_at) for r in later] == [("every-minute", AT + timedelta(minutes=3))]
    assert len(queued(environ)) == 3


async def test_tick_with_nothing_due_enqueues_nothing(services, environ):
    await services.config_store.save(scheduled({"name": "nightly", "schedule": "0 30 2 * * *"}))
    assert await tick(services, AT) == []
    assert queued(environ) == []


# ------------------------------------------------------------------------- the Function App handlers


def handler(name: str):
    """A function's handler, found by indexing the app as the host does at start. The SDK indexes an app
    object once (a second ``get_functions`` reports every name as a duplicate), so each lookup loads the
    app afresh, as a new worker process would."""
    app = importlib.reload(function_app).app
    return {f.get_function_name(): f for f in app.get_functions()}[name].get_user_function()


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    return {**environ, "RUN_DEADLINE_SECONDS": "5"}  # a throttled run gives up at once, not in an hour


@pytest.fixture
def hosted(services, monkeypatch) -> Services:
    """The Function App's handlers use the test's Services (the process-wide one in Azure)."""
    monkeypatch.setattr(functions.scheduling, "services", lambda: services)
    return services


def message(request: RunRequest | bytes) -> func.QueueMessage:
    body = request if isinstance(request, bytes) else request.model_dump_json().encode()
    return func.QueueMessage(id="m1", body=body)


async def test_queue_handler_runs_the_task_and_ignores_a_duplicate_delivery(graph, control, hosted):
    await hosted.config_store.save(task_config(graph.info, mappings_type="identity"))
    request = RunRequest(task="people", run_id=scheduled_run_id("people", AT), trigger="timer", planned_at=AT)
    run = handler("run_task")
    await run(message(request))
    record = await hosted.history.get("people", request.run_id)
    assert record.status == "succeeded" and record.trigger == "timer" and record.planned_at == AT
    assert await read_records(hosted, record.files["users"]) == expected_users(control)

    control.clear_requests()
    await run(message(request))  # delivered again after it succeeded
    assert await hosted.history.get("people", request.run_id) == record
    assert len(await hosted.history.list("people")) == 1
    assert control.requests()["http_calls"] == 0
    folders = {b.name.split("/")[2] for b in hosted.extracts.list_blobs(name_starts_with="people/runs/")}
    assert folders == {request.run_id}


async def test_timer_handler_queues_what_is_due(hosted, environ):
    await hosted.config_store.save(scheduled({"name": "every-second", "schedule": "* * * * * *"}))
    await handler("scheduler_tick")(TimerRequest(past_due=False))
    [request] = queued(environ)
    assert request.task == "every-second" and request.trigger == "timer"
    assert request.run_id == scheduled_run_id("every-second", request.planned_at)


async def test_a_transient_failure_makes_the_handler_raise_so_the_host_delivers_again(graph, control, hosted):
    services = hosted
    await services.config_store.save(task_config(graph.info, mappings_type="identity"))
    request = RunRequest(task="people")
    # Throttled for longer than the run may last: the run gives up, and says so to the host.
    control.set_faults({"status": 429, "retry_after": 60, "path": "^/users", "count": 1})
    with pytest.raises(RuntimeError, match="failed transiently"):
        await handler("run_task")(message(request))
    failed = await services.history.get("people", request.run_id)
    assert failed.status == "failed" and failed.attempt == 1
    assert "Throttled: 429 TooManyRequests" in failed.error
    # The next delivery runs again and succeeds.
    await handler("run_task")(message(request))
    succeeded = await services.history.get("people", request.run_id)
    assert succeeded.status == "succeeded" and succeeded.attempt == 2 and succeeded.error is None


async def test_an_unknown_task_is_recorded_as_failed_without_retrying(hosted, graph):
    await hosted.config_store.save(task_config(graph.info))
    request = RunRequest(task="nope")
    await handler("run_task")(message(request))  # no exception: delivering it again would not help
    record = await hosted.history.get("nope", request.run_id)
    assert record.status == "failed" and record.error == "unknown task 'nope'"


async def test_an_unreadable_message_makes_the_handler_raise(hosted):
    with pytest.raises(ValueError):
        await handler("run_task")(message(b"{not json"))


# ---------------------------------------------------------------------------------------- poison


async def test_poisoned_request_is_recorded_as_failed(services):
    request = RunRequest(task="people", trigger="timer", planned_at=AT)
    record = await record_poisoned(services, request.model_dump_json().encode(), 5)
    stored = await services.history.get("people", request.run_id)
    assert stored == record
    assert stored.status == "failed" and stored.error == "gave up after 5 attempts"
    assert stored.trigger == "timer" and stored.planned_at == AT and stored.completed_at is not None


async def test_poisoned_request_keeps_the_last_error_and_the_attempts_counted(graph, control, hosted):
    # Each delivery was throttled past the run's deadline; after the last, the host moved the message to
    # the poison queue (as a new message: its dequeue count there says nothing of the attempts).
    await hosted.config_store.save(task_config(graph.info, mappings_type="identity"))
    request = RunRequest(task="people")
    control.set_faults({"status": 429, "retry_after": 60, "path": "^/users"})
    for _ in range(3):
        with pytest.raises(RuntimeError, match="failed transiently"):
            await handler("run_task")(message(request))
    assert (await hosted.history.get("people", request.run_id)).attempt == 3
    await handler("record_poisoned_run")(message(request))
    stored = await hosted.history.get("people", request.run_id)
    assert stored.status == "failed" and stored.attempt == 3
    assert stored.error.startswith("gave up after 3 attempts; last error: Throttled: 429 TooManyRequests")


async def test_poison_message_for_a_run_that_succeeded_changes_nothing(graph, hosted):
    await hosted.config_store.save(task_config(graph.info, mappings_type="identity"))
    request = RunRequest(task="people")
    await handler("run_task")(message(request))
    done = await hosted.history.get("people", request.run_id)
    assert done.status == "succeeded"
    await handler("record_poisoned_run")(message(request))
    assert await hosted.history.get("people", request.run_id) == done


async def test_unreadable_poison_message_is_recorded_too(services):
    record = await record_poisoned(services, b"\xff{not json", 5)
    assert record.status == "failed" and record.task == "_unreadable"
    assert record.error.startswith("unreadable run request (10 bytes): ")
    [stored] = await services.history.list("_unreadable")
    assert stored == record
