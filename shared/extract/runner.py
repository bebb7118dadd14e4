"""One run of one scheduled task, from the queue message to the committed output and its history row.

    lease the task -> load state -> plan (full | incremental, and why) -> read Graph into staged blobs
    -> commit the files -> manifest -> latest.json -> only now: state (view, delta links) -> history

Write the data, then the state: a crash before the commit leaves the previous view, delta links and output
untouched (the staged blocks are invisible); a crash during a long full read resumes from its checkpoint.
An incremental task's first run, and any run after its delta link was refused, reads everything and takes
its new delta links *before* reading, so nothing that changes meanwhile is missed (a change may be seen
twice; applying it twice is harmless).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.config import Config, ScheduledTask
from shared.extract import view
from shared.extract.full import FullRead, membership_index
from shared.extract.incremental import DeltaRound, ViewMerge, latest_delta_link, read_round
from shared.extract.mapping import Mapper, selection_fingerprint
from shared.extract.members import MemberReader
from shared.extract.streams import Scope, StreamPlan, membership_groups
from shared.graph.client import GraphClient
from shared.graph.errors import DeltaTokenExpired, GraphError
from shared.retry import transient
from shared.services import Services
from shared.storage import blobs
from shared.storage.lease import TaskLease
from shared.storage.queues import RunRequest
from shared.storage.tables import Checkpoint, RunCounts, RunRecord, TaskState, View

log = logging.getLogger(__name__)
Progress = Callable[[str, int], None]
FORMAT = "entra-graph-connector/records-v1"


@dataclass
class RunOutcome:
    record: RunRecord
    retriable: bool = False  # the failure is transient: let the queue deliver the message again


@dataclass
class Plan:
    mode: str  # "full" | "incremental"
    reason: str | None = None  # why an incremental task reads everything


@dataclass
class _Stream:
    plan: StreamPlan
    mapper: Mapper
    writer: blobs.StagedJsonl
    counts: RunCounts = field(default_factory=RunCounts)


def task_fingerprint(task: ScheduledTask) -> str:
    return selection_fingerprint(task.users, "users") + selection_fingerprint(task.groups, "groups")


class TaskRun:
    def __init__(
        self,
        services: Services,
        config: Config,
        task: ScheduledTask,
        request: RunRequest,
        progress: Progress | None,
    ) -> None:
        self.services = services
        self.config = config
        self.task = task
        self.request = request
        self.progress = progress
        self.connector = config.connector(task.connector)
        self.prefix = blobs.run_prefix(task.name, request.run_id)
        self.state = TaskState()
        self.checkpoint: Checkpoint | None = None
        self.lease: TaskLease | None = None

    # ------------------------------------------------------------------------------------------ plan
    def _streams(self, resume: Checkpoint | None) -> dict[str, _Stream]:
        streams: dict[str, _Stream] = {}
        settings = self.services.settings
        for name, collection, selection in (
            ("users", "users", self.task.users),
            ("groups", "groups", self.task.groups),
        ):
            if selection is None:
                continue
            saved = (resume.streams.get(name) if resume else None) or {}
            writer = blobs.StagedJsonl(
                self.services.extracts,
                f"{self.prefix}/{name}.jsonl",
                block_size=settings.block_size,
                blocks=saved.get("blocks", ()),
                records=saved.get("records", 0),
            )
            streams[name] = _Stream(
                StreamPlan(name, collection, selection), Mapper(selection, self.task.name), writer
            )
        return streams

    def _needs_groups_round(self, streams: dict[str, _Stream]) -> bool:
        """Group membership changes feed groups, memberOf mappings and users scoped by group membership."""
        return (
            "groups" in streams
            or any(s.mapper.needs_member_of for s in streams.values())
            or any(any(membership_groups(s.plan.selection)) for s in streams.values())
        )

    def _plan(self, streams: dict[str, _Stream]) -> Plan:
        if self.task.mode == "full":
            return Plan("full")
        if self.request.full_resync:
            return Plan("full", "a full read was requested")
        if self.checkpoint is not None:
            return Plan("full", self.checkpoint.resync_reason or "resuming an interrupted full read")
        view_ = self.state.view
        if view_ is None:
            return Plan("full", "first run: nothing to apply changes to")
        if view_.fingerprint != task_fingerprint(self.task):
            return Plan("full", "the task's queries or mappings changed")
        needed = set(streams) | ({"groups"} if self._needs_groups_round(streams) else set())
        missing = sorted(
            n for n in needed if n not in self.state.delta_links or (n not in view_.files and n in streams)
        )
        if missing:
            return Plan("full", f"no delta link or view for {', '.join(missing)}")
        return Plan("incremental")

    # ------------------------------------------------------------------------------------ execution
    async def _save_checkpoint(self, stream: str, data: dict[str, Any]) -> None:
        assert self.checkpoint is not None
        self.checkpoint.streams[stream] = data
        await self._persist_checkpoint()

    async def _persist_checkpoint(self) -> None:
        """Store the checkpoint beside the unchanged view and delta links (the run has committed nothing)."""
        assert self.checkpoint is not None
        self._check_lease()
        self.checkpoint.saved_at = datetime.now(UTC)
        await self.services.state.put(
            self.task.name, self.state.model_copy(update={"checkpoint": self.checkpoint})
        )

    def _check_lease(self) -> None:
        if self.lease is not None and self.lease.lost:
            raise RuntimeError(
                "the task lease was lost during the run: not writing state (another run may own it)"
            )

    def _checkpoint_fingerprint(self) -> str:
        """A resumed read must be the same read: same mappings and queries, same tenant and Graph host."""
        connector = hashlib.sha256(self.connector.model_dump_json().encode()).hexdigest()[:16]
        return task_fingerprint(self.task) + connector

    async def abandon_checkpoint(self) -> None:
        state = await self.services.state.get(self.task.name)
        if state.checkpoint is not None and state.checkpoint.run_id == self.request.run_id:
            await self.services.state.put(self.task.name, state.model_copy(update={"checkpoint": None}))

    async def execute(self, record: RunRecord) -> None:
        settings = self.services.settings
        self.state = await self.services.state.get(self.task.name)
        saved = self.state.checkpoint
        self.checkpoint = (
            saved
            if saved is not None
            and saved.run_id == self.request.run_id
            and saved.fingerprint == self._checkpoint_fingerprint()
            else None
        )
        client = self.services.graph(self.connector)  # resolves the connector's secret references
        async with client.context(deadline=time.monotonic() + settings.run_deadline_s) as call:
            try:
                await self._execute(record, client)
            finally:
                record.requests = {**call.stats.as_dict(), "token_acquisitions": client.tokens.acquisitions}

    async def _execute(self, record: RunRecord, client: GraphClient) -> None:
        reader = MemberReader(client, self.services.settings.graph_concurrency)
        streams = self._streams(self.checkpoint)
        plan = self._plan(streams)
        delta_links: dict[str, str] = {}
        if plan.mode == "incremental":
            try:
                delta_links = await self._incremental(client, reader, streams)
            except DeltaTokenExpired as exc:
                plan = Plan("full", f"Graph refused the delta link ({exc.code or exc.status}): full resync")
                streams = self._streams(None)
        if plan.mode == "full":
            delta_links = await self._full(client, reader, streams, plan)
        record.mode = plan.mode
        record.resync_reason = plan.reason
        await self._commit(record, streams, delta_links)

    async def _full(
        self, client: GraphClient, reader: MemberReader, streams: dict[str, _Stream], plan: Plan
    ) -> dict[str, str]:
        delta_links: dict[str, str] = {}
        if self.checkpoint is None:
            self.checkpoint = Checkpoint(
                run_id=self.request.run_id,
                mode="full",
                fingerprint=self._checkpoint_fingerprint(),
                resync_reason=plan.reason,
                saved_at=datetime.now(UTC),
            )
            if self.task.mode == "incremental":
                # Before reading: changes made while we read are then replayed by the next round.
                for name in sorted(
                    set(streams) | ({"groups"} if self._needs_groups_round(streams) else set())
                ):
                    stream_plan = streams[name].plan if name in streams else _groups_probe(self.task)
                    delta_links[name] = await latest_delta_link(client, stream_plan, members=name == "groups")
                self.checkpoint.delta_links = delta_links
            await self._persist_checkpoint()
        else:
            delta_links = dict(self.checkpoint.delta_links)
        reading = FullRead(client, reader, self._save_checkpoint, self.progress)
        index = None
        if any(s.mapper.needs_member_of for s in streams.values()):
            index = await membership_index(client, reader)
        jobs = []
        for name, stream in streams.items():
            scope = await self._scope(reader, stream.plan, client_side=False)
            resume = self.checkpoint.streams.get(name) or None
            read = reading.users if name == "users" else reading.groups
            jobs.append(
                read(
                    stream.plan,
                    stream.mapper,
                    scope,
                    stream.writer,
                    stream.counts,
                    index=index,
                    resume=resume,
                )
            )
        await _all(jobs)
        return delta_links

    async def _incremental(
        self, client: GraphClient, reader: MemberReader, streams: dict[str, _Stream]
    ) -> dict[str, str]:
        links = self.state.delta_links
        users_round: DeltaRound | None = None
        groups_round: DeltaRound | None = None
        if "users" in streams:
            users_round = await read_round(client, links["users"])
        if self._needs_groups_round(streams):
            groups_round = await read_round(client, links["groups"])
        assert self.state.view is not None
        jobs = []
        for name, stream in streams.items():
            scope = await self._scope(reader, stream.plan, client_side=True)
            merge = ViewMerge(
                client, reader, stream.plan, stream.mapper, scope,
                own_round=users_round if name == "users" else groups_round,
                groups_round=groups_round,
            )  # fmt: skip
            jobs.append(
                merge.run(self.services.extracts, self.state.view.files[name], stream.writer, stream.counts)
            )
        await _all(jobs)
        new_links = {}
        if users_round is not None:
            new_links["users"] = users_round.delta_link or links["users"]
        if groups_round is not None:
            new_links["groups"] = groups_round.delta_link or links["groups"]
        return new_links

    async def _scope(self, reader: MemberReader, plan: StreamPlan, *, client_side: bool) -> Scope:
        include_groups, exclude_groups = membership_groups(plan.selection)
        include = await reader.member_set(include_groups) if include_groups else None
        exclude = await reader.member_set(exclude_groups) if exclude_groups else set()
        return Scope.for_selection(
            plan.selection, client_side=client_side, include=include, exclude_members=exclude
        )

    async def _commit(
        self, record: RunRecord, streams: dict[str, _Stream], delta_links: dict[str, str]
    ) -> None:
        self._check_lease()
        files = {}
        for name, stream in streams.items():
            await stream.writer.commit()
            files[name] = stream.writer.name
            if record.mode == "full":
                # A full read comes in Graph's order: compare with the previous view by id. (An incremental
                # run counted its changes while it merged.)
                previous = {}
                if self.state.view is not None and name in self.state.view.files:
                    previous = await view.digests(self.services.extracts, self.state.view.files[name])
                records, changed, removed = await view.compare(
                    self.services.extracts, stream.writer.name, previous
                )
                stream.counts.written = records
                stream.counts.changed = changed
                stream.counts.removed = removed
        record.counts = {name: s.counts for name, s in streams.items()}
        record.files = files
        committed_at = datetime.now(UTC)
        manifest = {
            "format": FORMAT,
            "task": self.task.name,
            "connector": self.connector.name,
            "run_id": self.request.run_id,
            "mode": record.mode,
            "resync_reason": record.resync_reason,
            "trigger": record.trigger,
            "planned_at": record.planned_at.isoformat() if record.planned_at else None,
            "started_at": record.started_at.isoformat() if record.started_at else None,
            "committed_at": committed_at.isoformat(),
            "previous_run_id": self.state.view.run_id if self.state.view else None,
            "files": {
                name: {
                    "path": s.writer.name,
                    "records": s.counts.written,
                    "target_template": s.plan.selection.target_template,
                    "target_folder": s.plan.selection.target_folder,
                    "key": s.plan.selection.key,
                }
                for name, s in streams.items()
            },
            "counts": {name: s.counts.model_dump() for name, s in streams.items()},
        }
        await blobs.put_json(self.services.extracts, f"{self.prefix}/manifest.json", manifest)
        await blobs.put_json(self.services.extracts, blobs.latest_name(self.task.name), manifest)
        new_state = TaskState(
            delta_links=delta_links if self.task.mode == "incremental" else {},
            view=View(
                run_id=self.request.run_id,
                fingerprint=task_fingerprint(self.task),
                files=files,
                records={name: s.counts.written for name, s in streams.items()},
                committed_at=committed_at,
            ),
            checkpoint=None,
        )
        await self.services.state.put(self.task.name, new_state)


def _groups_probe(task: ScheduledTask) -> StreamPlan:
    """A groups plan for tasks that read users only but map memberOf (the groups round feeds it)."""
    from shared.config import GroupSelection

    selection = GroupSelection(
        mappings=[{"external": "members", "local": "members"}], target_template="", target_folder=""
    )
    return StreamPlan("groups", "groups", selection)


async def _all(jobs: list) -> None:
    """Run jobs concurrently; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def run_task(
    services: Services, request: RunRequest, *, config: Config | None = None, progress: Progress | None = None
) -> RunOutcome:
    """Run one task for one request; always leaves a history row saying what happened."""
    history = services.history
    existing = await history.get(request.task, request.run_id)
    if existing is not None and existing.status in ("succeeded", "skipped"):
        return RunOutcome(existing)  # the same request delivered again: already done
    record = RunRecord(
        task=request.task,
        run_id=request.run_id,
        trigger=request.trigger,
        status="running",
        planned_at=request.planned_at or request.requested_at,
        started_at=datetime.now(UTC),
        attempt=(existing.attempt + 1) if existing is not None else 1,
    )
    try:
        config = config or await services.config_store.load()
        task = config.task(request.task)
    except KeyError:
        return await _finish(history, record, "failed", f"unknown task {request.task!r}")
    except ValueError as exc:  # ConfigError: the stored configuration is invalid
        return await _finish(history, record, "failed", f"invalid stored configuration:\n{exc}")
    run = TaskRun(services, config, task, request, progress)
    lease = TaskLease(services.leases, task.name, services.settings.lease_s)
    if not await lease.acquire():
        if existing is not None and existing.status == "running":
            return RunOutcome(existing)  # this very run is in progress: a duplicate delivery
        return await _finish(history, record, "skipped", "another run of this task is in progress")
    await history.put(record)
    run.lease = lease
    try:
        await run.execute(record)
    except Exception as exc:
        retriable = transient(exc)
        if isinstance(exc, GraphError):
            log.warning("run %s of %s failed: %s", request.run_id, task.name, exc)
        else:
            log.exception("run %s of %s failed", request.run_id, task.name)
        if not retriable and not lease.lost:
            # Nothing will resume it; the view and delta links stay as they were.
            await run.abandon_checkpoint()
        return await _finish(history, record, "failed", f"{type(exc).__name__}: {exc}", retriable=retriable)
    finally:
        await lease.release()
    return await _finish(history, record, "succeeded", None)


async def _finish(
    history, record: RunRecord, status: str, error: str | None, retriable: bool = False
) -> RunOutcome:
    record.status = status  # type: ignore[assignment]
    record.error = error
    record.completed_at = datetime.now(UTC)
    await history.put(record)
    return RunOutcome(record, retriable)
