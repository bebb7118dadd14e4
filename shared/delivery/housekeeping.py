"""Housekeeping: a task keeps its last N committed runs, plus every run its state still refers to.

After a commit, run folders older than the N-th newest committed run are deleted, except the latest view
(the extract's state), the delivered view (the task cache) and a held run. A folder without
``manifest.json`` (a run that never committed) newer than that boundary is left alone: it may be a run in
progress.
"""

from __future__ import annotations

import logging
from datetime import datetime

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.storage import threads
from shared.storage.blobs import get_json

log = logging.getLogger(__name__)


async def prune_runs(container: ContainerClient, task: str, *, keep: int, protected: set[str]) -> list[str]:
    """Delete old run folders of ``task``; returns the run ids deleted.

    Runs are ordered by their manifests' ``committed_at`` (run ids sort by the second they started only).
    """
    root = f"{task}/runs/"

    def listing() -> dict[str, list[tuple[str, datetime]]]:
        folders: dict[str, list[tuple[str, datetime]]] = {}
        for blob in container.list_blobs(name_starts_with=root):
            run_id = blob.name[len(root) :].split("/", 1)[0]
            folders.setdefault(run_id, []).append((blob.name, blob.last_modified))
        return folders

    folders = await threads.call(listing)
    manifests = [
        run for run, blobs in folders.items() if any(n == f"{root}{run}/manifest.json" for n, _ in blobs)
    ]
    if len(manifests) <= keep:
        return []
    committed = []
    for run in manifests:
        manifest = await get_json(container, f"{root}{run}/manifest.json") or {}
        committed.append(
            (datetime.fromisoformat(manifest.get("committed_at") or "1970-01-01T00:00:00+00:00"), run)
        )
    committed.sort(reverse=True)
    boundary = committed[keep - 1][0]  # when the oldest run kept by count committed
    kept = {run for _, run in committed[:keep]}
    doomed = sorted(
        run
        for run, blobs in folders.items()
        if run not in protected
        and run not in kept
        and (
            run in manifests
            # a folder that never committed: its blobs are older than the boundary (whole seconds)
            or max(modified for _, modified in blobs) < boundary.replace(microsecond=0)
        )
    )

    def delete() -> None:
        for run in doomed:
            for name, _ in folders[run]:  # a handful of blobs per run folder
                try:
                    container.delete_blob(name)
                except ResourceNotFoundError:
                    pass

    if doomed:
        await threads.call(delete)
        log.info("housekeeping: deleted %d run folder(s) older than %s", len(doomed), boundary.isoformat())
    return doomed
