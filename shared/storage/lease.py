"""One run per task at a time: a blob lease on ``{LEASES_CONTAINER}/{task}.lock``.

The lease lasts ``LEASE_SECONDS`` and is renewed in the background while the run is alive, so a crashed
worker's lock frees itself within one lease period. A run that cannot take the lease is recorded as
skipped. If a renewal fails (the lease was lost), :attr:`TaskLease.lost` is set and the run refuses to
commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobLeaseClient, ContainerClient

log = logging.getLogger(__name__)


class TaskLease:
    def __init__(self, container: ContainerClient, task: str, lease_s: int = 60) -> None:
        self._blob = container.get_blob_client(f"{task}.lock")
        self._lease_s = max(15, min(60, lease_s))
        self._lease: BlobLeaseClient | None = None
        self._renewer: asyncio.Task[None] | None = None
        self.lost = False

    async def acquire(self) -> bool:
        def run() -> BlobLeaseClient | None:
            try:
                self._blob.upload_blob(b"", overwrite=False)
            except (ResourceExistsError, HttpResponseError):
                pass  # exists already (possibly leased)
            lease = BlobLeaseClient(self._blob)
            try:
                lease.acquire(lease_duration=self._lease_s)
            except HttpResponseError as exc:
                if exc.status_code == 409:
                    return None
                raise
            return lease

        self._lease = await asyncio.to_thread(run)
        if self._lease is None:
            return False
        self._renewer = asyncio.create_task(self._renew_forever())
        return True

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await asyncio.to_thread(self._lease.renew)
            except HttpResponseError as exc:
                log.error("lost the task lease: %s", exc.message)
                self.lost = True
                return

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self._lease is not None and not self.lost:
            with contextlib.suppress(HttpResponseError):
                await asyncio.to_thread(self._lease.release)
        self._lease = None
