"""Planning a run: full or incremental, and why; which delta rounds an incremental run reads.

An incremental task reads everything on its first run, when a full read is requested, when it resumes an
interrupted full read, when its queries or mappings changed since the view it would patch, when a stream has
no delta in Graph, and when a delta link or a view file it needs is missing. Otherwise it applies Graph's
changes (one delta round per stream, plus the groups' round when memberships feed other streams).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.config import ScheduledTask
from shared.extract.streams import MEMBERSHIPS, Stream
from shared.runs import Checkpoint, Mode, RunRequest, TaskState

log = logging.getLogger(__name__)


@dataclass
class Plan:
    mode: Mode
    reason: str | None = None  # why an incremental task reads everything
    rounds: list[str] = field(default_factory=list)  # the delta rounds an incremental run reads


# The format of task_fingerprint: raise it when what a fingerprint covers, or how, changes, so a view written
# before the upgrade is read again with that reason rather than as a change of the task. 1: no version prefix,
# every setting in the hash; 2: "v2|" prefix, settings at their default left out.
FINGERPRINT_VERSION = 2
_UPGRADED = (
    "the connector was upgraded and fingerprints the task's settings another way (format {old} -> {new}); "
    "the view is read again once"
)


def task_fingerprint(streams: Iterable[Stream]) -> str:
    """Of every setting that shapes the records: a change means the view cannot be patched."""
    return f"v{FINGERPRINT_VERSION}|" + "".join(
        f"{stream.name}:{stream.fingerprint()};" for stream in streams
    )


def fingerprint_version(fingerprint: str) -> int:
    """The format a stored fingerprint was written in (1: before formats were versioned)."""
    head, sep, _ = fingerprint.partition("|")
    return int(head[1:]) if sep and head[:1] == "v" and head[1:].isdigit() else 1


def delta_rounds(streams: list[Stream], *, needs_memberships: bool) -> list[str]:
    """The delta rounds a run follows: each stream's own, and the groups' when memberships feed others."""
    names = {stream.name for stream in streams if stream.spec.delta or stream.spec.watermark}
    if needs_memberships:
        names.add(MEMBERSHIPS.name)
    return sorted(names)


def _no_timestamp(streams: list[Stream], names: list[str]) -> str:
    generic = [
        s for s in streams if s.name in names and getattr(s.selection, "timestamp_property", 0) is None
    ]
    return " and no timestamp_property is configured" if generic else ""


def plan_run(
    task: ScheduledTask,
    request: RunRequest,
    state: TaskState,
    checkpoint: Checkpoint | None,
    streams: list[Stream],
    rounds: list[str],
) -> Plan:
    plan = _decide(task, request, state, checkpoint, streams, rounds)
    log.info(
        "plan: %s read%s",
        plan.mode,
        f" ({plan.reason})" if plan.reason else f", delta rounds {', '.join(rounds)}",
    )
    return plan


def _decide(
    task: ScheduledTask,
    request: RunRequest,
    state: TaskState,
    checkpoint: Checkpoint | None,
    streams: list[Stream],
    rounds: list[str],
) -> Plan:
    if task.mode == "full":
        return Plan("full")
    if request.full_resync:
        return Plan("full", "a full read was requested")
    if checkpoint is not None:
        return Plan("full", checkpoint.resync_reason or "resuming an interrupted full read")
    view = state.view
    if view is None:
        return Plan("full", "first run: nothing to apply changes to")
    if view.fingerprint != task_fingerprint(streams):
        old = fingerprint_version(view.fingerprint)
        if old != FINGERPRINT_VERSION:
            return Plan("full", _UPGRADED.format(old=old, new=FINGERPRINT_VERSION))
        return Plan("full", "the task's queries or mappings changed")
    no_delta = sorted(
        stream.name for stream in streams if not stream.spec.delta and not stream.spec.watermark
    )
    if no_delta:
        return Plan(
            "full", f"Graph offers no delta for {', '.join(no_delta)}" + _no_timestamp(streams, no_delta)
        )
    names = {stream.name for stream in streams}
    missing = sorted(n for n in rounds if n not in state.delta_links or (n in names and n not in view.files))
    if missing:
        return Plan("full", f"no delta link or view for {', '.join(missing)}")
    return Plan("incremental", rounds=rounds)
