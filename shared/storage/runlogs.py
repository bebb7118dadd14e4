"""A run's own log lines, kept with the run: ``{task}/runs/{run_id}/run.log`` in the extracts container.

While a run executes, :class:`RunLog` (a logging handler on the root logger) keeps the records logged for that
run: those whose run-id context variable (:mod:`shared.logs`) is the run's own, so concurrent runs in one
process never mix. It keeps at most :data:`MAX_LINES` lines (and says how many it dropped). When the run
ends, however it ends, the lines are appended to the run's append blob, one append per attempt, so a
retried run shows each attempt. It captures what the process logs at its configured level (the Functions host:
``host.json`` ``logLevel``; the CLI: INFO), except the Azure SDKs' own lines below WARNING (one per HTTP
request). It holds the same text as the process's own log lines: no tokens,
no secrets, no record bodies (the rule for every log line, see :mod:`shared.logs`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import TracebackType

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared import logs
from shared.storage import threads

MAX_LINES = 5000
LOG_NAME = "run.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

log = logging.getLogger(__name__)


def log_name(prefix: str) -> str:
    """The log blob of the run whose folder is ``prefix`` (``{task}/runs/{run_id}``)."""
    return f"{prefix}/{LOG_NAME}"


class RunLog(logging.Handler):
    def __init__(self, run_id: str, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.run_id = run_id
        self.lines: list[str] = []
        self.dropped = 0
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if logs.run_id.get() != self.run_id:
            return
        if record.name.startswith("azure.") and record.levelno < logging.WARNING:
            return  # the Azure SDKs' request-by-request lines: their warnings and errors are kept
        if len(self.lines) >= MAX_LINES:
            self.dropped += 1
            return
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted must not break the run
            self.handleError(record)

    def __enter__(self) -> RunLog:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        logging.getLogger().removeHandler(self)

    def text(self) -> str:
        lines = list(self.lines)
        if self.dropped:
            lines.append(f"... {self.dropped} more line(s) not kept (at most {MAX_LINES} per attempt)")
        return "\n".join(lines) + "\n" if lines else ""

    async def save(self, container: ContainerClient, prefix: str) -> None:
        """Append this attempt's lines to the run's log blob (never fails the run: a failure is logged)."""
        footer = f"--- attempt ended {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC ---\n"
        data = (
            self.text().encode()[: 4 * 1024 * 1024 - 1 - len(footer)] + footer.encode()
        )  # a block: 4 MiB at most

        def append() -> None:
            blob = container.get_blob_client(log_name(prefix))
            try:
                blob.create_append_blob(if_none_match="*")
            except ResourceExistsError:
                pass
            blob.append_block(data)

        try:
            await threads.call(append)
        except Exception as exc:
            log.warning("could not keep the run's log lines: %s: %s", type(exc).__name__, exc)


async def read(container: ContainerClient, prefix: str) -> bytes | None:
    """The run's log text, or None when it kept none."""

    def download() -> bytes | None:
        try:
            return container.get_blob_client(log_name(prefix)).download_blob().readall()
        except ResourceNotFoundError:
            return None

    return await threads.call(download)
