"""One run of one scheduled task, from the queue message to the committed output and its history row.

    lease the task -> load state -> plan (full | incremental, and why) -> read Graph into staged blobs
    -> commit the files -> manifest -> latest.json -> only now: state (view, delta links) -> history

The runner knows no collection by name: a task's streams (:func:`shared.extract.streams.task_streams`) are
specifications bound to its selections, and every stream runs through the same pipeline (full reads,
:mod:`shared.extract.pipeline`) or merge (incremental runs, :mod:`shared.extract.incremental`). Planning,
checkpointing and committing are modules of their own.

An incremental task's first run, and any run after its delta link was refused, reads everything and takes
its new delta links *before* reading, so nothing that changes meanwhile is missed (a change may be seen
twice; applying it twice is harmless).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared import logs
from shared.config import Config, ScheduledTask
from shared.delivery.failures import log_failure
from shared.delivery.release import after_commit, after_failure
from shared.delivery.removals import removal_hints
from shared.extract.checkpointing import Checkpoints
from shared.extract.committing import StreamOutput, commit
from shared.extract.concurrency import run_all
from shared.extract.fanout import FanOut
from shared.extract.generic import is_watermark, start_watermark, watermark_round
from shared.extract.incremental import DeltaRound, ViewMerge, latest_delta_link, read_round
from shared.extract.mapping import Mapper
from shared.extract.pipeline import FullRead
from shared.extract.planning import Plan, delta_rounds, plan_run, task_fingerprint
from shared.extract.relations import Relation, RelationContext
from shared.extract.scoping import Scoping, base_scope
from shared.extract.streams import MEMBERSHIPS, Stream, TaskStreams, membership_probe, task_streams
from shared.graph.client import GraphClient
from shared.graph.errors import DeltaTokenExpired, GraphError
from shared.retry import transient
from shared.runs import RunCounts, RunRecord, RunRequest, TaskState
from shared.services import Services
from shared.storage import blobs, digests
from shared.storage.lease import TaskLease
from shared.storage.runlogs import RunLog
from shared.storage.stops import RunStopped, StopRequests, StopSignal
from shared.storage.tables import HistoryStore

log = logging.getLogger(__name__)
Progress = Callable[[str, int], None]
FOLLOWED_TRIGGERS = frozenset({"notification"})
"""Runs that, meeting another run of their task, wait for it rather than end as skipped: a notification's
change is not seen again until the next schedule otherwise (a timer run's next tick comes anyway; a person
asking for a run sees it skipped and can ask again)."""


@dataclass
class RunOutcome:
    record: RunRecord
    retriable: bool = False  # the failure is transient: let the queue deliver the message again


@dataclass
class _StreamRun:
    """One stream of this run: what it reads, how it maps, where it writes, what it needs."""

    stream: Stream
    mapper: Mapper
    relations: dict[str, Relation]
    scopings: list[Scoping]
    output: StreamOutput


class TaskRun:
    def __init__(
        self,
        services: Services,
        config: Config,
        task: ScheduledTask,
        request: RunRequest,
        progress: Progress | None,
        streams: list[Stream],
        lease: TaskLease | None = None,
    ) -> None:
        self.services = services
        self.task = task
        self.request = request
        self.progress = progress
        self.connector = config.connector(task.connector)
        self.streams = streams
        self.fingerprint = task_fingerprint(streams)
        self.prefix = blobs.run_prefix(task.storage_key, request.run_id)
        self.checkpoints = Checkpoints(
            services.state, task.storage_key, request.run_id, self.fingerprint, self.connector, lease
        )
        self.state = TaskState()
        self.stop = StopSignal(StopRequests(services.state.table), task.storage_key, request.run_id)
        self.removal_hints: dict[str, str] = {}  # delivery: why delta removed an object (id -> reason)

    # ------------------------------------------------------------------------------------- streams
    def _stream_runs(self, context: RelationContext, resume: bool) -> list[_StreamRun]:
        runs = []
        saved = self.checkpoints.current.streams if resume and self.checkpoints.current else {}
        for stream in self.streams:
            progress = saved.get(stream.name)
            writer = blobs.StagedJsonl(
                self.services.extracts,
                f"{self.prefix}/{stream.name}.jsonl",
                block_size=self.services.settings.block_size,
                blocks=progress.blocks if progress else (),
                records=progress.records if progress else 0,
                # Its digest table as it is written; not for a resumed file (the blocks staged before).
                digests=None if progress and progress.blocks else digests.DigestBuilder(),
            )
            relations = {name: stream.spec.relations[name](stream.spec, context) for name in stream.related()}
            scopings = [s for s in (make(stream.selection) for make in stream.spec.scopings) if s is not None]
            runs.append(
                _StreamRun(stream, Mapper(stream.selection, self.task.name), relations, scopings,
                           StreamOutput(stream, writer, RunCounts()))
            )  # fmt: skip
        return runs

    @staticmethod
    def _needs_memberships(runs: list[_StreamRun]) -> bool:
        """Membership changes feed the groups stream itself, memberOf relations and membership scoping."""
        return any(
            run.stream.spec is MEMBERSHIPS
            or any(r.uses_membership_round for r in run.relations.values())
            or any(s.uses_membership_round for s in run.scopings)
            for run in runs
        )

    # ----------------------------------------------------------------------------------- execution
    async def execute(self, record: RunRecord) -> None:
        self.state = await self.services.state.get(self.task.storage_key)
        if self.state.view is not None and self.state.view.run_id == record.run_id:
            await self._committed_before(record)
            return
        self.checkpoints.resume(self.state)
        client = self.services.graph(self.connector)  # resolves the connector's secret references
        deadline = time.monotonic() + self.services.settings.run_deadline_s
        async with client.context(deadline=deadline) as call:
            try:
                await self._execute(record, client)
            finally:
                record.requests = call.stats.as_dict()  # this run's own, token acquisitions included

    async def _committed_before(self, record: RunRecord) -> None:
        """The queue delivered this run again after it had committed (its history row was not written): its
        view is the task's current one. Reading again would rewrite that view's files in place, under the
        delivery that may already name them; the run goes on to its delivery with what it committed."""
        assert self.state.view is not None
        log.info("this run committed before (a repeated delivery): not reading again, going on to delivery")
        record.files = dict(self.state.view.files)
        manifest = await blobs.get_json(self.services.extracts, f"{self.prefix}/manifest.json")
        if isinstance(manifest, dict):
            record.mode = manifest.get("mode")
            record.resync_reason = manifest.get("resync_reason")
            record.counts = {
                name: RunCounts.model_validate(c) for name, c in (manifest.get("counts") or {}).items()
            }

    async def _execute(self, record: RunRecord, client: GraphClient) -> None:
        context = RelationContext(FanOut(client, self.services.settings.graph_concurrency))
        runs = self._stream_runs(context, resume=True)
        rounds = delta_rounds(self.streams, needs_memberships=self._needs_memberships(runs))
        plan = plan_run(self.task, self.request, self.state, self.checkpoints.current, self.streams, rounds)
        delta_links: dict[str, str] = {}
        if plan.mode == "incremental":
            try:
                delta_links = await self._incremental(client, context, runs, plan)
            except DeltaTokenExpired as exc:
                plan = Plan("full", f"Graph refused the delta link ({exc.code or exc.status}): full resync")
                log.info("plan: full read (%s)", plan.reason)
                self.checkpoints.current = None
                runs = self._stream_runs(context, resume=False)
        if plan.mode == "full":
            delta_links = await self._full(client, context, runs, plan, rounds)
        record.mode = plan.mode
        record.resync_reason = plan.reason
        await commit(
            extracts=self.services.extracts,
            states=self.services.state,
            checkpoints=self.checkpoints,
            record=record,
            connector=self.connector.name,
            outputs=[run.output for run in runs],
            previous=self.state,
            delta_links=delta_links if self.task.mode == "incremental" else {},
            fingerprint=self.fingerprint,
        )

    async def _full(
        self,
        client: GraphClient,
        context: RelationContext,
        runs: list[_StreamRun],
        plan: Plan,
        rounds: list[str],
    ) -> dict[str, str]:
        checkpoint = self.checkpoints.current
        if checkpoint is None:
            delta_links: dict[str, str] = {}
            if self.task.mode == "incremental":
                # Before reading: changes made while we read are then replayed by the next round.
                # The rounds' links are taken together (one round trip, not one per round).
                by_name = {run.stream.name: run.stream for run in runs}
                latest: dict[str, Awaitable[str]] = {}
                for name in rounds:
                    stream = by_name.get(name) or membership_probe()
                    if stream.spec.watermark:
                        delta_links[name] = start_watermark(stream)  # no delta: a timestamp watermark
                        continue
                    latest[name] = latest_delta_link(client, stream, members=stream.spec is MEMBERSHIPS)
                taken = dict(zip(latest, await asyncio.gather(*latest.values()), strict=True))
                delta_links = {name: delta_links.get(name) or taken[name] for name in rounds}
            checkpoint = await self.checkpoints.start("full", plan.reason, delta_links)
        for run in runs:
            for relation in run.relations.values():
                await relation.prepare()
        jobs = []
        for run in runs:
            scope = base_scope(run.stream.selection, client_side=False)
            for scoping in run.scopings:
                scope = await scoping.narrow(scope, context.fanout)
            read = FullRead(
                client, run.stream, run.mapper, scope, run.relations, run.output.writer, run.output.counts,
                self.checkpoints.save_stream, self.progress, self.stop,
            )  # fmt: skip
            jobs.append(read.run(checkpoint.streams.get(run.stream.name)))
        await run_all(jobs)
        return dict(checkpoint.delta_links)

    async def _incremental(
        self, client: GraphClient, context: RelationContext, runs: list[_StreamRun], plan: Plan
    ) -> dict[str, str]:
        links = self.state.delta_links
        rounds: dict[str, DeltaRound] = {}
        assert self.state.view is not None
        by_name = {run.stream.name: run.stream for run in runs}
        for name in plan.rounds:
            if is_watermark(links[name]):
                previous_view = self.state.view.files[name]
                rounds[name] = await watermark_round(
                    client, by_name[name], links[name], self.services.extracts, previous_view
                )
                continue
            rounds[name] = await read_round(client, links[name], self.stop)
            self.removal_hints.update(removal_hints(rounds[name].removed_reasons))
        assert self.state.view is not None
        jobs = []
        for run in runs:
            scope = base_scope(run.stream.selection, client_side=True)
            for scoping in run.scopings:
                scope = await scoping.narrow(scope, context.fanout)
            merge = ViewMerge(
                context.fanout, run.stream, run.mapper, scope, run.relations, run.scopings,
                own_round=rounds.get(run.stream.name), memberships=rounds.get(MEMBERSHIPS.name),
            )  # fmt: skip
            previous = self.state.view.files[run.stream.name]
            jobs.append(merge.run(self.services.extracts, previous, run.output.writer, run.output.counts))
        await run_all(jobs)
        return {name: found.delta_link or links[name] for name, found in rounds.items()}


async def run_task(
    services: Services,
    request: RunRequest,
    *,
    config: Config | None = None,
    progress: Progress | None = None,
    streams: TaskStreams = task_streams,
) -> RunOutcome:
    """Run one task for one request; always leaves a history row saying what happened.

    ``streams``: which streams the task reads (by default its users and groups selections); any stream
    specification runs through the same code."""
    with logs.scope(task=request.task, run=request.run_id), RunLog(request.run_id) as captured:
        outcome = await _run_task(services, request, config, progress, streams)
    # The run's own log lines, kept with it (shared/storage/runlogs.py); a repeated delivery adds nothing.
    if captured.lines:
        await captured.save(services.extracts, blobs.run_prefix(outcome.record.task, request.run_id))
    return outcome


async def _run_task(
    services: Services,
    request: RunRequest,
    config: Config | None,
    progress: Progress | None,
    streams: TaskStreams,
) -> RunOutcome:
    history = services.history
    # The task's history, state, output and lease are keyed by its stable id (ScheduledTask.storage_key; a
    # task from a configuration file has its name as id), so renaming a task keeps them.
    task: ScheduledTask | None = None
    problem = None
    try:
        config = config or await services.config_store.load()
        task = config.task(request.task)
    except KeyError:
        problem = f"unknown task {request.task!r}"
    except ValueError as exc:  # ConfigError: the stored configuration is invalid
        problem = f"invalid stored configuration:\n{exc}"
    key = task.storage_key if task is not None else request.task
    existing = await history.get(key, request.run_id)
    if existing is not None and existing.status in ("succeeded", "skipped", "held"):
        log.info("run already %s: a repeated delivery", existing.status)
        return RunOutcome(existing)  # the same request delivered again: already done
    record = RunRecord(
        task=key,
        run_id=request.run_id,
        trigger=request.trigger,
        status="running",
        planned_at=request.planned_at or request.requested_at,
        started_at=datetime.now(UTC),
        attempt=(existing.attempt + 1) if existing is not None and existing.status != "queued" else 1,
    )
    if task is None or config is None:
        return await _finish(history, record, "failed", problem)
    if not task.enabled and not request.force:
        return await _finish(history, record, "skipped", "the task is disabled (a manual run needs --force)")
    lease = TaskLease(services.leases, key, services.settings.lease_s)
    if not await lease.acquire():
        if existing is not None and existing.status == "running":
            return RunOutcome(existing)  # this very run is in progress: a duplicate delivery
        if request.trigger in FOLLOWED_TRIGGERS:
            # A notified change may have happened after the running read passed it, and the debounce has
            # folded it into this request: this run waits for the other one (the same request comes back every
            # third of a lease until the lease is free), instead of leaving the change to the next schedule.
            delay_s = max(1, services.settings.lease_s // 3)
            await services.queue.enqueue(request, delay_s=delay_s)
            log.info("another run of this task holds the lease: waiting, asking again in %d s", delay_s)
            record.status = "queued"  # one history row, whatever the number of tries
            await history.put(record)
            return RunOutcome(record)
        log.info("another run of this task holds the lease: skipped")
        return await _finish(history, record, "skipped", "another run of this task is in progress")
    await history.put(record)
    run = TaskRun(services, config, task, request, progress, streams(task), lease)
    try:
        await run.execute(record)
        selections = {s.name: s.selection for s in run.streams}
        delivered = await after_commit(
            services, task, run.connector, record, lease=lease, hints=run.removal_hints, selections=selections
        )
    except RunStopped as exc:
        # Nothing was committed: drop the checkpoint, and the view and delta links stay as they were.
        log.info("run stopped: %s", exc)
        await run.checkpoints.abandon()
        await run.stop.requests.clear(key)
        return await _finish(history, record, "stopped", str(exc))
    except Exception as exc:
        retriable = transient(exc)
        if isinstance(exc, GraphError):
            log.warning("run failed: %s", exc.redacted())  # the history keeps Graph's whole message
        else:
            log.exception("run failed")
        if not retriable and not lease.lost:
            # Nothing will resume it; the view and delta links stay as they were.
            await run.checkpoints.abandon()
        error = f"{type(exc).__name__}: {exc}"
        await after_failure(services, task, run.connector, record, error, final=not retriable)
        return await _finish(history, record, "failed", error, retriable=retriable)
    finally:
        await lease.release()
    return await _finish(history, record, delivered.status, delivered.error)


async def _finish(
    history: HistoryStore, record: RunRecord, status: str, error: str | None, retriable: bool = False
) -> RunOutcome:
    record.status = status  # type: ignore[assignment]
    record.error = error
    record.completed_at = datetime.now(UTC)
    await history.put(record)
    if status in ("failed", "held") and not retriable:
        log_failure(record.task, record.run_id, status, error or "")  # the TaskRunFailed event
    return RunOutcome(record, retriable)
