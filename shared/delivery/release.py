"""Delivering a committed run: changes against the task cache, the deletion guard, the load, the cache.

    (daily cache clear due?) -> changes.jsonl + digest tables -> guard: too many marks? -> held
    -> load the changes in batches (or blob only) -> only now: the cache becomes this run's view
    -> housekeeping (old run folders)

A failed load leaves the cache where it was, so the next run offers the same changes again (the same
batches under the same ids where their content is the same; batches the receiver already acknowledged are
not sent again; but if the earlier load also sent batches that are not among them, which may have
overwritten records of those, every batch gets a new id and is sent again). A held run delivers nothing
until ``approve`` releases exactly its changes, once, or a later run that needs no hold (the
configuration was corrected) delivers and clears the hold; a later run that again exceeds the guard
replaces the hold, so a held task never delivers without a decision.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared import telemetry
from shared.config import Connector, ScheduledTask
from shared.config.delivery import DeletionGuard
from shared.delivery import cache, failures
from shared.delivery.batches import Batch, BatchHeader, cut
from shared.delivery.changes import ChangeSet, StreamOutput, compute, removed_streams
from shared.delivery.housekeeping import prune_runs
from shared.delivery.load import Receiver
from shared.delivery.removals import reasons_for
from shared.graph.client import GraphClient
from shared.graph.errors import redact_text
from shared.retry import RetryPolicy
from shared.runs import PhaseReport, RunRecord
from shared.services import Services
from shared.storage import blobs, threads
from shared.storage.delivery import DeliveredView, DeliveryState, DeliveryStateStore, HeldRun
from shared.storage.lease import TaskLease

log = logging.getLogger(__name__)


@dataclass
class DeliveryOutcome:
    status: str  # succeeded | held | failed
    error: str | None = None


class ApprovalError(Exception):
    """``approve`` was asked for a run that is not the task's held run."""


def delivery_store(services: Services) -> DeliveryStateStore:
    return DeliveryStateStore(services.state.table)


def streams_of(
    task: ScheduledTask, files: Mapping[str, str], selections: Mapping[str, Any] | None = None
) -> list[StreamOutput]:
    """The delivery view of a committed run's streams: its view files and their selections (by default the
    task's streams' selections: a generic stream is named after its collection, not ``generic``)."""
    if selections is None:
        selections = task.stream_selections()
    outputs = []
    for name, view_file in files.items():
        selection = selections.get(name)
        outputs.append(
            StreamOutput(
                name=name,
                view_file=view_file,
                target_template=getattr(selection, "target_template", ""),
                target_folder=getattr(selection, "target_folder", ""),
                key=getattr(selection, "key", "id"),
                marking=getattr(selection, "deletion_marking", None),
                collection=getattr(selection, "collection", None),  # generic selections only
                key_attribute=getattr(selection, "key_attribute", None),
            )
        )
    return outputs


def guard_reason(guard: DeletionGuard, changes: ChangeSet) -> str | None:
    """Why the deletion guard holds these changes, or None."""
    marks = changes.marks
    if marks > guard.max_marks:
        return (
            f"the run would mark {marks} objects as removed, more than the deletion guard allows "
            f"({guard.max_marks}); approve it or correct the task's configuration"
        )
    live = changes.delivered_live
    # marks / live, not share * live: 0.29 * 100 is 28.999999999999996 in floats, which 29 marks exceed
    if guard.max_share is not None and marks and (not live or marks / live > guard.max_share):
        return (
            f"the run would mark {marks} of {changes.delivered_live} delivered objects as removed, more than "
            f"the deletion guard's share ({guard.max_share:.0%}); approve it or correct the configuration"
        )
    return None


def _base(state: DeliveryState) -> str:
    """What a run's changes were computed against (part of every batch id)."""
    delivered = state.delivered.run_id if state.delivered else ""
    cleared = state.cleared_at.isoformat() if state.resend_all and state.cleared_at else ""
    return f"{delivered}|{cleared}"


def _acks_name(task: str, base: str) -> str:
    return f"{task}/cache/acknowledged-{hashlib.sha256(base.encode()).hexdigest()[:16]}"


