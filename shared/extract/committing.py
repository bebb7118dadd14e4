"""Committing a run: the files, then the manifest and ``latest.json``, and only then the task's state.

Write the data, then the state: a crash before the files are committed leaves the previous view, delta links
and output untouched (staged blocks are invisible); a crash after the files but before the state is followed
by a run that starts again from the previous state (Graph's changes are applied again, harmlessly). A run
whose lease was lost commits nothing: another run may own the task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.storage.blob import ContainerClient

from shared.extract.checkpointing import Checkpoints
from shared.extract.streams import Stream
from shared.runs import Manifest, ManifestFile, RunCounts, RunRecord, TaskState, View
from shared.storage import blobs, digests
from shared.storage.tables import StateStore

log = logging.getLogger(__name__)


@dataclass
class StreamOutput:
    stream: Stream
    writer: blobs.StagedJsonl
    counts: RunCounts


async def commit(
    *,
    extracts: ContainerClient,
    states: StateStore,
    checkpoints: Checkpoints,
    record: RunRecord,
    connector: str,
    outputs: list[StreamOutput],
    previous: TaskState,
    delta_links: dict[str, str],
    fingerprint: str,
) -> None:
    checkpoints.check_lease()
    files = {}
    for output in outputs:
        name = output.stream.name
        writer = output.writer
        await writer.commit()
        files[name] = writer.name
        # The view's digest table, built while it was written (a run resumed from a checkpoint built none:
        # readers then build it from the file), saved with it before anything names the view.
        table = writer.digests.table() if isinstance(writer.digests, digests.DigestBuilder) else None
        if table is not None:
            await digests.save(extracts, digests.table_name(writer.name), table)
        if record.mode == "full":
            # A full read comes in Graph's order: compare with the previous view by id, table to table. (An
            # incremental run counted its changes while it merged.)
            if previous.view is not None and name in previous.view.files:
                before = await digests.of_view(extracts, previous.view.files[name])
                now = table if table is not None else await digests.of_view(extracts, writer.name)
                records, changed, removed = digests.compare(now, before)
            else:  # no view to compare with: every record is new, and the writer counted them
                records, changed, removed = writer.records, writer.records, 0
            output.counts.written, output.counts.changed, output.counts.removed = records, changed, removed
    record.counts = {o.stream.name: o.counts for o in outputs}
    record.files = files
    committed_at = datetime.now(UTC)
    manifest = Manifest(
        task=record.task,
        connector=connector,
        run_id=record.run_id,
        mode=record.mode,
        resync_reason=record.resync_reason,
        trigger=record.trigger,
        planned_at=record.planned_at,
        started_at=record.started_at,
        committed_at=committed_at,
        previous_run_id=previous.view.run_id if previous.view else None,
        files={
            o.stream.name: ManifestFile(
                path=o.writer.name,
                records=o.counts.written,
                target_template=o.stream.selection.target_template,
                target_folder=o.stream.selection.target_folder,
                key=o.stream.selection.key,
                key_attribute=o.stream.selection.key_attribute,
            )
            for o in outputs
        },
        counts={o.stream.name: o.counts for o in outputs},
    )
    body = manifest.model_dump(mode="json")
    # The files are the run's own (invisible until the manifest names them); the manifest, latest.json and the
    # state make it visible: only while the lease is still ours (renewed now, so it lasts through them).
    await checkpoints.confirm_lease()
    await blobs.put_json(extracts, f"{blobs.run_prefix(record.task, record.run_id)}/manifest.json", body)
    await blobs.put_json(extracts, blobs.latest_name(record.task), body)
    new_state = TaskState(
        delta_links=delta_links,
        view=View(
            run_id=record.run_id,
            fingerprint=fingerprint,
            files=files,
            records={o.stream.name: o.counts.written for o in outputs},
            committed_at=committed_at,
        ),
        checkpoint=None,
    )
    await states.put(record.task, new_state)
    log.info(
        "committed %s: %s",
        record.mode,
        ", ".join(
            f"{o.stream.name} {o.counts.written} records ({o.counts.changed} changed)" for o in outputs
        ),
    )
