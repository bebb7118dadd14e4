"""The upkeep timer's work: make Graph's subscriptions match what the tasks watch.

Each round (``SUBSCRIPTIONS_SCHEDULE``, every 10 minutes by default) compares, per connector and resource,
the tasks that opt in to change notifications with the subscriptions kept in the state table, and:

- **creates** a missing subscription (``changeType`` ``updated,deleted``, the public notification URL as both
  notification and lifecycle URL, a new random ``clientState``, ``SUBSCRIPTION_LIFETIME_MINUTES`` ahead);
  on a 409 (one left from an earlier life whose row was lost) the leftover is deleted and the creation
  repeated, if it calls this app's endpoint (another deployment's is left alone and reported);
- **reauthorizes** one Graph asked to (``POST /subscriptions/{id}/reauthorize``), and **renews** one past
  half its lifetime or created for another URL (``PATCH`` ``expirationDateTime``, which also reauthorizes;
  never both within 10 minutes, as Graph asks);
- **re-creates** one Graph answers 404 for (expired or removed);
- **deletes** one no task watches any more (a task that stopped watching, was disabled or deleted).

Graph facts and sources: docs/graph-behaviour.md section 12.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError

from shared.config import Config, Connector, ScheduledTask
from shared.graph.client import GraphClient
from shared.graph.errors import Conflict, GraphError, NotFound
from shared.notifications.address import NoPublicHost, fingerprint, notification_url, redacted
from shared.notifications.store import SubscriptionRecord, SubscriptionStore, row_key
from shared.services import Services

log = logging.getLogger(__name__)
CHANGE_TYPE = "updated,deleted"  # users and groups support these two [section 12]
CALL_BUDGET_S = 60.0
REAUTHORIZE_QUIET = timedelta(minutes=10)  # not reauthorize and PATCH within 10 minutes [section 12]


@dataclass
class UpkeepReport:
    created: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)
    reauthorized: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{name} {len(keys)}" for name, keys in vars(self).items() if keys]
        return ", ".join(parts) or "nothing to do"


def watched_resources(task: ScheduledTask) -> tuple[str, ...]:
    """What a task reads, as subscription resources: users, and groups when it reads groups or depends on
    group membership (memberOf mappings, users scoped by group)."""
    resources = []
    if task.users is not None:
        resources.append("users")
    users = task.users
    membership = users is not None and (
        bool(users.include_members_of or users.exclude_members_of)
        or any(m.external == "memberOf" for m in users.mappings)
    )
    if task.groups is not None or membership:
        resources.append("groups")
    return tuple(resources)


def wanted_subscriptions(config: Config) -> dict[str, tuple[str, str, dict[str, int]]]:
    """row key -> (connector, resource, {task: min interval}) for every task that opts in."""
    wanted: dict[str, tuple[str, str, dict[str, int]]] = {}
    for task in config.tasks:
        notifications = getattr(task, "change_notifications", None)
        if (
            not isinstance(task, ScheduledTask)
            or not task.enabled
            or not notifications
            or not notifications.enabled
        ):
            continue
        for resource in watched_resources(task):
            key = row_key(task.connector, resource)
            wanted.setdefault(key, (task.connector, resource, {}))[2][task.name] = (
                notifications.min_interval_seconds
            )
    return wanted


def _moment(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


class Upkeep:
    def __init__(self, services: Services, config: Config, store: SubscriptionStore, now: datetime) -> None:
        self.services = services
        self.config = config
        self.store = store
        self.now = now
        self.settings = services.settings
        self.lifetime = timedelta(minutes=services.settings.subscription_lifetime_min)

    def _expiry(self) -> str:
        moment = datetime.now(UTC) + self.lifetime
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def graph(self, connector_name: str) -> GraphClient:
        connector: Connector = self.config.connector(connector_name)
        return self.services.graph(connector)

    async def create(self, record: SubscriptionRecord, url: str) -> None:
        client = self.graph(record.connector)
        record.client_state = secrets.token_urlsafe(48)  # 64 characters of the 128 Graph allows
        body = {
            "changeType": CHANGE_TYPE,
            "notificationUrl": url,
            "lifecycleNotificationUrl": url,
            "resource": record.resource,
            "expirationDateTime": self._expiry(),
            "clientState": record.client_state,
        }
        async with client.context(deadline=time.monotonic() + CALL_BUDGET_S):
            try:
                response = await client.send("POST", "subscriptions", json_body=body)
            except Conflict:
                await self._delete_leftover(client, record, url)
                response = await client.send("POST", "subscriptions", json_body=body)
        created = response.json()
        log.info("created the %s subscription of %s for %s", record.resource, record.connector, redacted(url))
        record.subscription_id = created["id"]
        record.expires_at = _moment(created["expirationDateTime"])
        record.url_fingerprint = fingerprint(url)
        record.reauthorize_requested_at = None
        record.renewed_at = record.reauthorized_at = None
        record.last_error = None
        await self.store.put(record)

    async def _delete_leftover(self, client: GraphClient, record: SubscriptionRecord, url: str) -> None:
        """A subscription of this app for the same resource and change types whose row (and secret) was lost:
        delete it if it calls this app's endpoint; one calling another endpoint (another deployment sharing
        the app registration) is left alone, and the creation fails with Graph's 409."""
        async for page in client.pages("subscriptions"):
            for item in page.items:
                same_types = set(str(item.get("changeType", "")).split(",")) == set(CHANGE_TYPE.split(","))
                if not same_types or str(item.get("resource", "")).strip("/").lower() != record.resource:
                    continue
                if redacted(str(item.get("notificationUrl", ""))) != redacted(url):
                    raise Conflict(
                        f"another endpoint ({redacted(str(item.get('notificationUrl', '')))}) holds this app's "
                        f"{record.resource} subscription; Graph allows one per app, resource and change type",
                        status=409,
                        code="SubscriptionHeldElsewhere",
                    )
                log.info("deleting a leftover %s subscription of %s", record.resource, record.connector)
                try:
                    await client.send("DELETE", f"subscriptions/{item['id']}")
                except NotFound:
                    pass

    async def renew(self, record: SubscriptionRecord, url: str) -> None:
        client = self.graph(record.connector)
        body: dict[str, str] = {"expirationDateTime": self._expiry()}
        if record.url_fingerprint != fingerprint(url):
            body["notificationUrl"] = url
        async with client.context(deadline=time.monotonic() + CALL_BUDGET_S):
            response = await client.send("PATCH", f"subscriptions/{record.subscription_id}", json_body=body)
        record.expires_at = _moment(response.json()["expirationDateTime"])
        record.url_fingerprint = fingerprint(url)
        record.reauthorize_requested_at = None  # a renewal reauthorizes too
        record.renewed_at = datetime.now(UTC)
        record.last_error = None
        await self.store.put(record)

    def due(self, record: SubscriptionRecord, url: str) -> bool:
        if record.expires_at is None or record.url_fingerprint != fingerprint(url):
            return True
        return record.expires_at - self.now < self.lifetime / 2

    async def keep(self, record: SubscriptionRecord, url: str, report: UpkeepReport) -> None:
        key = record.key
        if record.subscription_id is None:
            await self.create(record, url)
            report.created.append(key)
            return
        try:
            if self.due(record, url) and not within_quiet(record.reauthorized_at, self.now):
                await self.renew(record, url)  # reauthorizes too
                report.renewed.append(key)
            elif record.reauthorize_requested_at is not None and not within_quiet(
                record.renewed_at, self.now
            ):
                await reauthorize(self.services, self.store, record, self.config)
                report.reauthorized.append(key)
        except NotFound:
            log.info(
                "the %s subscription of %s is gone (404): creating it again",
                record.resource,
                record.connector,
            )
            await self.create(record, url)
            report.recreated.append(key)

    async def remove(self, record: SubscriptionRecord, report: UpkeepReport) -> None:
        if record.subscription_id is not None and record.connector in {
            c.name for c in self.config.connectors
        }:
            client = self.graph(record.connector)
            async with client.context(deadline=time.monotonic() + CALL_BUDGET_S):
                try:
                    await client.send("DELETE", f"subscriptions/{record.subscription_id}")
                except NotFound:
                    pass
        await self.store.delete(record)
        report.deleted.append(record.key)


