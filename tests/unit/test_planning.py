"""Planning an incremental task's run: a view made by an older connector (another fingerprint format) is read
again with that reason, not as if the task's queries or mappings had changed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from shared.config import ScheduledTask, parse_config
from shared.extract.planning import plan_run, task_fingerprint
from shared.extract.streams import Stream, task_streams
from shared.runs import RunRequest, TaskState, View

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.example.json"
TASK = "contoso-users-incremental"


def _task(**users_changes: object) -> ScheduledTask:
    document = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for task in document["tasks"]:
        if task["name"] == TASK:
            task["users"].update(users_changes)
    task = parse_config(document).task(TASK)
    assert isinstance(task, ScheduledTask) and task.mode == "incremental"
    return task


def _plan(task: ScheduledTask, fingerprint: str) -> tuple[str, str | None]:
    streams = task_streams(task)
    state = TaskState(
        delta_links={"users": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x"},
        view=View(
            run_id="r1",
            fingerprint=fingerprint,
            files={"users": "people/runs/r1/users.jsonl"},
            committed_at=datetime.now(UTC),
        ),
    )
    plan = plan_run(task, RunRequest(task=task.name), state, None, streams, ["users"])
    return plan.mode, plan.reason


def _fingerprint_before_versions(streams: list[Stream]) -> str:
    """What connectors before the format version wrote: each stream's hash of its full selection dump."""
    import hashlib

    def one(stream: Stream) -> str:
        canonical = stream.selection.model_dump_json(
            exclude={"target_template", "target_folder", "deletion_marking"}
        )
        return hashlib.sha256((canonical + stream.name).encode()).hexdigest()[:16]

    return "".join(f"{stream.name}:{one(stream)};" for stream in streams)


def test_an_unchanged_task_applies_changes() -> None:
    task = _task()
    assert _plan(task, task_fingerprint(task_streams(task))) == ("incremental", None)


def test_a_view_written_before_an_upgrade_is_read_again_because_of_the_format_not_the_task() -> None:
    task = _task()
    mode, reason = _plan(task, _fingerprint_before_versions(task_streams(task)))
    assert mode == "full"
    assert reason is not None and "format" in reason and "queries or mappings changed" not in reason


def test_a_changed_mapping_is_named_as_such() -> None:
    before = _task()
    after = _task(mappings=[{"external": "userPrincipalName", "local": "user.login"}])
    mode, reason = _plan(after, task_fingerprint(task_streams(before)))
    assert (mode, reason) == ("full", "the task's queries or mappings changed")


def test_a_release_that_adds_a_setting_with_a_default_changes_no_fingerprint() -> None:
    """Otherwise every incremental task would read everything after such an upgrade."""
    from shared.config import UserSelection
    from shared.extract.streams import USERS

    class NextUserSelection(UserSelection):  # the same selection, as a later release might define it
        photo_size: int = 48

    task = _task()
    assert task.users is not None
    later = NextUserSelection.model_validate(task.users.model_dump())
    assert task_fingerprint([Stream(USERS, later)]) == task_fingerprint([Stream(USERS, task.users)])
    changed = NextUserSelection.model_validate({**task.users.model_dump(), "photo_size": 96})
    assert task_fingerprint([Stream(USERS, changed)]) != task_fingerprint([Stream(USERS, task.users)])


def test_a_changed_watermark_overlap_keeps_applying_changes() -> None:
    """The overlap only widens the window a watermark round reads again; the records are the same."""
    document = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    before = parse_config(document).task("contoso-managed-devices")
    for task in document["tasks"]:
        if task["name"] == "contoso-managed-devices":
            task["generic"]["watermark_overlap_s"] = 900
    after = parse_config(document).task("contoso-managed-devices")
    assert isinstance(before, ScheduledTask) and isinstance(after, ScheduledTask)
    assert after.generic is not None and after.generic.watermark_overlap_s == 900
    assert task_fingerprint(task_streams(after)) == task_fingerprint(task_streams(before))
    changed = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for task in changed["tasks"]:
        if task["name"] == "contoso-managed-devices":
            task["generic"]["timestamp_property"] = "enrolledDateTime"
    other = parse_config(changed).task("contoso-managed-devices")
    assert isinstance(other, ScheduledTask)
    assert task_fingerprint(task_streams(other)) != task_fingerprint(task_streams(before))
