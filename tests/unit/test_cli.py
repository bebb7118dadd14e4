"""The command line, run as a user runs it: ``python -m shared.cli ...`` in a subprocess, settings from the
environment, Azurite and the local Graph behind it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from shared.config import load_config, parse_config
from shared.storage.queues import RunRequest
from tests.support import task_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "config.example.json"


def cli(*args: str, environ: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Only what a shell would pass, plus the test's app settings; cwd without a local.settings.json.
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT", "TMPDIR")}
    env = {**base, **(environ or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


BAD = {
    "connectors": [
        {
            "name": "contoso",
            "tenant_id": "not a tenant",
            "client_id": "nope",
            "credential": {"type": "client_secret", "secret": "plain-text-Secret-42"},
        }
    ],
    "tasks": [
        {
            "name": "nightly", "connector": "contoso", "schedule": "every night", "mode": "sometimes",
            "mappings_type": "identity",
            "users": {
                "mappings": [{"external": "displayName"}], "target_template": "t", "target_folder": "f",
            },
        },
        {
            "name": "orphan", "connector": "missing", "mode": "full", "mappings_type": "identity",
            "users": {
                "mappings": [{"external": "displayName", "local": "name"}], "target_template": "t",
                "target_folder": "f",
            },
        },
    ],
}  # fmt: skip


def test_validate_names_every_bad_field_by_path(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(BAD))
    result = cli("validate", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "invalid configuration (7 problem(s)):"
    paths = [line.split(":", 1)[0] for line in lines[1:]]
    assert paths == [
        "connectors[0].client_id",
        "connectors[0].credential.secret",
        "connectors[0].tenant_id",
        "tasks[0].mode",
        "tasks[0].schedule",
        "tasks[0].users.mappings[0].local",
        "tasks[1].connector",
    ]
    assert "plain-text-Secret-42" not in result.stderr  # an inline secret is refused, never echoed


def test_validate_accepts_the_example(tmp_path):
    result = cli("validate", str(EXAMPLE), cwd=tmp_path)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, f"{EXAMPLE}: valid", "")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "(root): cannot read "),
        ('{"connectors": [', "(root): invalid JSON at line 1"),
    ],
)
def test_validate_reports_unreadable_files(tmp_path, content, message):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    result = cli("validate", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[1].startswith(message)


def test_unknown_command_is_a_usage_error(tmp_path):
    result = cli("frobnicate", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr


def write_config(tmp_path: Path, config) -> Path:
    path = tmp_path / "config.json"
    path.write_text(config.model_dump_json(by_alias=True, exclude_none=True))
    return path


def test_run_then_history(graph, control, environ, tmp_path):
    path = write_config(tmp_path, task_config(graph.info))
    result = cli("run", "people", "--config", str(path), environ=environ, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    run_id = lines[0].split()[1]
    assert lines[0] == f"run {run_id} of people: succeeded"
    users, groups = len(control.objects("users")), len(control.objects("groups"))
    assert "  mode: full" in lines
    assert f"  users: read {users:,}, written {users:,}, changed {users:,}, removed 0" in lines
    assert f"  groups: read {groups:,}, written {groups:,}, changed {groups:,}, removed 0" in lines
    assert f"  users file: people/runs/{run_id}/users.jsonl" in lines
    assert f"  groups file: people/runs/{run_id}/groups.jsonl" in lines

    history = cli("history", "people", environ=environ, cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    [row] = history.stdout.splitlines()
    fields = row.split()
    assert fields[2:6] == ["people", run_id, "succeeded", "full"]
    assert f"users={users}(+/-{users}/0)" in fields


def test_a_failed_run_exits_1_and_says_why(graph, environ, tmp_path):
    path = write_config(tmp_path, task_config(graph.info))
    wrong = {**environ, "LOCALGRAPH_CLIENT_SECRET": "wrong-Secret-value-7"}
    result = cli("run", "people", "--config", str(path), environ=wrong, cwd=tmp_path)
    assert result.returncode == 1
    assert ": failed" in result.stdout.splitlines()[0]
    assert "AADSTS7000215" in result.stdout and "wrong-Secret-value-7" not in result.stdout + result.stderr


def test_config_import_then_show_round_trips(environ, tmp_path):
    imported = cli("config", "import", str(EXAMPLE), environ=environ, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "stored 3 connector(s) and 5 task(s)"
    shown = cli("config", "show", environ=environ, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    original = load_config(EXAMPLE)
    stored = parse_config(json.loads(shown.stdout))
    # Storing gives every connector and task a stable id (the rows' keys); everything else round trips.
    assert all(item.id for item in [*stored.connectors, *stored.tasks])

    def by_name(config):  # rows come back in key order, not the file's
        return {
            kind: sorted(
                (item.model_dump(exclude={"id"}) for item in getattr(config, kind)), key=lambda i: i["name"]
            )
            for kind in ("connectors", "tasks")
        }

    assert by_name(stored) == by_name(original)


def test_config_import_refuses_an_invalid_file_and_stores_nothing(environ, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(BAD))
    assert cli("config", "import", str(path), environ=environ, cwd=tmp_path).returncode == 1
    shown = cli("config", "show", environ=environ, cwd=tmp_path)
    assert json.loads(shown.stdout) == {"connectors": [], "tasks": []}


def test_run_uses_the_stored_configuration_and_settings_file(graph, environ, tmp_path):
    # Settings from a local.settings.json (as the Functions Core Tools keep them), configuration stored.
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": environ}))
    path = write_config(tmp_path, task_config(graph.info, mappings_type="identity"))
    assert cli("--settings", str(settings), "config", "import", str(path), cwd=tmp_path).returncode == 0
    result = cli("--settings", str(settings), "run", "people", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": succeeded" in result.stdout.splitlines()[0]


def test_enqueue_puts_a_base64_run_request_on_the_queue(environ, tmp_path):
    result = cli("enqueue", "people", environ=environ, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[2]
    assert result.stdout.strip() == f"queued run {run_id} of people"
    queue = QueueClient.from_connection_string(environ["AzureWebJobsStorage"], environ["RUNS_QUEUE"])
    [message] = queue.peek_messages()
    request = RunRequest.model_validate_json(base64.b64decode(message.content, validate=True))
    assert (request.task, request.run_id, request.trigger) == ("people", run_id, "cli")


async def test_enqueue_records_the_queued_run_of_a_renamed_task_under_its_stable_id(
    graph, services, environ, tmp_path
):
    """A task renamed in the admin keeps its id: the CLI's request carries it, so the queued history row
    lands under the id, where the run's own rows go (not under the new name)."""
    stored = task_config(graph.info, name="staff")
    stored = stored.model_copy(update={"tasks": [stored.tasks[0].model_copy(update={"id": "people"})]})
    await services.config_store.save(stored)
    result = await asyncio.to_thread(cli, "enqueue", "staff", environ=environ, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[2]
    queue = QueueClient.from_connection_string(environ["AzureWebJobsStorage"], environ["RUNS_QUEUE"])
    [message] = queue.peek_messages()
    request = RunRequest.model_validate_json(base64.b64decode(message.content, validate=True))
    assert (request.task, request.task_key, request.run_id) == ("staff", "people", run_id)
    queued = await services.history.get("people", run_id)
    assert queued is not None and (queued.status, queued.trigger) == ("queued", "cli")
    assert await services.history.list("staff") == []
