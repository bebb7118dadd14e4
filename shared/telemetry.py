"""Telemetry: OpenTelemetry metrics, spans and log events, exported to Application Insights.

:func:`configure` turns the export on once per process, and only when ``APPLICATIONINSIGHTS_CONNECTION_STRING``
is set (in Azure; never in tests or local runs). Until then the OpenTelemetry API's no-op providers make every
call here cheap. The runner, the activities and the monitoring timer call the ``record_*`` functions; the
names they emit, which the alert rules and the workbook in ``infra/`` query, are listed in ``docs/telemetry.md``
and in :data:`METRICS` / :data:`EVENTS`.

Dimensions: task, run id, activity, connector, environment type and Graph request id (:data:`DIMENSIONS`),
set for a block of work with :func:`operation` (a span) or :func:`dimensions`. Metrics carry only the
low-cardinality ones (no run id or request id); the events carry all. Nothing here takes a secret, a record,
a user's name or a URL: only names from the configuration, ids, counts, durations and outcomes.

Only the events of this module's logger are exported by OpenTelemetry (``logger_name``), and once export is
on they stop there; the app's other logs reach Application Insights through the Functions host, as before,
so nothing is sent twice. The run-scoped fields of :mod:`shared.logs` are dimensions here too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import cache
from types import MappingProxyType
from typing import Any, Protocol

from opentelemetry import metrics, trace

from shared import logs
from shared.settings import Settings

log = logging.getLogger(__name__)

INSTRUMENTATION = "entra-graph-connector"

# ------------------------------------------------------------------------------------------------ names

DIMENSIONS = ("task", "run_id", "activity", "connector", "environment_type", "graph_request_id")
METRIC_DIMENSIONS = ("task", "activity", "connector", "environment_type")  # low cardinality only

EVENT_ATTRIBUTE = "connector.event"  # customDimensions["connector.event"] in Application Insights traces
RUN_FINISHED = "run.finished"
DELIVERY_FINISHED = "delivery.finished"
ACTIVITY_FINISHED = "activity.finished"
CREDENTIAL_EXPIRY = "credential.expiry"
EVENTS = (RUN_FINISHED, DELIVERY_FINISHED, ACTIVITY_FINISHED, CREDENTIAL_EXPIRY)
# Fields the events carry besides the dimensions.
EVENT_FIELDS = (
    "status",
    "trigger",
    "mode",
    "duration_s",
    "records_written",
    "graph_requests",
    "throttled",
    "outcome",
    "records",
    "duration_ms",
    "credential_kind",
    "key_id",
    "expires_on",
    "days_remaining",
    "stream",
    "kind",
)

RUN_DURATION = "connector.run.duration"
RUN_RECORDS = "connector.run.records"
GRAPH_REQUESTS = "connector.graph.requests"
GRAPH_THROTTLED = "connector.graph.throttled"
DELIVERIES = "connector.deliveries"
ACTIVITY_CALLS = "connector.activity.calls"
ACTIVITY_DURATION = "connector.activity.duration"
CREDENTIAL_DAYS_REMAINING = "connector.credential.days_remaining"
# name -> (kind, unit, description)
METRICS = {
    RUN_DURATION: ("histogram", "s", "Duration of a finished run (status, trigger, mode)"),
    RUN_RECORDS: (
        "counter",
        "{record}",
        "Records of a finished run (stream; kind read/written/changed/removed)",
    ),
    GRAPH_REQUESTS: ("counter", "{request}", "Graph HTTP calls a finished run made"),
    GRAPH_THROTTLED: (
        "counter",
        "{answer}",
        "Graph 429 answers a finished run received, direct or in $batch",
    ),
    DELIVERIES: ("counter", "{delivery}", "Deliveries of a run's changes to the platform (outcome)"),
    ACTIVITY_CALLS: ("counter", "{call}", "Activity calls (outcome)"),
    ACTIVITY_DURATION: ("histogram", "ms", "Duration of an activity call (outcome)"),
    CREDENTIAL_DAYS_REMAINING: ("histogram", "d", "Days until a Graph credential expires (credential_kind)"),
}

# ------------------------------------------------------------------------------------------- dimensions

_dimensions: ContextVar[Mapping[str, str]] = ContextVar("telemetry_dimensions", default=MappingProxyType({}))
_environment_type: str | None = None
_configured = False
_lock = threading.Lock()


def _clean(values: Mapping[str, Any]) -> dict[str, str]:
    unknown = set(values) - set(DIMENSIONS)
    if unknown:
        raise ValueError(f"not a telemetry dimension: {', '.join(sorted(unknown))}")
    return {name: str(value) for name, value in values.items() if value is not None and value != ""}


def environment_type() -> str:
    """The instance's environment type (ENVIRONMENT_TYPE); ``dev`` when the settings cannot be read."""
    if _environment_type is None:
        from shared.settings import SettingsError, settings

        try:
            return settings().environment_type
        except SettingsError:
            return "dev"
    return _environment_type


