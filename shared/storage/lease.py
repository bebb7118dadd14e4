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
import time

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobLeaseClient, ContainerClient

from shared.retry import transient
from shared.storage import threads

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
                # https://learn.microsoft.com/rest/api/storageservices/lease-blob: another holder's lease
                # answers the documented error code LeaseAlreadyPresent.
                if getattr(exc, "error_code", None) == "LeaseAlreadyPresent":
                    return None
                raise
            return lease

        self._lease = await threads.lease_call(run)
        if self._lease is None:
            return False
        self._renewer = asyncio.create_task(self._renew_forever())
        return True

    async def _renew_forever(self) -> None:
        """Renew every third of the lease; on a transient failure retry until the lease would expire.

        Any exit (the lease taken by someone else, or unrenewable until it expired) marks it lost."""
        renewed_at = time.monotonic()
        lease = self._lease
        assert lease is not None
        try:
            while True:
                await asyncio.sleep(self._lease_s / 3)
                while True:
                    try:
                        await threads.lease_call(lease.renew)
                        renewed_at = time.monotonic()
                        break
                    except Exception as exc:
                        if not transient(exc):  # another holder, or the lease is gone: lost
                            raise
                        error = exc
                    if time.monotonic() - renewed_at >= self._lease_s:
                        raise error
                    log.warning("renewing the task lease failed, retrying: %s", error)
                    await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("lost the task lease: %s", exc)
            self.lost = True

    async def confirm(self) -> bool:
        """Renew the lease now, before a write only its holder may make: ``False`` (and :attr:`lost`) when it is
        gone. A renewed lease cannot pass to anyone else for ``LEASE_SECONDS`` (only an explicit break ends it
        sooner), so the writes that follow are the holder's; the background renewer may notice a loss up to a
        third of a lease late."""
        if self.lost or self._lease is None:
            return not self.lost
        for attempt in range(1, 4):
            try:
                await threads.lease_call(self._lease.renew)
                return True
            except Exception as exc:
                if not transient(exc) or attempt == 3:  # another holder, or storage unreachable throughout
                    log.error("lost the task lease: %s", exc)
                    self.lost = True
                    return False
                log.warning("renewing the task lease failed, retrying: %s", exc)
                await asyncio.sleep(1.0)
        return not self.lost

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self._lease is not None and not self.lost:
            with contextlib.suppress(HttpResponseError):
                await threads.lease_call(self._lease.release)
        self._lease = None
