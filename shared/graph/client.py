"""The Graph client: async httpx, one retry policy, one page loop, JSON batching. Bodies stay raw JSON.

- :meth:`GraphClient.send` is the only place a request leaves: it adds the token, applies the retry policy
  (:mod:`shared.graph.retry`), renews the token once on a 401, and turns failures into typed errors
  (:mod:`shared.graph.errors`).
- :meth:`GraphClient.pages` is the one page loop: it follows ``@odata.nextLink`` verbatim (the link already
  carries every query option), resends the caller's headers (``ConsistencyLevel``) on every page as Graph
  requires, keeps going through empty pages, stops at the last page or at a ``@odata.deltaLink``, and
  refuses a link it has already followed.
- :meth:`GraphClient.batch` sends up to 20 steps in one ``$batch``, correlates answers by id (Graph may
  reorder them), and retries throttled steps after the longest ``Retry-After`` among them.
- Only the connector's own Graph host is ever called: an absolute URL for another host is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from shared import jsoncodec
from shared.graph.auth import TokenProvider
from shared.graph.errors import (
    BadRequest,
    GraphError,
    NotFound,
    PagingError,
    ServiceUnavailable,
    Throttled,
    from_response,
    redact_url,
    translate,
)
from shared.graph.pacing import Pacer, version_path
from shared.logs import graph_request_id
from shared.retry import IDEMPOTENT, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

MAX_BATCH_STEPS = 20  # Graph's limit per $batch [docs/graph-behaviour.md section 4]
# A replaced client (Services.graph after a connector edit) stays open at least this long: a caller handed it
# just before the edit may not have opened its context yet.
RETIRE_GRACE_S = 60.0
API_VERSION = "v1.0"
QUERY_SAFE = "$'(),:/@*"  # left as is in query values, as Graph's own links do


@dataclass
class RequestStats:
    """What a client did: the run's history records it."""

    http_calls: int = 0
    batch_calls: int = 0
    batch_steps: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers, direct or inside batches
    waited_s: float = 0.0
    paced_requests: int = 0  # requests (and batch steps) under a service budget (Intune's)
    paced_s: float = 0.0  # time spent waiting for that budget instead of being throttled
    token_acquisitions: int = 0  # tokens this caller acquired (a 401's renewal, an expiry)
    by_status: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "http_calls": self.http_calls,
            "batch_calls": self.batch_calls,
            "batch_steps": self.batch_steps,
            "retries": self.retries,
            "throttled": self.throttled,
            "waited_s": round(self.waited_s, 3),
            "paced_requests": self.paced_requests,
            "paced_s": round(self.paced_s, 3),
            "token_acquisitions": self.token_acquisitions,
        }


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None
    count: int | None = None


@dataclass(frozen=True)
class BatchStep:
    id: str
    url: str  # relative to the version root: "/groups/{id}/members?$select=id"
    method: str = "GET"
    headers: Mapping[str, str] | None = None
    body: Any = None

    def as_json(self) -> dict[str, Any]:
        step: dict[str, Any] = {"id": self.id, "method": self.method, "url": self.url}
        headers = dict(self.headers or {})
        if self.body is not None:
            step["body"] = self.body
            headers.setdefault("Content-Type", "application/json")
        if headers:
            step["headers"] = headers
        return step


@dataclass(frozen=True)
class BatchResult:
    id: str
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def missing(self) -> bool:
        """The step's object does not exist (Graph said not found): a definite answer, not a failure."""
        return not self.ok and isinstance(self.error(), NotFound)

    def error(self, step: BatchStep | None = None) -> GraphError:
        body = self.body if isinstance(self.body, dict) else {}
        found = body.get("error")
        error: dict[str, Any] = found if isinstance(found, dict) else {}
        return translate(
            self.status,
            error,
            request_id=_header(self.headers, "request-id"),
            method=step.method if step else "",
            url=redact_url(step.url) if step else "",
        )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