@dataclass
class _Attempts:
    """The load log of one base (an append blob): ``try ID`` before a batch is sent, ``ack ID`` once the
    receiver accepted it, ``generation N`` when ids were renewed. Entries before the last ``generation``
    line are of ids no longer sent."""

    generation: int = 0
    tried: set[str] = field(default_factory=set)  # sent (and perhaps applied), answered or not
    acknowledged: set[str] = field(default_factory=set)


async def _attempts(container: ContainerClient, name: str) -> _Attempts:
    def read() -> bytes:
        try:
            return container.get_blob_client(name).download_blob().readall()
        except ResourceNotFoundError:
            return b""

    attempts = _Attempts()
    for line in (await threads.call(read)).decode().splitlines():
        word, _, value = line.partition(" ")
        if word == "generation":
            attempts = _Attempts(int(value))
        elif word == "try":
            attempts.tried.add(value)
        elif word == "ack":
            attempts.acknowledged.add(value)
    return attempts


async def _append(container: ContainerClient, name: str, entry: str) -> None:
    def append() -> None:
        blob = container.get_blob_client(name)
        try:
            blob.create_append_blob(if_none_match="*")
        except ResourceExistsError:
            pass
        blob.append_block(f"{entry}\n".encode())

    await threads.call(append)


async def _forget_acks(container: ContainerClient, task: str) -> None:
    """Delete the task's load logs: once the cache advanced, no later load starts from their bases (a log
    left by a load whose base a cache clear replaced included)."""

    def delete() -> None:
        for blob in container.list_blobs(name_starts_with=f"{task}/cache/acknowledged-"):
            try:
                container.delete_blob(blob.name)
            except ResourceNotFoundError:
                pass

    await threads.call(delete)


def _receiver(services: Services, task: ScheduledTask, connector: Connector, deadline: float) -> Receiver:
    assert task.delivery.endpoint is not None
    # Key Vault references in the endpoint (an API key) or the connector (a token with its credential)
    definitions = task.delivery.endpoint.model_dump_json() + connector.model_dump_json()
    return Receiver.for_task(
        task.delivery.endpoint,
        connector,
        environ=services.environ,
        key_vault=services.key_vault if "key_vault" in definitions else None,
        verify=services.graph_verify(),
        policy=RetryPolicy(backoff_base_s=services.settings.graph_backoff_s),
        deadline=deadline,
    )


async def load_changes(
    services: Services,
    task: ScheduledTask,
    connector: Connector,
    run_id: str,
    changes_file: str,
    base: str,
    streams: list[StreamOutput],
    report: PhaseReport,
    deadline: float,
) -> None:
    """Send a changes file to the task's endpoint in batches (raises on a failed batch); without an
    endpoint, the changes file is the delivery."""
    endpoint = task.delivery.endpoint
    if endpoint is None:
        report.info = f"written to blob only (no endpoint): {changes_file}"
        return
    container = services.extracts
    acks = _acks_name(task.storage_key, base)
    attempts = await _attempts(container, acks)
    targets = {
        s.name: {"target_template": s.target_template, "target_folder": s.target_folder, "key": s.key}
        for s in streams
    }

    def header_of(generation: int) -> BatchHeader:
        return BatchHeader(
            task=task.name,
            base=base if not generation else f"{base}|generation {generation}",
            streams=targets,
        )

    def batches(header: BatchHeader) -> AsyncIterator[Batch]:
        return cut(
            container, changes_file, header, size=endpoint.batch_size, max_bytes=endpoint.max_batch_bytes
        )

    header = header_of(attempts.generation)
    if attempts.tried:
        # An earlier load from this base stopped part way. Its batches that are also batches now may be
        # skipped (acknowledged) or are answered as before (same id); but if it also sent batches that are
        # not among them (a record changed since), one of those may have overwritten a record of a batch we
        # would skip: then every batch gets a new id (a new generation) and is sent again.
        planned = {batch.id async for batch in batches(header)}
        if attempts.tried - planned and attempts.tried & planned:
            attempts = _Attempts(attempts.generation + 1)
            await _append(container, acks, f"generation {attempts.generation}")
            header = header_of(attempts.generation)
    counts = report.counts
    counts.update({"batches_sent": 0, "batches_skipped": 0, "records_sent": 0})
    async with _receiver(services, task, connector, deadline) as receiver:
        try:
            async for batch in batches(header):
                if batch.id in attempts.acknowledged:
                    counts["batches_skipped"] += 1  # the receiver has it: a previous load got this far
                    continue
                await _append(container, acks, f"try {batch.id}")  # before: a crash may follow its apply
                await receiver.send(batch, run_id=run_id)
                await _append(container, acks, f"ack {batch.id}")
                counts["batches_sent"] += 1
                counts["records_sent"] += batch.records
        finally:
            counts["http_requests"] = receiver.requests
            counts["retries"] = receiver.retries
    report.info = f"{counts['batches_sent']} batch(es) with {counts['records_sent']} change(s) delivered" + (
        f", {counts['batches_skipped']} already acknowledged" if counts["batches_skipped"] else ""
    )