async def upkeep(services: Services, now: datetime | None = None) -> UpkeepReport:
    """One round: create, renew, reauthorize, re-create and delete subscriptions as the tasks want."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    report = UpkeepReport()
    config = await services.config_store.load()
    store = SubscriptionStore(services.state.table)
    records = await store.list()
    wanted = wanted_subscriptions(config)
    work = Upkeep(services, config, store, now)
    for key, record in records.items():
        if key not in wanted:
            await _guarded(report, key, work.remove(record, report))
    if not wanted:
        return report
    try:
        url = notification_url(services.settings, services.environ)
    except NoPublicHost as exc:
        for key in wanted:
            report.failed[key] = str(exc)
        log.error("%s", exc)
        return report
    for key, (connector, resource, tasks) in sorted(wanted.items()):
        record = records.get(key) or SubscriptionRecord(
            connector=connector, resource=resource, client_state=""
        )
        if record.tasks != tasks:
            record.tasks = tasks
            await store.put(record)
        await _guarded(report, key, work.keep(record, url, report), store, record)
    return report


def within_quiet(moment: datetime | None, now: datetime) -> bool:
    return moment is not None and now - moment < REAUTHORIZE_QUIET


async def _guarded(
    report: UpkeepReport,
    key: str,
    work: Coroutine[Any, Any, None],
    store: SubscriptionStore | None = None,
    record: SubscriptionRecord | None = None,
) -> None:
    """One subscription's work; a failure is reported and kept on its row, the others go on."""
    try:
        await work
    except (GraphError, AzureError, OSError, ValueError, KeyError) as exc:  # storage, identity, Graph
        report.failed[key] = f"{type(exc).__name__}: {exc}"
        log.warning("subscription upkeep of %s failed: %s", key, report.failed[key])
        if store is not None and record is not None:
            record.last_error = report.failed[key][:1000]
            await store.put(record)


async def reauthorize(
    services: Services, store: SubscriptionStore, record: SubscriptionRecord, config: Config | None = None
) -> None:
    """``POST /subscriptions/{id}/reauthorize`` (204); a 404 raises NotFound (the caller re-creates)."""
    config = config or await services.config_store.load()
    client = services.graph(config.connector(record.connector))
    deadline = time.monotonic() + CALL_BUDGET_S
    async with client.context(deadline=deadline):
        await client.send("POST", f"subscriptions/{record.subscription_id}/reauthorize")
    record.reauthorize_requested_at = None
    record.reauthorized_at = datetime.now(UTC)
    record.last_error = None
    await store.put(record)