def current_dimensions() -> dict[str, str]:
    """The dimensions in force here: the environment type, the run-scoped logging fields (``shared.logs``:
    task, run id, activity, Graph request id, as the runner and the activities set them), then those set
    with :func:`dimensions` or :func:`operation`."""
    scoped = {
        "task": logs.task_name.get(),
        "run_id": logs.run_id.get(),
        "activity": logs.activity.get(),
        "graph_request_id": logs.graph_request_id.get(),
    }
    return {
        "environment_type": environment_type(),
        **{name: value for name, value in scoped.items() if value},
        **_dimensions.get(),
    }


@contextmanager
def dimensions(**values: Any) -> Iterator[dict[str, str]]:
    """Set dimensions (task=, run_id=, activity=, connector=, graph_request_id=) for the block; nested blocks
    add to and override the outer ones."""
    merged = {**_dimensions.get(), **_clean(values)}
    token = _dimensions.set(merged)
    try:
        yield current_dimensions()
    finally:
        _dimensions.reset(token)


@contextmanager
def operation(name: str, **values: Any) -> Iterator[trace.Span]:
    """A span named ``name`` (``run``, ``activity``, ``credential-check``) with the dimensions as attributes,
    which are also in force for everything recorded inside it."""
    with dimensions(**values) as attributes:
        with _tracer().start_as_current_span(name, attributes=attributes) as span:
            yield span


# --------------------------------------------------------------------------------------- configuration


def configure(settings: Settings) -> bool:
    """Export telemetry to Application Insights, once per process, if the connection string is set.

    Ingestion authenticates with Microsoft Entra ID (the app's managed identity, ``AZURE_CLIENT_ID``), as the
    Application Insights resource has local (key) authentication off. Returns whether export is on.
    """
    global _environment_type, _configured
    with _lock:
        _environment_type = settings.environment_type
        if _configured or not settings.appinsights_connection_string:
            return _configured
        from azure.identity import ManagedIdentityCredential
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(
            connection_string=settings.appinsights_connection_string,
            credential=ManagedIdentityCredential(client_id=settings.azure_client_id),
            logger_name=__name__,
            enable_live_metrics=False,
            # No automatic HTTP or SDK spans: their URLs could carry $filter values (names, mail addresses).
            instrumentation_options={
                name: {"enabled": False}
                for name in (
                    "azure_sdk",
                    "django",
                    "fastapi",
                    "flask",
                    "psycopg2",
                    "requests",
                    "urllib",
                    "urllib3",
                )
            },
        )
        log.setLevel(logging.INFO)
        # The events go to Application Insights through OpenTelemetry only: not also up to the root logger,
        # whose handler (the Functions worker's) forwards records to the host and so to Application Insights.
        log.propagate = False
        _configured = True
        return True


@cache
def _instruments() -> dict[str, Any]:
    # The API's meter follows the global provider, including one set after this runs.
    meter = metrics.get_meter(INSTRUMENTATION)
    made: dict[str, Any] = {}
    for name, (kind, unit, description) in METRICS.items():
        factory = meter.create_histogram if kind == "histogram" else meter.create_counter
        made[name] = factory(name, unit=unit, description=description)
    return made


def _tracer() -> trace.Tracer:
    return trace.get_tracer(INSTRUMENTATION)


def _metric(name: str, value: float, **extra: Any) -> None:
    dims = current_dimensions()
    attributes = {key: dims[key] for key in METRIC_DIMENSIONS if key in dims}
    attributes.update({key: str(value) for key, value in extra.items() if value is not None})
    instrument = _instruments()[name]
    if METRICS[name][0] == "histogram":
        instrument.record(value, attributes=attributes)
    else:
        instrument.add(value, attributes=attributes)


def _event(event: str, message: str, *args: Any, level: int = logging.INFO, **fields: Any) -> None:
    unknown = set(fields) - set(EVENT_FIELDS)
    if unknown:
        raise ValueError(f"not a telemetry event field: {', '.join(sorted(unknown))}")
    extra = {EVENT_ATTRIBUTE: event, **current_dimensions()}
    extra.update({key: value for key, value in fields.items() if value is not None})
    log.log(level, message, *args, extra=extra)