async def deliver_run(
    services: Services,
    task: ScheduledTask,
    connector: Connector,
    record: RunRecord,
    files: Mapping[str, str],
    *,
    client: GraphClient | None = None,
    hints: Mapping[str, str] | None = None,
    lease: TaskLease | None = None,
    selections: Mapping[str, Any] | None = None,
) -> DeliveryOutcome:
    """Deliver a run whose view was just committed (under the task's lease). Never raises: the outcome says
    what happened and ``record.load`` holds the details; the caller sets the run's status from it."""
    started = datetime.now(UTC)
    report = PhaseReport(status="running", started_at=started)
    record.load = report
    store = delivery_store(services)
    deadline = time.monotonic() + services.settings.run_deadline_s
    try:
        streams = streams_of(task, files, selections)
        state = await store.get(task.storage_key)  # a storage error here is a failed load too
        streams += removed_streams(state.delivered, streams)  # their objects are marked once
        if cache.daily_clear_due(state, task.delivery.cache_clear_hours, started):
            log.info("task cache cleared (daily, at %s UTC)", task.delivery.cache_clear_hours)
            state = cache.cleared(state, started)
            await store.put(task.storage_key, state)

        async def reasons(ids: list[str], stream: StreamOutput) -> dict[str, str]:
            return await reasons_for(
                client,
                ids,
                hints or {},
                concurrency=services.settings.graph_concurrency,
                collection=stream.collection,
            )

        changes = await compute(
            services.extracts,
            blobs.run_prefix(task.storage_key, record.run_id),
            record.run_id,
            streams,
            state.delivered,
            resend_all=state.resend_all,
            reasons=reasons,
            block_size=services.settings.block_size,
        )
        report.counts = {
            "upserts": changes.upserts,
            "marks": changes.marks,
            "streams": {name: s.as_dict() for name, s in changes.streams.items()},
        }
        report.file = changes.changes_file
        held = guard_reason(task.delivery.deletion_guard, changes)
        if held is not None:
            read = state
            state = state.model_copy(
                update={
                    "held": HeldRun(
                        run_id=record.run_id,
                        changes=changes.changes_file,
                        view=changes.view,
                        marks=changes.marks,
                        upserts=changes.upserts,
                        reason=held,
                        held_at=datetime.now(UTC),
                        resend_all=state.resend_all,
                    )
                }
            )
            await _check(lease)
            await _save(store, task.storage_key, state, read=read)
            report.status, report.info = "held", held
            log.warning("deletion guard: run held: %s", held)
            await notify_failure(services, task, connector, record, "held", held)
            return DeliveryOutcome("held", held)
        try:
            await load_changes(
                services, task, connector, record.run_id, changes.changes_file, _base(state), streams, report,
                deadline,
            )  # fmt: skip
        except Exception:
            _record_delivery(task, connector, record.run_id, report, "failed")
            raise
        _record_delivery(task, connector, record.run_id, report, "succeeded")
        await _check(lease)
        await _advance(services, task.storage_key, state, changes.view, _base(state), started)
        report.status = "succeeded"
        if state.held is not None:
            report.info = (
                f"{report.info}; the hold of run {state.held.run_id} is cleared (no hold needed now)"
            )
        return DeliveryOutcome("succeeded")
    except Exception as exc:  # the extract is committed: a failed load is reported, never raised
        log.warning("delivery failed: %s: %s", type(exc).__name__, redact_text(str(exc)))
        error = f"load failed: {type(exc).__name__}: {exc}"
        report.status, report.info = "failed", error
        await notify_failure(services, task, connector, record, "failed", error)
        return DeliveryOutcome("failed", error)
    finally:
        report.completed_at = datetime.now(UTC)
        await _housekeeping(services, task, record.run_id)


