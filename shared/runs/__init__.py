"""Runs: the run models (request, history record, task state, checkpoint, manifest), in one place.

Plain data: this package imports nothing else of the project. The stores that keep these models are in
:mod:`shared.storage`; the runner that executes a run is :mod:`shared.extract.runner`."""

from shared.runs.models import (
    FORMAT,
    Checkpoint,
    Manifest,
    ManifestFile,
    Mode,
    PhaseReport,
    RunCounts,
    RunRecord,
    RunRequest,
    RunStatus,
    StreamCheckpoint,
    TaskState,
    Trigger,
    View,
    new_run_id,
    scheduled_run_id,
)

__all__ = [
    "FORMAT",
    "Checkpoint",
    "Manifest",
    "ManifestFile",
    "Mode",
    "PhaseReport",
    "RunCounts",
    "RunRecord",
    "RunRequest",
    "RunStatus",
    "StreamCheckpoint",
    "TaskState",
    "Trigger",
    "View",
    "new_run_id",
    "scheduled_run_id",
]
