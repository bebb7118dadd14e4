"""Checkpoints of a run in progress: saved beside the unchanged view and delta links, resumed by the same
run id with the same configuration, dropped when the run fails for good.

A checkpoint names, per stream, the longest finished prefix of its pages (:class:`StreamCheckpoint`), and
the delta links an incremental task took before its full read. It is bound to the task's and the
connector's definition: a resumed read must be the same read (same mappings and queries, same tenant and
Graph host), or it starts over. Nothing is written once the task lease is lost.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from shared.config import Connector
from shared.runs import Checkpoint, StreamCheckpoint, TaskState
from shared.storage.lease import TaskLease
from shared.storage.tables import StateStore

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """The task lease was lost during the run: another run may own the task now; nothing more is written."""


class Checkpoints:
    def __init__(
        self,
        store: StateStore,
        task: str,
        run_id: str,
        fingerprint: str,
        connector: Connector,
        lease: TaskLease | None,
    ) -> None:
        self.store = store
        self.task = task
        self.run_id = run_id
        connector_hash = hashlib.sha256(connector.model_dump_json().encode()).hexdigest()[:16]
        self.fingerprint = fingerprint + connector_hash
        self.lease = lease
        self.state = TaskState()
        self.current: Checkpoint | None = None

    def check_lease(self) -> None:
        if self.lease is not None and self.lease.lost:
            raise LeaseLost(
                "the task lease was lost during the run: not writing state (another run may own it)"
            )

    async def confirm_lease(self) -> None:
        """:meth:`check_lease`, after renewing the lease now: for the writes that make a run visible."""
        if self.lease is not None:
            await self.lease.confirm()
        self.check_lease()

    def resume(self, state: TaskState) -> Checkpoint | None:
        """The stored checkpoint if it is this run's, made for this configuration."""
        self.state = state
        saved = state.checkpoint
        if saved is not None and saved.run_id == self.run_id and saved.fingerprint == self.fingerprint:
            self.current = saved
            log.info("resuming from the checkpoint saved at %s", saved.saved_at.isoformat())
        elif saved is not None:
            log.info("a stored checkpoint belongs to another run or configuration: not resumed")
        return self.current

    async def start(self, mode: str, reason: str | None, delta_links: dict[str, str]) -> Checkpoint:
        self.current = Checkpoint(
            run_id=self.run_id,
            mode=mode,
            fingerprint=self.fingerprint,
            resync_reason=reason,
            delta_links=delta_links,
            saved_at=datetime.now(UTC),
        )
        await self.persist()
        return self.current

    async def save_stream(self, stream: str, progress: StreamCheckpoint) -> None:
        assert self.current is not None
        self.current.streams[stream] = progress
        await self.persist()

    async def persist(self) -> None:
        """Store the checkpoint beside the unchanged view and delta links (the run has committed nothing)."""
        assert self.current is not None
        self.check_lease()
        self.current.saved_at = datetime.now(UTC)
        await self.store.put(self.task, self.state.model_copy(update={"checkpoint": self.current}))

    async def abandon(self) -> None:
        """Drop this run's checkpoint (it failed for good): the view and delta links stay as they were."""
        state = await self.store.get(self.task)
        if state.checkpoint is not None and state.checkpoint.run_id == self.run_id:
            await self.store.put(self.task, state.model_copy(update={"checkpoint": None}))