def _record_delivery(
    task: ScheduledTask, connector: Connector, run_id: str, report: PhaseReport, outcome: str
) -> None:
    """The ``delivery.finished`` telemetry event and the deliveries metric (shared/telemetry.py), for a task
    with an endpoint (the alert rules watch failed deliveries)."""
    if task.delivery.endpoint is None:
        return
    started = report.started_at or datetime.now(UTC)
    telemetry.record_delivery(
        task.name,
        outcome,
        records=int(report.counts.get("records_sent", 0)),
        duration_s=(datetime.now(UTC) - started).total_seconds(),
        run_id=run_id,
        connector=connector.name,
    )


async def _check(lease: TaskLease | None) -> None:
    """Only the lease's holder advances the task cache: renewed now (the renewer notices a loss late)."""
    if lease is not None and not await lease.confirm():
        raise RuntimeError("the task lease was lost: not advancing the task cache")


async def _save(store: DeliveryStateStore, task: str, new: DeliveryState, *, read: DeliveryState) -> None:
    """Store ``new``, computed from ``read``. A cache clear stored meanwhile (``clear_cache`` takes no
    lease: the CLI or the admin API while a run loads) is kept, so the next run still sends everything."""
    current = await store.get(task)
    if current.cleared_at is not None and current.cleared_at != read.cleared_at:
        new = new.model_copy(update={"cleared_at": current.cleared_at, "resend_all": True})
    await store.put(task, new)


async def _advance(
    services: Services,
    task: str,
    state: DeliveryState,
    view: DeliveredView,
    base: str,
    now: datetime,
    *,
    resend_all: bool = False,
) -> None:
    """The cache becomes ``view``: the platform has it."""
    delivered = view.model_copy(update={"delivered_at": datetime.now(UTC)})
    new_state = state.model_copy(
        update={
            "delivered": delivered,
            "resend_all": resend_all,
            "held": None,
            "cleared_at": state.cleared_at or now,
        }
    )
    await _save(delivery_store(services), task, new_state, read=state)
    await _forget_acks(services.extracts, task)


async def _housekeeping(services: Services, task: ScheduledTask, run_id: str) -> None:
    try:
        extract_state = await services.state.get(task.storage_key)
        state = await delivery_store(services).get(task.storage_key)
        protected = {run_id}
        if extract_state.view is not None:
            protected.add(extract_state.view.run_id)
        if state.delivered is not None:
            protected.add(state.delivered.run_id)
        if state.held is not None:
            protected.add(state.held.run_id)
        await prune_runs(
            services.extracts, task.storage_key, keep=task.delivery.keep_runs, protected=protected
        )
    except Exception as exc:  # housekeeping never fails a run
        log.warning("housekeeping failed: %s: %s", type(exc).__name__, exc)


async def notify_failure(
    services: Services,
    task: ScheduledTask | None,
    connector: Connector | None,
    record: RunRecord,
    status: str,
    error: str,
) -> None:
    """The failure record of a failed or held run for the platform, if the task configures one (the
    ``TaskRunFailed`` log event is the runner's, where every run ends)."""
    if task is None:
        return
    failure = failures.failure_record(task, record.run_id, status, error)
    if failure is None:
        return
    try:
        line = blobs.encode_line(failure)
        name = f"{blobs.run_prefix(task.storage_key, record.run_id)}/failure.jsonl"
        await threads.call(
            services.extracts.get_blob_client(name).upload_blob,
            line,
            overwrite=True,
            content_settings=blobs.JSONL,
        )
        if task.delivery.endpoint is not None and connector is not None:
            deadline = time.monotonic() + min(300.0, services.settings.run_deadline_s)
            async with _receiver(services, task, connector, deadline) as receiver:
                await receiver.send(failures.failure_batch(task, record.run_id, line), run_id=record.run_id)
        if record.load is not None:
            record.load.counts["failure_record"] = 1
    except Exception as exc:
        log.warning("the failure record could not be delivered: %s: %s", type(exc).__name__, exc)


