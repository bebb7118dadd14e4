"""The activities API, host-agnostic: bytes and headers in, status, headers and bytes out.

``functions/activities.py`` adapts each Functions HTTP trigger to :meth:`ActivityApi.handle`; the tests, the
benchmark and the fuzzing adapter call the same method. One call: find the activity, parse and validate the
body (every invalid field named), honour ``Idempotency-Key``, load the event task and its connector, run the
activity on the connector's pooled Graph client, map the outcome to a response or an RFC 9457 problem,
count the call per event task and activity, and log one line (task, activity, status, Graph request ids,
durations; never passwords, tokens or photo bytes). ``Server-Timing`` reports the call's total time and the
part spent waiting for Graph.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from shared import logs
from shared.activities import task_runs
from shared.activities.calls import ActivityCall
from shared.activities.catalog import BY_NAME, Activity
from shared.activities.contract import Problem, RunTaskRequest
from shared.activities.idempotency import (
    KEY_MAX_LENGTH,
    AnswerTooLarge,
    IdempotencyStore,
    StoredAnswer,
    body_digest,
)
from shared.activities.problems import ActivityError, from_graph_error, from_validation_error, invalid
from shared.activities.usage import FLUSH_SECONDS, UsageStore
from shared.config import Config, ConfigError
from shared.config.event_tasks import EventTask
from shared.graph.errors import GraphError
from shared.secrets import SecretError
from shared.storage import threads

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)

CONFIG_CACHE_SECONDS = 15.0  # the stored configuration is read again after this long
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
MAX_BODY_BYTES = 6 * 1024 * 1024
# Problems after which an Idempotency-Key is released rather than kept: nothing was done.
NOT_FINAL = frozenset({"invalid-request", "too-large", "configuration-invalid", "unknown-activity"})
# A write Graph may or may not have done (no natural key to look it up by) is kept too: a repeat with the key
# gets the same answer instead of sending the write again. (A create looked up and not found, a 503, is not.)
UNKNOWN_OUTCOME = (502, "outcome-unknown")


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _answer(status: int, model: BaseModel, headers: Mapping[str, str] | None = None) -> HttpAnswer:
    content_type = PROBLEM_JSON if isinstance(model, Problem) else JSON
    body = model.model_dump_json(exclude_none=isinstance(model, Problem)).encode()
    return HttpAnswer(status, body, {"Content-Type": content_type, **(headers or {})})


class ActivityApi:
    def __init__(
        self,
        services: Services,
        *,
        config_ttl_s: float = CONFIG_CACHE_SECONDS,
        usage_flush_s: float = FLUSH_SECONDS,
    ) -> None:
        self.services = services
        self.config_ttl_s = config_ttl_s
        self.usage_flush_s = usage_flush_s
        self._config: tuple[float, Config] | None = None
        self._config_lock = asyncio.Lock()
        self._tables_ready = False
        self._idempotency_table = services.settings.idempotency_table  # ACTIVITY_IDEMPOTENCY_TABLE
        self._usage_table = services.settings.usage_table  # ACTIVITY_USAGE_TABLE
        self._usage: UsageStore | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._flush_now = asyncio.Event()
        self._flushed_at = time.monotonic() - usage_flush_s  # the first call's count is written at once

    # ------------------------------------------------------------------------------------- stores
    def _ensure_tables(self) -> None:
        if not self._tables_ready:
            tables = self.services.storage.tables
            tables.create_table_if_not_exists(self._idempotency_table)
            tables.create_table_if_not_exists(self._usage_table)
            self._tables_ready = True

    async def idempotency(self) -> IdempotencyStore:
        await threads.call(self._ensure_tables)
        return IdempotencyStore(self.services.storage.tables.get_table_client(self._idempotency_table))

    async def usage(self) -> UsageStore:
        """The process's usage counters (one store: it holds the counts not yet written)."""
        if self._usage is None:
            await threads.call(self._ensure_tables)
            self._usage = UsageStore(self.services.storage.tables.get_table_client(self._usage_table))
        return self._usage

    async def flush_usage(self) -> None:
        """Write the counted calls now (the tests and an orderly shutdown call it)."""
        if self._flushing is not None and not self._flushing.done():
            self._flush_now.set()
            await asyncio.shield(self._flushing)
        await (await self.usage()).flush()

    async def config(self) -> Config:
        async with self._config_lock:
            now = time.monotonic()
            if self._config is None or now - self._config[0] > self.config_ttl_s:
                self._config = (now, await self.services.config_store.load())
            return self._config[1]

    # ------------------------------------------------------------------------------------- calls
    async def handle(self, name: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """One call; log records made meanwhile carry the activity and the task (:mod:`shared.logs`)."""
        activity_token = logs.activity.set(name)
        task_token = logs.task_name.set(None)
        try:
            return await self._handle(name, body, headers)
        finally:
            logs.task_name.reset(task_token)
            logs.activity.reset(activity_token)

    async def _handle(self, name: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        started = time.perf_counter()
        activity = BY_NAME.get(name)
        if activity is None:
            error = ActivityError(404, "unknown-activity", f"there is no activity {name}")
            return _answer(404, error.problem(activity=name, task=None))
        task_name: str | None = None
        calls: list[ActivityCall] = []
        key = _header(headers, "Idempotency-Key")
        digest = body_digest(body) if key is not None else ""
        store: IdempotencyStore | None = None
        reserved = False
        try:
            request = self._parse(activity, body)
            task_name = getattr(request, "task", None)
            logs.task_name.set(task_name)
            if key is not None:
                _check_key(key)
                store = await self.idempotency()
                reservation = await store.reserve(activity.name, key, digest)
                if reservation.replay is not None:
                    stored = reservation.replay
                    log.info(
                        "activity %s task %s: replayed the first answer (%s) for its Idempotency-Key",
                        activity.name,
                        task_name,
                        stored.status,
                    )
                    return HttpAnswer(
                        stored.status, stored.body, {**stored.headers, "Idempotent-Replayed": "true"}
                    )
                if reservation.conflict is not None:
                    status, reason = reservation.conflict
                    raise ActivityError(
                        status, "idempotency-key-reused" if status == 422 else "idempotency-key-busy", reason
                    )
                reserved = True
            answer = await self._run(activity, request, calls)
        except ActivityError as error:
            answer = _answer(
                error.status, error.problem(activity=activity.name, task=task_name), error.headers()
            )
        except GraphError as error:  # an activity that let one through: still Graph's answer, classified
            failure = from_graph_error(error)
            answer = _answer(
                failure.status, failure.problem(activity=activity.name, task=task_name), failure.headers()
            )
        except Exception:
            log.exception("activity %s task %s failed unexpectedly", activity.name, task_name)
            internal = ActivityError(500, "internal-error", "the connector failed unexpectedly; see its logs")
            answer = _answer(500, internal.problem(activity=activity.name, task=task_name))
        if reserved and store is not None and key is not None:
            await self._settle(store, activity, key, digest, answer)
        total = time.perf_counter() - started
        call = calls[0] if calls else None
        graph_s = call.graph_seconds if call else 0.0
        timing = f"total;dur={total * 1000:.2f}, graph;dur={graph_s * 1000:.2f}"
        answer = HttpAnswer(answer.status, answer.body, {**answer.headers, "Server-Timing": timing})
        if call is not None or (task_name and answer.status != 400):
            await self._count(task_name, activity.name, answer.status)
        log.info(
            "activity %s task %s answered %s in %.1f ms (graph %.1f ms, %d calls) request-ids %s",
            activity.name,
            task_name,
            answer.status,
            total * 1000,
            graph_s * 1000,
            call.graph_calls if call else 0,
            ",".join(call.request_ids) if call else "",
        )
        return answer

    def _parse(self, activity: Activity, body: bytes) -> BaseModel:
        if len(body) > MAX_BODY_BYTES:
            raise ActivityError(413, "too-large", f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(body) if body else None
        except ValueError as exc:
            raise invalid([("(body)", f"not JSON: {exc}")]) from None
        if not isinstance(data, dict):
            raise invalid([("(body)", "must be a JSON object")])
        try:
            return activity.request.model_validate(data)
        except ValidationError as exc:
            raise from_validation_error(exc) from None

    async def _run(self, activity: Activity, request: BaseModel, calls: list[ActivityCall]) -> HttpAnswer:
        """Run the activity; the call made is appended to ``calls`` (its figures count when it fails too)."""
        config = await self._load_config()
        if activity.run is None:  # tasks.run
            assert isinstance(request, RunTaskRequest)
            status, body = await task_runs.start(self.services, config, request)
            headers = {"Location": body.poll, "Retry-After": "5"} if body.poll else {}
            return _answer(status, body, headers)
        call = self._call(activity, config, getattr(request, "task"))  # noqa: B009
        calls.append(call)
        try:
            result = await activity.run(call, request)
        except SecretError as exc:
            raise ActivityError(
                502, "secret-unavailable", f"a secret of the connector cannot be read: {exc}"
            ) from None
        return _answer(activity.success_status, result)

    async def _load_config(self) -> Config:
        try:
            return await self.config()
        except ConfigError as exc:
            raise ActivityError(
                503, "configuration-invalid", f"the stored configuration is invalid: {exc}", retry_after_s=30
            ) from None

    def _call(self, activity: Activity, config: Config, task_name: str) -> ActivityCall:
        try:
            task = config.task_of(EventTask, task_name)
        except KeyError:
            kinds = {t.name: getattr(t, "usage", "scheduled") for t in config.tasks}
            message = (
                f"{task_name} is a {kinds[task_name]} task, not an event task"
                if task_name in kinds
                else f"no event task named {task_name}"
            )
            raise invalid([("task", message)]) from None
        if not task.enabled:
            raise invalid([("task", f"event task {task_name} is disabled")])
        connector = config.connector(task.connector)
        services = self.services
        key_vault = (
            services.key_vault
            if task.password and task.password.default_password and task.password.default_password.key_vault
            else None
        )
        return ActivityCall(
            activity=activity.name,
            task=task,
            connector=connector,
            graph=services.graph(connector),
            environ=services.environ,
            key_vault=key_vault,
        )

    async def _settle(
        self, store: IdempotencyStore, activity: Activity, key: str, digest: str, answer: HttpAnswer
    ) -> None:
        """Keep final outcomes; release the key when nothing was done or the caller should try again."""
        kind = _problem_kind(answer) if answer.status >= 400 else ""
        try:
            if (answer.status < 500 and kind not in NOT_FINAL) or (answer.status, kind) == UNKNOWN_OUTCOME:
                headers = {k: v for k, v in answer.headers.items() if k.lower() != "server-timing"}
                try:
                    await store.complete(
                        activity.name, key, digest, StoredAnswer(answer.status, answer.body, headers)
                    )
                except AnswerTooLarge as exc:
                    log.warning(
                        "the answer of %s is not kept for its Idempotency-Key: %s", activity.name, exc
                    )
                    await store.release(activity.name, key)
            else:
                await store.release(activity.name, key)
        except Exception:
            log.exception("could not store the outcome for an Idempotency-Key of %s", activity.name)

    async def _count(self, task: str | None, activity: str, status: int) -> None:
        """Count the call in memory; a background task writes the counts at most every ``usage_flush_s``,
        and always within ``usage_flush_s`` of the call, whether or not more calls come."""
        if not task:
            return
        store = await self.usage()
        store.note(task, activity, status)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_in_background(store))

    async def _flush_in_background(self, store: UsageStore) -> None:
        """Write what is counted, ``usage_flush_s`` after the previous write at the earliest, until nothing is
        left (calls counted during a write are written by the next round)."""
        try:
            while store.pending:
                wait = self._flushed_at + self.usage_flush_s - time.monotonic()
                if wait > 0 and not self._flush_now.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._flush_now.wait(), timeout=wait)
                self._flush_now.clear()
                self._flushed_at = time.monotonic()
                await store.flush()
        except Exception:
            log.exception("could not write the activities' usage counters")

    async def run_status(self, task: str, run_id: str) -> HttpAnswer:
        try:
            if not _safe_name(task) or not _safe_name(run_id):
                raise invalid([("task" if not _safe_name(task) else "run_id", "not a valid name")])
            status, body = await task_runs.status(self.services, await self._load_config(), task, run_id)
            headers = {"Retry-After": "5"} if status == 202 else {}
            return _answer(status, body, headers)
        except ActivityError as error:
            return _answer(
                error.status, error.problem(activity=task_runs.ACTIVITY, task=task), error.headers()
            )


def _problem_kind(answer: HttpAnswer) -> str:
    try:
        return str(json.loads(answer.body).get("type", "")).rsplit(":", 1)[-1]
    except ValueError:
        return ""


def _check_key(key: str) -> None:
    if not key or len(key) > KEY_MAX_LENGTH or not all(0x20 < ord(ch) < 0x7F for ch in key):
        raise invalid([("Idempotency-Key", f"must be 1-{KEY_MAX_LENGTH} printable ASCII characters")])


def _safe_name(text: str) -> bool:
    return 0 < len(text) <= 100 and all(ch.isalnum() or ch in "-_" for ch in text)


_APIS: dict[int, tuple[Services, ActivityApi]] = {}


def activity_api(services: Services) -> ActivityApi:
    """The process's API object for ``services`` (its config cache and stores live as long as the process)."""
    cached = _APIS.get(id(services))
    if cached is None or cached[0] is not services:
        cached = (services, ActivityApi(services))
        _APIS[id(services)] = cached
    return cached[1]
