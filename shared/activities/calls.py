"""One activity call: its event task and connector, the connector's pooled Graph client, the Graph request ids
it collects, and the two waits Graph's eventual consistency needs.

- :meth:`ActivityCall.send` is the only way an activity reaches Graph: the connector's one client per process
  (``Services.graph``), inside the call's own context (deadline and request statistics), collecting Graph's
  ``request-id`` of every answer for the response and the logs.
- :meth:`ActivityCall.replicated` repeats a follow-up of a create (a read, a ``members/$ref``) while Graph
  answers as if the new object did not exist yet: "a newly created object [may] return a 'Not Found'", and
  ``members/$ref`` on a recently created group "might return a 400 Bad Request ... Retry after a brief delay"
  (docs/graph-behaviour.md section 11; https://learn.microsoft.com/graph/api/group-post-members). The wait is
  bounded (``REPLICATION_WINDOW_S``), with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from shared.config import Connector
from shared.config.event_tasks import EventTask
from shared.graph.client import GraphClient
from shared.graph.errors import BadRequest, Conflict, GraphError, NotFound

log = logging.getLogger(__name__)

REPLICATION_WINDOW_S = 20.0  # how long a follow-up of a create waits for Graph's replicas at most
# A 404 is also Graph's answer for an object that does not exist at all: not waited out, unless the caller
# knows the object was just created (the lookup after a create whose answer was lost).
NOT_FOUND_WINDOW_S = 0.0
FIRST_REPLICATION_WAIT_S = 0.25
CALL_DEADLINE_S = 150.0  # retry waits stop here: an HTTP-triggered function must answer within 230 s
T = TypeVar("T")


def user_path(user: str) -> str:
    """``/users/{id or UPN}``: a UPN is percent-encoded except ``@`` (``#EXT#`` becomes ``%23EXT%23``)."""
    return f"/users/{quote(user, safe='@')}"


_PERSONAL = re.compile(r"[^/?&=]*(@|%40)[^/?&]*")


def loggable(path_or_url: str) -> str:
    """A Graph path fit for logs: the query string dropped (filters hold the data card's values) and user
    principal names (segments with '@') replaced, so logs hold ids, not people's names."""
    return _PERSONAL.sub("{upn}", path_or_url.split("?", 1)[0])


def not_replicated_yet(error: GraphError) -> bool:
    """Graph's 400 for links to a just-created object ("The source resource object or one of the objects
    being referenced don't exist."; its code is not documented)."""
    return (
        isinstance(error, BadRequest)
        and not isinstance(error, Conflict)
        and error.code in ("Request_ResourceNotFound", "Request_BadRequest", "BadRequest")
        and "exist" in error.message.lower()
    )


@dataclass
class ActivityCall:
    activity: str
    task: EventTask
    connector: Connector
    graph: GraphClient
    environ: Mapping[str, str]
    key_vault: Any = None
    request_ids: list[str] = field(default_factory=list)
    graph_calls: int = 0
    graph_seconds: float = 0.0  # time spent waiting for Graph (the benchmark subtracts it)
    last_retries: int = 0  # retries the client made for the last request (a re-sent DELETE, ...)
    _in_flight: int = 0
    _waiting_since: float = 0.0
    deadline: float = field(default_factory=lambda: time.monotonic() + CALL_DEADLINE_S)

    @property
    def graph_root(self) -> str:
        return self.connector.graph_root

    async def send(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        self.graph_calls += 1
        self._enter_graph()
        try:
            async with self.graph.context(deadline=self.deadline) as context:
                try:
                    response = await self.graph.send(
                        method,
                        path_or_url,
                        params=params,
                        headers=headers,
                        json_body=json_body,
                        content=content,
                    )
                finally:
                    self.last_retries = context.stats.retries
        except GraphError as error:
            if error.request_id:
                self.request_ids.append(error.request_id)
            log.info("graph %s %s failed: %s %s", method, loggable(path_or_url), error.status, error.code)
            raise
        finally:
            self._leave_graph()
        request_id = response.headers.get("request-id")
        if request_id:
            self.request_ids.append(request_id)
        log.debug("graph %s %s answered %s", method, loggable(path_or_url), response.status_code)
        return response

    def _enter_graph(self) -> None:
        # graph_seconds is wall time with at least one request in flight (concurrent requests count once)
        if self._in_flight == 0:
            self._waiting_since = time.perf_counter()
        self._in_flight += 1

    def _leave_graph(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self.graph_seconds += time.perf_counter() - self._waiting_since

    async def get_json(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.send("GET", path, **kwargs)
        data: dict[str, Any] = response.json()
        return data

    async def replicated(
        self, action: Callable[[], Awaitable[T]], *, not_found_window_s: float = NOT_FOUND_WINDOW_S
    ) -> T:
        """``action()``, repeated with backoff while Graph answers as if a just-created object did not exist:
        its replication 400 for up to ``REPLICATION_WINDOW_S``, a 404 for up to ``not_found_window_s``."""
        started = time.monotonic()
        wait = FIRST_REPLICATION_WAIT_S
        while True:
            try:
                return await action()
            except GraphError as error:
                if isinstance(error, NotFound):
                    window = not_found_window_s
                elif not_replicated_yet(error):
                    window = REPLICATION_WINDOW_S
                else:
                    raise
                if time.monotonic() + wait > started + window:
                    raise
                log.info(
                    "graph does not show a new object yet (%s); again in %.2fs",
                    error.code or error.status,
                    wait,
                )
                self.graph_seconds += wait  # waiting for Graph, not the activity's own work
                await asyncio.sleep(wait * random.uniform(0.8, 1.2))
                wait = min(wait * 2, 4.0)

    def directory_object_url(self, object_id: str) -> str:
        return f"{self.graph_root}/v1.0/directoryObjects/{object_id}"