async def approve(services: Services, task: ScheduledTask, connector: Connector, run_id: str) -> RunRecord:
    """Release exactly the changes of the task's held run ``run_id``, once; the cache becomes its view."""
    lease = TaskLease(services.leases, task.storage_key, services.settings.lease_s)
    if not await lease.acquire():
        raise ApprovalError(f"a run of {task.name} is in progress; approve again when it has finished")
    try:
        store = delivery_store(services)
        state = await store.get(task.storage_key)
        held = state.held
        if held is None or held.run_id != run_id:
            if run_id in state.released:
                raise ApprovalError(f"run {run_id} of {task.name} was already released")
            current = f"; the held run is {held.run_id}" if held is not None else "; no run is held"
            raise ApprovalError(f"run {run_id} of {task.name} is not held{current}")
        record = await services.history.get(task.storage_key, run_id) or RunRecord(
            task=task.storage_key, run_id=run_id, trigger="unknown"
        )
        started = datetime.now(UTC)
        report = record.load or PhaseReport(status="held")
        report.started_at = started
        report.status = "running"
        record.load = report
        deadline = time.monotonic() + services.settings.run_deadline_s
        base = _base(state.model_copy(update={"resend_all": held.resend_all}))
        try:
            streams = streams_of(task, held.view.files)
            streams += removed_streams(state.delivered, streams)  # the held marks of a dropped stream
            await load_changes(
                services, task, connector, run_id, held.changes, base, streams, report, deadline,
            )  # fmt: skip
            _record_delivery(task, connector, run_id, report, "succeeded")
        except Exception as exc:
            _record_delivery(task, connector, run_id, report, "failed")
            report.status, report.completed_at = "failed", datetime.now(UTC)
            report.info = f"approved, but the load failed: {type(exc).__name__}: {exc}"
            await services.history.put(record)
            raise ApprovalError(report.info) from exc
        await _advance(
            services, task.storage_key, state, held.view, base, started,
            resend_all=state.resend_all and not held.resend_all,
        )  # fmt: skip
        state = await store.get(task.storage_key)
        await store.put(
            task.storage_key, state.model_copy(update={"released": [*state.released, run_id][-20:]})
        )
        report.status, report.completed_at = "succeeded", datetime.now(UTC)
        report.info = f"released by approval at {started:%Y-%m-%d %H:%M:%S} UTC; {report.info or ''}".rstrip(
            "; "
        )
        record.status = "succeeded"
        record.error = None
        await services.history.put(record)
        return record
    finally:
        await lease.release()


async def clear_cache(services: Services, task: ScheduledTask) -> DeliveryState:
    """Clear the task cache on demand (``cli clear-cache``, the admin API): the task's next run delivers
    every record once. Delta links, watermarks and a held run stay; a run loading meanwhile keeps the clear
    (no lease needed). With :func:`approve` (a held run, once), the two operations an operator has here."""
    return await cache.clear(delivery_store(services), task.storage_key)


# ------------------------------------------------------------------------------ the runner's two calls


async def after_commit(
    services: Services,
    task: ScheduledTask,
    connector: Connector,
    record: RunRecord,
    *,
    lease: TaskLease | None = None,
    hints: Mapping[str, str] | None = None,
    selections: Mapping[str, Any] | None = None,
) -> DeliveryOutcome:
    """The runner's call once a run's view is committed (still under the lease): the extract's report,
    then the delivery. Returns the run's status (succeeded, held, failed) and error."""
    record.extract = PhaseReport(
        status="succeeded",
        started_at=record.started_at,
        completed_at=datetime.now(UTC),
        counts={name: counts.written for name, counts in record.counts.items()},
        info=f"{record.mode} read" + (f" ({record.resync_reason})" if record.resync_reason else ""),
    )
    client = services.graph(connector)
    async with client.context(deadline=time.monotonic() + services.settings.run_deadline_s) as call:
        outcome = await deliver_run(
            services, task, connector, record, record.files,
            client=client, hints=hints, lease=lease, selections=selections,
        )  # fmt: skip
        if call.stats.http_calls:
            record.requests["delivery_lookups"] = call.stats.as_dict()
    return outcome


async def after_failure(
    services: Services,
    task: ScheduledTask | None,
    connector: Connector | None,
    record: RunRecord,
    error: str,
    *,
    final: bool,
) -> None:
    """The runner's call when the extract failed: its report, and (if no retry will follow) the failure
    notification."""
    record.extract = PhaseReport(
        status="failed", started_at=record.started_at, completed_at=datetime.now(UTC), info=error
    )
    if final:
        await notify_failure(services, task, connector, record, "failed", error)
