"""Run-scoped logging: who a log record is about, carried in context variables, added to every record.

The runner sets the task and run id, an activity its name, the Graph client the request id of the last
answer; :class:`ContextFilter` copies them onto each record (``record.task``, ``record.run_id``,
``record.activity``, ``record.graph_request_id``), so a handler or Application Insights can show and query
them. Values stay per asyncio task: concurrent runs in one process never see each other's.

Nothing personal goes into these fields or into logged URLs (see :func:`shared.graph.errors.redact_url`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

task_name: contextvars.ContextVar[str | None] = contextvars.ContextVar("task_name", default=None)
run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)
activity: contextvars.ContextVar[str | None] = contextvars.ContextVar("activity", default=None)
graph_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "graph_request_id", default=None
)

FIELDS = ("task", "run_id", "activity", "graph_request_id")
FORMAT = "%(asctime)s %(levelname)s %(name)s [task=%(task)s run=%(run_id)s request=%(graph_request_id)s] %(message)s"


class ContextFilter(logging.Filter):
    """Adds the run-scoped fields to every record passing through (install on a handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.task = task_name.get()
        record.run_id = run_id.get()
        record.activity = activity.get()
        record.graph_request_id = graph_request_id.get()
        return True


@contextlib.contextmanager
def scope(
    *, task: str | None = None, run: str | None = None, activity_name: str | None = None
) -> Iterator[None]:
    """Set the fields given for the code inside (and the asyncio tasks it starts)."""
    tokens = []
    for var, value in ((task_name, task), (run_id, run), (activity, activity_name)):
        if value is not None:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def attach(handler: logging.Handler) -> logging.Handler:
    """Give ``handler`` the run-scoped fields (idempotent)."""
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())
    return handler


def quiet_http_client() -> None:
    """httpx logs every request's full URL at INFO ("HTTP Request: GET https://graph.microsoft.com/...?$filter=
    ..."): query values and user principal names, which the connector's own records leave out. Only its
    warnings are kept; the connector logs Graph calls itself, redacted."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


def attach_to_root() -> None:
    """Give every handler of the root logger the run-scoped fields: the Functions worker's handler, which
    sends records to the host (and Application Insights) with ``record.__dict__`` as custom dimensions."""
    quiet_http_client()
    for handler in logging.getLogger().handlers:
        attach(handler)


def install(level: int = logging.INFO) -> logging.Handler:
    """A stderr handler on the root logger that prints the fields (the CLI, the demo, the benchmark)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    quiet_http_client()
    return attach(handler)