class BearerAuth(httpx.Auth):
    """The connector's token on every request; after a 401, one new token and one more try.

    An ``httpx.Auth`` flow sees the response, so "renew once on 401" lives here and not in the retry loop
    (httpx/_auth.py). A second 401 is Graph's final word and reaches the caller as AuthenticationFailed.
    """

    def __init__(self, tokens: TokenProvider, acquired: Callable[[], None] | None = None) -> None:
        self.tokens = tokens
        self.acquired = acquired  # told when this request's caller acquired a token (its statistics)

    async def _token(self) -> str:
        token, acquired = await self.tokens.fetch()
        if acquired and self.acquired is not None:
            self.acquired()
        return token

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.tokens.invalidate(token)
            request.headers["Authorization"] = f"Bearer {await self._token()}"
            yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("the Graph client is async only")
        yield request  # pragma: no cover


@dataclass
class CallContext:
    """One caller's use of a shared client: its deadline and what its requests cost.

    Runs and activities share one client per connector; each opens its own context
    (``async with client.context(deadline=...) as call``), and every request made from that task (and the
    tasks it starts) counts there and stops retrying at that deadline.
    """

    deadline: float | None = None  # time.monotonic() value after which no retry wait starts
    stats: RequestStats = field(default_factory=RequestStats)

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()


_current_call: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("graph_call", default=None)


