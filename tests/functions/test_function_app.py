"""The Function App as the Functions host sees it: the functions it indexes, their triggers and binding
expressions, host.json, and the rule that only ``functions/`` (and the composition root) know about
``azure.functions``."""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import function_app
from shared.settings import APP_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def indexed():
    """Index the app as the host does at start (the SDK indexes an app object once: load it afresh)."""
    app = importlib.reload(function_app).app
    return {f.get_function_name(): f for f in app.get_functions()}


def bindings(function) -> list[dict]:
    return [json.loads(raw) for raw in function.get_raw_bindings()]


def expected_functions() -> list[str]:
    from shared.activities.catalog import ACTIVITIES

    activities = [a.function_name for a in ACTIVITIES] + ["activities_openapi", "activity_run_status"]
    others = ["check_credential_expiry", "graph_notifications", "management_api", "management_page"]
    return sorted(
        [*activities, *others, "record_poisoned_run", "run_task", "scheduler_tick", "subscription_upkeep"]
    )


def test_the_app_has_exactly_the_expected_functions(indexed):
    assert sorted(indexed) == expected_functions()


def test_each_function_has_one_trigger_and_only_an_http_answer_besides(indexed):
    for name, function in indexed.items():
        [trigger, *others] = bindings(function)
        assert trigger["direction"] == "IN" and trigger["type"].endswith("Trigger"), name
        assert function.get_trigger() is not None
        if trigger["type"] == "httpTrigger":
            # An HTTP function answers through its one http output binding, and nothing else.
            assert others == [{"direction": "OUT", "type": "http", "name": "$return"}], name
        else:
            assert others == [], name
        assert asyncio.iscoroutinefunction(function.get_user_function()), name


def test_timer_trigger_takes_its_schedule_from_an_app_setting(indexed):
    [timer] = bindings(indexed["scheduler_tick"])
    assert timer == {
        "direction": "IN", "type": "timerTrigger", "name": "timer", "schedule": "%TICK_SCHEDULE%",
        "runOnStartup": False, "useMonitor": True,
    }  # fmt: skip


def test_queue_triggers_use_the_runs_queue_and_its_poison_queue(indexed):
    [runs] = bindings(indexed["run_task"])
    [poison] = bindings(indexed["record_poisoned_run"])
    assert runs == {
        "direction": "IN", "type": "queueTrigger", "name": "message", "queueName": "%RUNS_QUEUE%",
        "connection": "AzureWebJobsStorage",
    }  # fmt: skip
    assert poison == {**runs, "queueName": "%RUNS_QUEUE%-poison"}


def test_every_binding_expression_is_an_app_setting_with_a_local_value(indexed):
    local = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    names = set()
    for function in indexed.values():
        for binding in bindings(function):
            for value in binding.values():
                names.update(re.findall(r"%([A-Za-z0-9_]+)%", str(value)))
    assert names == {"TICK_SCHEDULE", "RUNS_QUEUE", "CREDENTIAL_CHECK_SCHEDULE", "SUBSCRIPTIONS_SCHEDULE"}
    for name in names:
        assert name in APP_SETTINGS and local.get(name), name
    # The default the code uses is the queue the host listens on when the setting is left as in the example.
    assert Settings.from_environ({}).runs_queue == local["RUNS_QUEUE"]
    assert Settings.from_environ({}).tick_schedule == local["TICK_SCHEDULE"]
    assert Settings.from_environ({}).subscriptions_schedule == local["SUBSCRIPTIONS_SCHEDULE"]
    assert Settings.from_environ({}).credential_check_schedule == local["CREDENTIAL_CHECK_SCHEDULE"]


def test_only_the_functions_package_imports_azure_functions():
    importers = set()
    for path in sorted(ROOT.glob("**/*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in (".venv", "node_modules", "tests") or "site-packages" in relative.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if any(m == "azure.functions" or m.startswith("azure.functions.") for m in modules):
                importers.add(relative.as_posix())
    assert importers, "the scan found nothing: it is broken"
    # devtools/ may drive the handlers the way the host does (the activities benchmark); deployed behaviour
    # (shared/) and the test bed (localgraph/) never see the Functions host.
    assert all(p.startswith(("functions/", "devtools/")) or p == "function_app.py" for p in importers), (
        importers
    )
    assert not any(p.startswith("localgraph/") for p in importers)
    assert not any(p.startswith("shared/") for p in importers)


def test_host_json_sets_base64_queue_messages_and_a_function_timeout():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"
    assert isinstance(queues["maxDequeueCount"], int) and queues["maxDequeueCount"] >= 1
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    timeout = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    assert timeout > timedelta(0)
    # A run gives up (and records why) before the host would kill it.
    assert timedelta(seconds=Settings.from_environ({}).run_deadline_s) < timeout


def test_the_app_indexes_in_a_fresh_process_without_settings_or_storage():
    # The host imports function_app before any app setting may be resolved: importing must do no I/O.
    environ = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "SYSTEMROOT", "LANG")}
    script = (
        "import function_app; print(sorted(f.get_function_name() for f in function_app.app.get_functions()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(expected_functions())