# ------------------------------------------------------------------------------------------ recording


class _Counts(Protocol):
    def model_dump(self) -> dict[str, Any]: ...


class RunLike(Protocol):
    """What :func:`record_run` reads of a run's history record (read-only)."""

    @property
    def task(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def trigger(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def mode(self) -> str | None: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def completed_at(self) -> datetime | None: ...
    @property
    def counts(self) -> Mapping[str, _Counts]: ...
    @property
    def requests(self) -> Mapping[str, Any]: ...


def record_run(record: RunLike, *, connector: str | None = None) -> None:
    """A finished run (succeeded, failed, skipped, held): its duration, records, Graph requests and throttled
    answers as metrics, and a ``run.finished`` event. Call once per run, where its history row is final."""
    with dimensions(task=record.task, run_id=record.run_id, connector=connector):
        started, completed = record.started_at, record.completed_at or datetime.now(UTC)
        duration = (completed - started).total_seconds() if started else 0.0
        _metric(RUN_DURATION, duration, status=record.status, trigger=record.trigger, mode=record.mode)
        written = 0
        for stream, counts in record.counts.items():
            for kind, value in counts.model_dump().items():
                if isinstance(value, int) and value:
                    _metric(RUN_RECORDS, value, stream=stream, kind=kind)
            written += int(counts.model_dump().get("written", 0) or 0)
        http_calls = int(record.requests.get("http_calls", 0) or 0)
        throttled = int(record.requests.get("throttled", 0) or 0)
        if http_calls:
            _metric(GRAPH_REQUESTS, http_calls)
        if throttled:
            _metric(GRAPH_THROTTLED, throttled)
        _event(
            RUN_FINISHED,
            "run %s of %s %s",
            record.run_id,
            record.task,
            record.status,
            level=logging.WARNING if record.status in ("failed", "held") else logging.INFO,
            status=record.status,
            trigger=record.trigger,
            mode=record.mode,
            duration_s=round(duration, 3),
            records_written=written,
            graph_requests=http_calls,
            throttled=throttled,
        )


def record_delivery(
    task: str,
    outcome: str,
    *,
    records: int,
    duration_s: float,
    run_id: str | None = None,
    connector: str | None = None,
) -> None:
    """A delivery of a run's changes to the platform's web API (outcome ``succeeded`` or ``failed``)."""
    with dimensions(task=task, run_id=run_id, connector=connector):
        _metric(DELIVERIES, 1, outcome=outcome)
        _event(
            DELIVERY_FINISHED,
            "delivery of %s %s",
            task,
            outcome,
            level=logging.WARNING if outcome == "failed" else logging.INFO,
            outcome=outcome,
            records=records,
            duration_s=round(duration_s, 3),
        )


def record_activity(
    name: str,
    task: str | None,
    outcome: str,
    duration_s: float,
    *,
    connector: str | None = None,
    graph_request_id: str | None = None,
) -> None:
    """One activity call (``outcome``: ``completed`` or ``failed``), with the Graph request id of its last call."""
    with dimensions(activity=name, task=task, connector=connector, graph_request_id=graph_request_id):
        _metric(ACTIVITY_CALLS, 1, outcome=outcome)
        _metric(ACTIVITY_DURATION, duration_s * 1000, outcome=outcome)
        _event(
            ACTIVITY_FINISHED,
            "activity %s %s",
            name,
            outcome,
            level=logging.WARNING if outcome == "failed" else logging.INFO,
            outcome=outcome,
            duration_ms=round(duration_s * 1000, 1),
        )


def record_credential_expiry(
    connector: str, credential_kind: str, key_id: str, expires_on: datetime, *, now: datetime | None = None
) -> float:
    """A Graph credential's expiry (a certificate's notAfter, a client secret's endDateTime); ``key_id`` is the
    certificate thumbprint or the secret's keyId, never the secret. Returns the days remaining."""
    days = (expires_on - (now or datetime.now(UTC))).total_seconds() / 86400
    with dimensions(connector=connector):
        _metric(CREDENTIAL_DAYS_REMAINING, days, credential_kind=credential_kind)
        _event(
            CREDENTIAL_EXPIRY,
            "%s credential %s of connector %s expires in %.1f days",
            credential_kind,
            key_id,
            connector,
            days,
            level=logging.WARNING if days <= 30 else logging.INFO,
            credential_kind=credential_kind,
            key_id=key_id,
            expires_on=expires_on.isoformat(),
            days_remaining=round(days, 2),
        )
    return days
