"""Delivery knows a task's streams by their selections (ScheduledTask.stream_selections, in shared.config) and the
runner by its stream specifications (shared.extract.streams.task_streams): the two must name the same streams,
or a delivery would look for a stream's target template under a name the run never wrote."""

from __future__ import annotations

from pathlib import Path

from shared.config import ScheduledTask, load_config
from shared.extract.streams import task_streams

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.example.json"


def test_every_example_task_names_its_streams_alike_for_delivery_and_for_the_runner() -> None:
    tasks = [task for task in load_config(EXAMPLE).tasks if isinstance(task, ScheduledTask)]
    assert any(task.generic is not None for task in tasks) and any(
        task.users and task.groups for task in tasks
    )
    for task in tasks:
        runner = [(stream.name, stream.selection) for stream in task_streams(task)]
        assert list(task.stream_selections().items()) == runner, task.name


def test_a_generic_stream_is_named_after_the_last_segment_of_its_collection() -> None:
    devices = load_config(EXAMPLE).task("contoso-managed-devices")
    assert isinstance(devices, ScheduledTask)
    assert list(devices.stream_selections()) == ["managedDevices"]
