"""Telemetry: the dimensions reach the metrics, spans and log events, read back through the OpenTelemetry
SDK's in-memory exporters (set as the process's providers, where Application Insights' would be)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.logging.handler import (
    LoggingHandler,
)  # the handler configure_azure_monitor uses
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import logs, telemetry
from shared.settings import Settings


@dataclass
class Exported:
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    collected: Any = None

    def points(self, name: str) -> list[tuple[dict[str, Any], float]]:
        # Collected once per test (a delta reader hands each point out once).
        if self.collected is None:
            self.collected = self.reader.get_metrics_data()
        found = []
        data = self.collected
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            value = getattr(point, "value", None)
                            found.append((dict(point.attributes), value if value is not None else point.sum))
        return found

    def events(self, event: str) -> list[dict[str, Any]]:
        records = [item.log_record for item in self.logs.get_finished_logs()]
        return [dict(r.attributes) for r in records if r.attributes.get(telemetry.EVENT_ATTRIBUTE) == event]


_PROVIDERS: dict[str, Any] = {}


@pytest.fixture
def exported() -> Iterator[Exported]:
    # Global providers can be set once per process: the first test sets them, later ones reuse them.
    if not _PROVIDERS:
        # Delta temporality: each collection holds only what was recorded since the previous one.
        delta = AggregationTemporality.DELTA
        reader = InMemoryMetricReader(preferred_temporality={Counter: delta, Histogram: delta})
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tracer_provider)
        logs = InMemoryLogRecordExporter()
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
        _PROVIDERS.update(reader=reader, spans=spans, logs=logs, logger_provider=logger_provider)
    handler = LoggingHandler(logger_provider=_PROVIDERS["logger_provider"])
    logger = logging.getLogger(telemetry.__name__)  # what configure() exports (logger_name)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    _PROVIDERS["reader"].get_metrics_data()  # drop what earlier tests recorded
    _PROVIDERS["spans"].clear()
    _PROVIDERS["logs"].clear()
    try:
        yield Exported(_PROVIDERS["reader"], _PROVIDERS["spans"], _PROVIDERS["logs"])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@dataclass
class Counts:
    read: int = 0
    written: int = 0
    changed: int = 0
    removed: int = 0

    def model_dump(self) -> dict[str, int]:
        return {"read": self.read, "written": self.written, "changed": self.changed, "removed": self.removed}


@dataclass
class Run:
    task: str
    run_id: str
    trigger: str = "timer"
    status: str = "succeeded"
    mode: str | None = "incremental"
    started_at: datetime | None = None
    completed_at: datetime | None = None
    counts: dict[str, Counts] = field(default_factory=dict)
    requests: dict[str, Any] = field(default_factory=dict)


def test_telemetry_is_off_without_a_connection_string():
    assert telemetry.configure(Settings.from_environ({"ENVIRONMENT_TYPE": "test"})) is False
    assert telemetry.environment_type() == "test"


def test_a_finished_run_reports_its_metrics_and_event_with_the_dimensions(exported):
    telemetry.configure(Settings.from_environ({"ENVIRONMENT_TYPE": "prod"}))
    start = datetime(2026, 11, 30, 2, 30, tzinfo=UTC)
    run = Run(
        task="contoso-nightly",
        run_id="20261130T023000Z-abc123",
        started_at=start,
        completed_at=start + timedelta(seconds=42.5),
        counts={"users": Counts(read=10, written=9, changed=2), "groups": Counts(read=3, written=3)},
        requests={"http_calls": 17, "throttled": 4, "batch_steps": 20},
    )
    with telemetry.operation("run", task=run.task, run_id=run.run_id, connector="contoso") as span:
        telemetry.record_run(run, connector="contoso")
    assert span.get_span_context().is_valid

    expected = {"task": "contoso-nightly", "connector": "contoso", "environment_type": "prod"}
    [(attributes, duration)] = exported.points(telemetry.RUN_DURATION)
    assert attributes == {**expected, "status": "succeeded", "trigger": "timer", "mode": "incremental"}
    assert duration == pytest.approx(42.5)
    records = {(a["stream"], a["kind"]): v for a, v in exported.points(telemetry.RUN_RECORDS)}
    assert records == {
        ("users", "read"): 10,
        ("users", "written"): 9,
        ("users", "changed"): 2,
        ("groups", "read"): 3,
        ("groups", "written"): 3,
    }
    assert exported.points(telemetry.GRAPH_REQUESTS) == [(expected, 17)]
    assert exported.points(telemetry.GRAPH_THROTTLED) == [(expected, 4)]
    # No high-cardinality dimension on any metric.
    for name in telemetry.METRICS:
        for attributes, _ in exported.points(name):
            assert "run_id" not in attributes and "graph_request_id" not in attributes

    [event] = exported.events(telemetry.RUN_FINISHED)
    assert {key: event[key] for key in ("task", "run_id", "connector", "environment_type", "status")} == {
        "task": "contoso-nightly",
        "run_id": "20261130T023000Z-abc123",
        "connector": "contoso",
        "environment_type": "prod",
        "status": "succeeded",
    }
    assert (event["records_written"], event["graph_requests"], event["throttled"]) == (12, 17, 4)

    [finished] = exported.spans.get_finished_spans()
    assert finished.name == "run"
    assert dict(finished.attributes) == {
        "task": "contoso-nightly",
        "run_id": "20261130T023000Z-abc123",
        "connector": "contoso",
        "environment_type": "prod",
    }


def test_activity_calls_carry_the_activity_and_graph_request_id(exported):
    telemetry.configure(Settings.from_environ({"ENVIRONMENT_TYPE": "dev"}))
    with telemetry.dimensions(task="hr-events"):
        telemetry.record_activity("create-user", None, "completed", 0.25, graph_request_id="req-1")
        telemetry.record_activity("create-user", None, "failed", 0.5, graph_request_id="req-2")
    calls = sorted((a["outcome"], v) for a, v in exported.points(telemetry.ACTIVITY_CALLS))
    assert calls == [("completed", 1), ("failed", 1)]
    for attributes, _ in exported.points(telemetry.ACTIVITY_DURATION):
        assert attributes["activity"] == "create-user" and attributes["task"] == "hr-events"
    events = exported.events(telemetry.ACTIVITY_FINISHED)
    assert [(e["activity"], e["task"], e["graph_request_id"], e["outcome"]) for e in events] == [
        ("create-user", "hr-events", "req-1", "completed"),
        ("create-user", "hr-events", "req-2", "failed"),
    ]
    assert [e["environment_type"] for e in events] == ["dev", "dev"]


def test_deliveries_and_credential_expiry(exported):
    telemetry.configure(Settings.from_environ({"ENVIRONMENT_TYPE": "test"}))
    telemetry.record_delivery("contoso-nightly", "failed", records=120, duration_s=3.0, run_id="r1")
    now = datetime(2026, 11, 30, tzinfo=UTC)
    days = telemetry.record_credential_expiry(
        "contoso", "client_secret", "key-1", now + timedelta(days=12), now=now
    )
    assert days == pytest.approx(12)
    assert exported.points(telemetry.DELIVERIES) == [
        ({"task": "contoso-nightly", "environment_type": "test", "outcome": "failed"}, 1)
    ]
    [delivery] = exported.events(telemetry.DELIVERY_FINISHED)
    assert (delivery["run_id"], delivery["outcome"], delivery["records"]) == ("r1", "failed", 120)
    [expiry] = exported.events(telemetry.CREDENTIAL_EXPIRY)
    assert (expiry["connector"], expiry["credential_kind"], expiry["key_id"]) == (
        "contoso",
        "client_secret",
        "key-1",
    )
    assert expiry["days_remaining"] == pytest.approx(12)
    [(attributes, value)] = exported.points(telemetry.CREDENTIAL_DAYS_REMAINING)
    assert attributes["connector"] == "contoso" and value == pytest.approx(12)


def test_only_known_dimensions_and_fields_are_accepted():
    # A typo (or a value that does not belong, such as a user's name) fails loudly rather than being sent.
    with pytest.raises(ValueError, match="not a telemetry dimension: user"), telemetry.dimensions(user="zoe"):
        pass
    with pytest.raises(ValueError, match="not a telemetry event field: upn"):
        telemetry._event(telemetry.RUN_FINISHED, "x", upn="zoe@contoso.com")


def test_the_run_scoped_logging_fields_are_dimensions(exported):
    # What the runner and the activities set for their logs (shared.logs) is on the telemetry too.
    telemetry.configure(Settings.from_environ({"ENVIRONMENT_TYPE": "demo"}))
    token = logs.graph_request_id.set("req-9")
    try:
        with logs.scope(task="contoso-nightly", run="20261130T023000Z-abc123"):
            telemetry.record_delivery("contoso-nightly", "succeeded", records=3, duration_s=0.5)
    finally:
        logs.graph_request_id.reset(token)
    [event] = exported.events(telemetry.DELIVERY_FINISHED)
    assert (event["task"], event["run_id"], event["graph_request_id"], event["environment_type"]) == (
        "contoso-nightly",
        "20261130T023000Z-abc123",
        "req-9",
        "demo",
    )
    [(attributes, _)] = exported.points(telemetry.DELIVERIES)
    assert attributes == {"task": "contoso-nightly", "environment_type": "demo", "outcome": "succeeded"}