class GraphClient:
    """One per connector per process (``Services.graph``): a pooled HTTP client, safe to share between
    concurrent runs and activities, each of which opens its own :meth:`context`."""

    def __init__(
        self,
        graph_root: str,
        tokens: TokenProvider,
        *,
        verify: Any = True,
        policy: RetryPolicy | None = None,
        deadline: float | None = None,
        max_connections: int = 16,
        timeout_s: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        root = graph_root.rstrip("/")
        self.pacer = pacer or Pacer()  # Intune's budget by default (shared.graph.pacing)
        self.base_url = f"{root}/{API_VERSION}"
        self.host = urlsplit(root).netloc.lower()
        self.tokens = tokens
        self.policy = policy or RetryPolicy()
        self._default = CallContext(deadline)  # requests made outside any context()
        self._http = httpx.AsyncClient(
            auth=BearerAuth(tokens, self._on_token),
            verify=verify,
            timeout=httpx.Timeout(timeout_s, connect=30.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Accept": "application/json", "User-Agent": "entra-graph-connector/0.1"},
            transport=transport,
            http2=False,
            event_hooks={"request": [self._on_request], "response": [self._on_response]},
        )
        self._open_contexts = 0
        self._retired_until: float | None = None  # set by retire(): not closed before this monotonic time
        self._close_tokens = False
        self._closing: asyncio.Task[None] | None = None

    async def close(self) -> None:
        await self._http.aclose()
        if self._close_tokens:
            await self.tokens.close()

    def retire(self, *, grace_s: float | None = None, close_tokens: bool = False) -> None:
        """This client was replaced: close it (and, with ``close_tokens``, its token provider's credential)
        once nobody uses it: when its last open :meth:`context` exits, but not before ``grace_s``. Call on
        the loop the client belongs to."""
        if self._retired_until is not None or self.closed:
            return
        grace_s = RETIRE_GRACE_S if grace_s is None else grace_s
        self._retired_until = time.monotonic() + grace_s
        self._close_tokens = close_tokens
        asyncio.get_running_loop().call_later(grace_s, self._close_if_unused)

    def _close_if_unused(self) -> None:
        if self._open_contexts == 0 and self._closing is None and not self.closed:
            self._closing = asyncio.ensure_future(self.close())

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------- contexts
    @contextlib.asynccontextmanager
    async def context(self, *, deadline: float | None = None) -> AsyncIterator[CallContext]:
        """A call context for the requests made inside it (``deadline``: a ``time.monotonic()`` value)."""
        call = CallContext(deadline)
        token = _current_call.set(call)
        self._open_contexts += 1
        try:
            yield call
        finally:
            _current_call.reset(token)
            self._open_contexts -= 1
            retired = self._retired_until
            if retired is not None and self._open_contexts == 0 and time.monotonic() >= retired:
                self._close_if_unused()  # the last caller of a replaced client is done: close it now
                if self._closing is not None:
                    await self._closing

    @property
    def call(self) -> CallContext:
        """The current caller's context (the client's own outside any :meth:`context`)."""
        return _current_call.get() or self._default

    @property
    def stats(self) -> RequestStats:
        return self.call.stats

    @property
    def deadline(self) -> float | None:
        return self.call.deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self.call.deadline = value

    def _on_token(self) -> None:
        self.call.stats.token_acquisitions += 1

    async def _on_request(self, request: httpx.Request) -> None:
        self.call.stats.http_calls += 1

    async def _on_response(self, response: httpx.Response) -> None:
        by_status = self.call.stats.by_status
        by_status[response.status_code] = by_status.get(response.status_code, 0) + 1
        request_id = response.headers.get("request-id")
        if request_id:
            graph_request_id.set(request_id)

    # ------------------------------------------------------------------------------------------ URLs
    def url(self, path_or_url: str, params: Mapping[str, str] | None = None) -> str:
        """An absolute URL on the connector's Graph host. Relative paths are under ``/v1.0``."""
        parts = urlsplit(path_or_url)
        if parts.scheme or parts.netloc:
            if parts.scheme != "https" or parts.netloc.lower() != self.host:
                raise BadRequest(
                    f"refusing to call {parts.scheme}://{parts.netloc}: only the connector's Graph host "
                    f"{self.host} may be called",
                    code="ForeignHost",
                )
            url = path_or_url
        else:
            url = f"{self.base_url}/{path_or_url.lstrip('/')}"
        if params:
            separator = "&" if "?" in url else "?"
            url = f"{url}{separator}{urlencode(dict(params), quote_via=quote, safe=QUERY_SAFE)}"
        return url

    def relative(self, url: str) -> str:
        """A link from Graph as a batch step URL (relative to the version root)."""
        absolute = self.url(url)
        return absolute[len(self.base_url) :] if absolute.startswith(self.base_url) else absolute

    # ------------------------------------------------------------------------------------- requests
    async def _wait(self, seconds: float, error: GraphError) -> None:
        call = self.call
        if seconds > call.remaining():
            raise error
        call.stats.retries += 1
        call.stats.waited_s += seconds
        await asyncio.sleep(seconds)

    async def send(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        retry_as: str | None = None,
    ) -> httpx.Response:
        """``retry_as``: the method whose retry rules apply (a ``$batch`` of reads is retried like a GET)."""
        method = method.upper()
        rule_method = (retry_as or method).upper()
        url = self.url(path_or_url, params)
        attempt = 0
        while True:
            attempt += 1
            await self._pace([(method, version_path(url, self.base_url))])
            try:
                response = await self._http.request(
                    method, url, headers=headers, json=json_body, content=content
                )
            except httpx.TransportError as exc:
                decision = self.policy.decide_exception(rule_method, exc, attempt)
                error = ServiceUnavailable(
                    f"{type(exc).__name__}: {exc}", method=method, url=redact_url(url), action=decision.action
                )
                if decision.wait_s is None:
                    raise error from exc
                log.warning("graph transport error, retrying in %.1fs: %s", decision.wait_s, error)
                await self._wait(decision.wait_s, error)
                continue
            status = response.status_code
            if status < 400:
                return response
            if status == 429:
                self.call.stats.throttled += 1
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            decision = self.policy.decide_status(rule_method, status, attempt, retry_after)
            refused = from_response(response, decision.action)
            if decision.wait_s is None:
                raise refused
            log.info(
                "graph %s %s answered %s, retrying in %.1fs", method, redact_url(url), status, decision.wait_s
            )
            await self._wait(decision.wait_s, refused)

    async def _pace(self, requests: list[tuple[str, str]], *, batched: bool = False) -> None:
        """Wait for the service budgets these requests draw on (Intune's, and the directory's for batched
        fan-out): pacing, not 429s."""
        counted, waited = await self.pacer.before(requests, batched=batched)
        stats = self.call.stats
        stats.paced_requests += counted
        stats.paced_s += waited

    async def get_json(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        response = await self.send("GET", path_or_url, params=params, headers=headers)
        data: dict[str, Any] = jsoncodec.loads(response.content)
        return data

    # ------------------------------------------------------------------------------------ page loop
    async def pages(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        first: dict[str, Any] | None = None,
    ) -> AsyncIterator[Page]:
        """Every page of a collection or a delta round, following links verbatim.

        ``first`` is an already fetched first page (e.g. a ``$batch`` step's body); paging continues from
        its nextLink. The next page is requested as soon as a page's link is known, before the page is
        handed over: whatever the caller does with a page (a stop check, staging its block) overlaps the
        next round trip instead of adding to a chain of pages that can only be fetched one after another.
        """
        followed: set[str] = set()
        ahead: asyncio.Future[dict[str, Any]] | None = None
        if first is None:
            ahead = asyncio.ensure_future(self.get_json(self.url(path_or_url, params), headers=headers))
        data = first
        try:
            while True:
                if data is None:
                    assert ahead is not None
                    data, ahead = await ahead, None
                next_link = data.get("@odata.nextLink")
                delta_link = data.get("@odata.deltaLink")
                repeated = next_link in followed
                if next_link and not repeated:
                    followed.add(next_link)
                    ahead = asyncio.ensure_future(self.get_json(next_link, headers=headers))
                yield Page(list(data.get("value") or []), next_link, delta_link, data.get("@odata.count"))
                if not next_link:
                    return
                if repeated:
                    raise PagingError(
                        f"the service returned a link twice: {redact_url(next_link)}", code="PagingLoop"
                    )
                data = None
        finally:
            if ahead is not None:  # the caller stopped early: the page read ahead is not wanted
                ahead.cancel()
                ahead.add_done_callback(_retrieve)

    # -------------------------------------------------------------------------------------- batches
    async def batch(self, steps: Iterable[BatchStep]) -> dict[str, BatchResult]:
        """Run up to 20 steps in one ``$batch``; throttled (and, for idempotent steps, 503/504) steps are
        retried in a new batch after the longest ``Retry-After`` among them."""
        pending = list(steps)
        if len(pending) > MAX_BATCH_STEPS:
            raise ValueError(f"a batch holds at most {MAX_BATCH_STEPS} steps, got {len(pending)}")
        if len({s.id.lower() for s in pending}) != len(pending):
            raise ValueError("batch step ids must be unique")
        results: dict[str, BatchResult] = {}
        attempt = 0
        while pending:
            attempt += 1
            stats = self.call.stats
            stats.batch_calls += 1
            stats.batch_steps += len(pending)
            # The envelope is a POST, but re-sending it is safe when every step is idempotent: a 503 or
            # a dropped connection then costs a retry, not the run.
            reads_only = all(s.method.upper() in IDEMPOTENT for s in pending)
            await self._pace([(s.method, s.url) for s in pending], batched=True)
            response = await self.send(
                "POST",
                "/$batch",
                json_body={"requests": [s.as_json() for s in pending]},
                retry_as="GET" if reads_only else None,
            )
            answers = {str(a["id"]): a for a in jsoncodec.loads(response.content).get("responses", [])}
            retry: list[BatchStep] = []
            waits: list[float] = []
            for step in pending:
                answer = answers.get(step.id)
                if answer is None:
                    raise ServiceUnavailable(
                        f"$batch answered without step {step.id}", code="BatchIncomplete"
                    )
                body = answer.get("body")
                result = BatchResult(step.id, int(answer["status"]), answer.get("headers") or {}, body)
                results[step.id] = result
                if result.status == 429:
                    stats.throttled += 1
                if result.ok:
                    continue
                retry_after = parse_retry_after(_header(result.headers, "Retry-After"))
                decision = self.policy.decide_status(step.method, result.status, attempt, retry_after)
                if decision.wait_s is not None:
                    retry.append(step)
                    waits.append(decision.wait_s)
            if not retry:
                break
            first = results[retry[0].id]
            await self._wait(
                max(waits),
                Throttled(
                    f"{len(retry)} batch steps still throttled at the deadline",
                    status=first.status,
                    code="TooManyRequests",
                ),
            )
            pending = retry
        return results


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an abandoned read-ahead's outcome as seen (no "exception was never retrieved" warning)."""
    if not future.cancelled():
        future.exception()


def decode_body(result: BatchResult) -> Any:
    """A step's body as JSON (Graph sends JSON objects; some proxies send strings)."""
    if isinstance(result.body, str):
        try:
            return jsoncodec.loads(result.body)
        except ValueError:
            return result.body
    return result.body
