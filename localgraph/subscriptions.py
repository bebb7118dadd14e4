"""Change notifications: ``/subscriptions`` and webhook delivery for users and groups
[docs/graph-behaviour.md section 12].

Subscriptions (Graph's rules, each from section 12):

- ``POST /subscriptions``: ``changeType`` (``updated``, ``deleted``; ``created`` is refused), ``notificationUrl``
  (https), ``resource`` (``users``, ``users/{id}``, ``groups``, ``groups/{id}``, ``groups/{id}/members``,
  ``groups/{id}/owners``, without a base URL), ``expirationDateTime`` (at most 41,760 minutes ahead; under 45
  minutes becomes 45), ``clientState`` (at most 128 characters), ``lifecycleNotificationUrl`` (https),
  ``latestSupportedTlsVersion``. Before answering 201 the server POSTs ``{url}?validationToken={token}`` to the
  notification URL (and the lifecycle URL) and requires 200, ``text/plain`` and the decoded token within 10 s,
  else 400 ``ValidationError``. The same ``changeType`` and ``resource`` as one of the app's subscriptions: 409.
  Quotas per resource type: 100 per app and tenant, 1,000 per tenant: 403.
- ``GET /subscriptions`` (the app's own; ``clientState`` is null), ``GET /subscriptions/{id}``,
  ``PATCH /subscriptions/{id}`` (``expirationDateTime``, ``notificationUrl``: 200; expired or deleted: 404),
  ``DELETE`` (204), ``POST /subscriptions/{id}/reauthorize`` (204).

Notifications come from the tenant's change log, the one place every change to a directory object is
recorded (the log delta queries read): whatever changes users or groups, Graph writes, the control API or the
tests, is seen. A background task on the server's loop reads the log every ``aggregation_ms``, turns each
change into a notification for every matching subscription (soft delete, restore, membership and manager
changes are ``updated``; a purge is ``deleted``; a membership change is an ``updated`` of the group), and POSTs
``{"value": [...]}`` per notification URL, at most ``max_items`` per POST.

Delivery follows the webhook rules: a 2xx within 3 s delivers; otherwise it is retried with exponential
backoff (10 s timeout) for up to 4 hours. Every answer's time is judged: more than 10% over 3 s in 10 minutes
makes the endpoint *slow* (new notifications wait 10 minutes), more than 15% over 10 s makes it *dropped*
(notifications are discarded for 10 minutes, and never announced: no ``missed`` lifecycle event exists for
directory resources). Those durations and thresholds are settings, so tests can shorten them.

The control API (``/_control/subscriptions``) lists subscriptions, deliveries and endpoint states, and
switches behaviours (``PATCH /_control/subscriptions/settings``): deliver late (``delay_s``), twice
(``duplicate``), out of order (``reorder``), not at all (``drop``); ``POST .../{id}/reauthorization-required``
sends a ``reauthorizationRequired`` lifecycle notification and pauses delivery until the app reauthorizes
or renews; ``POST .../{id}/expire`` and ``DELETE .../{id}`` make the subscription disappear (renewal: 404).

UNCONFIRMED choices (section 12 lists what no source settles): the validation POST has an empty body; a
PATCH of ``notificationUrl`` is validated again; the texts and codes of the 400s for ``created``, an expiry
beyond 41,760 minutes, ``includeResourceData`` and bad URLs; the 403 quota text; the 409 rule is applied per
app; ``clientState`` is null on GET by id too; ``/groups/{id}/members`` notifications name the group; Graph's
aggregation delay and items per POST (here 200 ms and 100); the first retry waits 10 s and doubles.
Test-only relaxation: ``allow_http_loopback`` (default off) accepts ``http://127.0.0.1``/``localhost``
notification URLs, for a Functions host run locally without TLS; Graph accepts https only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
import time
import uuid
import weakref
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from starlette.requests import Request
from starlette.routing import Route

from localgraph.context import ServerContext
from localgraph.control import guarded, json_body
from localgraph.errors import GraphError
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import Change

log = logging.getLogger(__name__)
router = Router()

MAX_MINUTES = 41_760  # users, groups, other directory resources [section 12]
MIN_MINUTES = 45  # "automatically set to 45 minutes after the request time"
MAX_CLIENT_STATE = 128
CHANGE_TYPES = ("updated", "deleted")  # users and groups [section 12]
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
QUOTA_PER_APP_AND_TENANT = 100
QUOTA_PER_TENANT = 1_000
VALIDATION_TIMEOUT_S = 10.0
RETRY_WINDOW_S = 4 * 3600.0
# The permission a subscription needs (User.Read.All, Group.Read.All) is checked by the request pipeline
# before the handler runs (localgraph.permissions.SUBSCRIBE).
_RESOURCE = re.compile(
    r"^/?(?P<collection>users|groups)(?:/(?P<id>[^/?#]+)(?:/(?P<nav>members|owners))?)?$", re.IGNORECASE
)
_ODATA_TYPE = {"user": "#Microsoft.Graph.User", "group": "#Microsoft.Graph.Group"}
_RESOURCE_PREFIX = {"user": "Users", "group": "Groups"}
# Change-log operations and the changeType they notify (every other op of a user or group is an update).
_DELETED_OPS = frozenset({"purged"})
_MEMBERSHIP_OPS = frozenset({"member_added", "member_removed"})
_UPDATABLE = frozenset({"expirationDateTime", "notificationUrl"})


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def invalid(message: str, code: str = "InvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def gone() -> GraphError:
    # UNCONFIRMED text; the status is documented: "404 ... expired or deleted: create a new one".
    return GraphError(404, "ResourceNotFound", "The object was not found.")


def validation_failed() -> GraphError:
    # Observed text [section 12, splunk/azure-functions-splunk#26].
    return GraphError(
        400,
        "ValidationError",
        "Subscription validation request failed. Notification endpoint must respond with 200 OK to "
        "validation request.",
    )


# ------------------------------------------------------------------------------------------- model


@dataclass
class Subscription:
    id: str
    app_id: str
    resource: str
    collection: str  # users | groups
    object_id: str | None
    navigation: str | None  # members | owners
    change_types: frozenset[str]
    change_type: str  # as given ("updated,deleted")
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: datetime
    tls_version: str
    from_seq: int  # changes after this one are notified
    reauthorization_required: bool = False
    held: list[dict[str, Any]] = field(default_factory=list)  # items waiting for reauthorization

    def expired(self, now: datetime | None = None) -> bool:
        return self.expiration <= (now or datetime.now(UTC))

    def as_json(self, *, with_client_state: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.app_id,
            "changeType": self.change_type,
            "clientState": self.client_state if with_client_state else None,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": _utc(self.expiration),
            "creatorId": self.app_id,
            "includeResourceData": None,
            "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }

    def matches(self, change: Change) -> str | None:
        """The changeType this change notifies on this subscription, or None."""
        if change.kind != self.collection[:-1] or change.seq <= self.from_seq:
            return None
        if self.object_id is not None and change.object_id != self.object_id:
            return None
        if self.navigation == "members" and change.op not in _MEMBERSHIP_OPS:
            return None
        if self.navigation == "owners":
            return None  # the tenant keeps no owner changes
        change_type = "deleted" if change.op in _DELETED_OPS else "updated"
        return change_type if change_type in self.change_types else None


@dataclass
class DeliverySettings:
    """How notifications are delivered; ``PATCH /_control/subscriptions/settings`` changes them."""

    aggregation_ms: float = 200.0  # changes gather this long before a POST (UNCONFIRMED)
    max_items: int = 100  # notifications per POST (UNCONFIRMED)
    delay_s: float = 0.0  # deliver late
    duplicate: bool = False  # deliver every POST twice
    reorder: bool = False  # deliver out of order
    drop: bool = False  # deliver nothing (and announce nothing)
    answer_within_s: float = 3.0  # a 2xx later than this is not a delivery, and counts as slow
    retry_timeout_s: float = 10.0  # timeout of every attempt; longer answers count toward "dropped"
    retry_first_s: float = 10.0  # first retry wait, doubling (UNCONFIRMED)
    retry_window_s: float = RETRY_WINDOW_S
    judge_window_s: float = 600.0  # answers judged over the last 10 minutes
    penalty_s: float = 600.0  # slow: delayed 10 minutes; dropped: discarded for 10 minutes
    slow_share: float = 0.10
    drop_share: float = 0.15
    allow_http_loopback: bool = False  # test-only relaxation, see the module docstring

    def update(self, changes: dict[str, Any]) -> None:
        known = asdict(self)
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ValueError(f"unknown delivery settings: {', '.join(unknown)}")
        checked = {}
        for name, value in changes.items():
            expected = type(known[name])
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                raise ValueError(f"delivery setting {name} must be {expected.__name__}")
            if expected in (int, float) and value < self._MINIMUM.get(name, 0):
                raise ValueError(f"delivery setting {name} must be at least {self._MINIMUM.get(name, 0)}")
            checked[name] = value
        for name, value in checked.items():
            setattr(self, name, value)

    _MINIMUM: ClassVar[dict[str, float]] = {"aggregation_ms": 1, "max_items": 1, "answer_within_s": 0.001,
                                            "retry_timeout_s": 0.001, "judge_window_s": 0.001}  # fmt: skip


@dataclass
class Delivery:
    """One POST attempt, for the control API's log."""

    at: float
    url: str  # without its query (the function key stays out of the log)
    kind: str  # notification | lifecycle | validation
    items: int
    attempt: int
    status: int | None  # None: no answer in time (or no connection)
    seconds: float
    delivered: bool


class Endpoint:
    """Graph's judgement of one notification endpoint from its answer times."""

    def __init__(self) -> None:
        self.answers: deque[tuple[float, float]] = deque()  # (time, seconds)
        self.slow_until = 0.0
        self.dropped_until = 0.0

    def judge(self, seconds: float, settings: DeliverySettings, now: float) -> None:
        self.answers.append((now, seconds))
        while self.answers and self.answers[0][0] < now - settings.judge_window_s:
            self.answers.popleft()
        total = len(self.answers)
        over_drop = sum(1 for _, s in self.answers if s >= settings.retry_timeout_s)  # a timeout counts
        over_slow = sum(1 for _, s in self.answers if s > settings.answer_within_s)
        if over_drop / total > settings.drop_share:
            self.dropped_until = now + settings.penalty_s
        elif over_slow / total > settings.slow_share:
            self.slow_until = now + settings.penalty_s

    def state(self, now: float) -> str:
        if self.dropped_until > now:
            return "dropped"
        if self.slow_until > now:
            return "slow"
        return "normal"


# ----------------------------------------------------------------------------------------- service


class SubscriptionService:
    """The server's subscriptions and their delivery (one per tenant, on the server's event loop)."""

    def __init__(self, ctx: ServerContext, ca_file: str | None = None) -> None:
        self.ctx = ctx
        self.settings = DeliverySettings()
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[Delivery] = []
        self.endpoints: dict[str, Endpoint] = {}
        self._ca_file = ca_file
        self._http: httpx.AsyncClient | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq = ctx.tenant.seq
        self._rng = random.Random(7)

    # ------------------------------------------------------------------------------------- store
    def live(self, app_id: str | None = None) -> list[Subscription]:
        now = datetime.now(UTC)
        for sub in [s for s in self.subscriptions.values() if s.expired(now)]:
            del self.subscriptions[sub.id]  # an expired subscription is gone: 404 from now on
        return [s for s in self.subscriptions.values() if app_id is None or s.app_id == app_id]

    def own(self, app_id: str, subscription_id: str) -> Subscription:
        for sub in self.live(app_id):
            if sub.id == subscription_id.lower():
                return sub
        raise gone()

    def check_admission(self, sub: Subscription) -> None:
        """409 for a duplicate, 403 beyond the quotas (checked before and after the handshake)."""
        live = self.live()
        for other in live:
            if (
                other.app_id == sub.app_id
                and other.change_types == sub.change_types
                and other.resource.strip("/").lower() == sub.resource.strip("/").lower()
            ):
                raise GraphError(
                    409,
                    "Conflict",
                    f"Subscription Id {other.id} already exists for the requested combination",
                )
        same_type = [s for s in live if s.collection == sub.collection]
        if sum(1 for s in same_type if s.app_id == sub.app_id) >= QUOTA_PER_APP_AND_TENANT:
            raise GraphError(
                403,
                "ExtensionError",
                f"Subscription quota reached: {QUOTA_PER_APP_AND_TENANT} subscriptions to {sub.collection} "
                "per application and tenant.",
            )
        if len(same_type) >= QUOTA_PER_TENANT:
            raise GraphError(
                403,
                "ExtensionError",
                f"Subscription quota reached: {QUOTA_PER_TENANT} subscriptions to {sub.collection} per tenant.",
            )

    # ------------------------------------------------------------------------------------- HTTP out
    def http(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            context = ssl.create_default_context()
            if self._ca_file:
                context.load_verify_locations(cafile=self._ca_file)
            self._http = httpx.AsyncClient(verify=context, timeout=self.settings.retry_timeout_s)
        return self._http

    async def validate_endpoint(self, url: str) -> None:
        """The handshake: 200, text/plain, the decoded token, within 10 s; else ValidationError."""
        token = (
            f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        )
        target = f"{url}{'&' if '?' in url else '?'}validationToken={quote(token, safe='')}"
        started = time.monotonic()
        status = None
        ok = False
        try:
            response = await self.http().post(
                target,
                content=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=VALIDATION_TIMEOUT_S,
            )
            status = response.status_code
            media = response.headers.get("content-type", "").split(";")[0].strip().lower()
            ok = status == 200 and media == "text/plain" and response.text == token
        except httpx.HTTPError as exc:
            log.info("validation of %s failed: %s", _safe(url), type(exc).__name__)
        seconds = time.monotonic() - started
        self.deliveries.append(Delivery(time.time(), _safe(url), "validation", 0, 1, status, seconds, ok))
        if not ok or seconds > VALIDATION_TIMEOUT_S:
            raise validation_failed()

    # ------------------------------------------------------------------------------------- delivery
    def start(self) -> None:
        """Start the delivery loop (on the server's loop; from the first subscription on)."""
        if self._pump is None or self._pump.done():
            self._seq = min((s.from_seq for s in self.subscriptions.values()), default=self.ctx.tenant.seq)
            self._pump = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.aggregation_ms / 1000)
            try:
                self.collect()
            except Exception:  # the loop must outlive a bug in one round
                log.exception("notification round failed")

    def collect(self) -> None:
        """Turn the changes since the last round into POSTs, per notification URL."""
        changes = self.ctx.tenant.changes_since(self._seq)
        if changes:
            self._seq = changes[-1].seq
        subs = [s for s in self.live() if changes or s.held]
        if not subs:
            return
        by_url: dict[str, list[dict[str, Any]]] = {}
        for sub in subs:
            items = []
            for change in changes:
                change_type = sub.matches(change)
                if change_type is not None:
                    items.append(self._item(sub, change, change_type))
            if sub.reauthorization_required:
                sub.held.extend(items)  # paused until the app reauthorizes or renews
                continue
            items = sub.held + items
            sub.held = []
            if items:
                by_url.setdefault(sub.notification_url, []).extend(items)
        for url, items in by_url.items():
            if self.settings.reorder:
                self._rng.shuffle(items)
            batches = [
                items[i : i + self.settings.max_items] for i in range(0, len(items), self.settings.max_items)
            ]
            for batch in batches:
                self.send(url, {"value": batch}, "notification", len(batch))

    def _item(self, sub: Subscription, change: Change, change_type: str) -> dict[str, Any]:
        resource = f"{_RESOURCE_PREFIX[change.kind]}/{change.object_id}"
        return {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _utc(sub.expiration),
            "changeType": change_type,
            "resource": resource,
            "resourceData": {
                "@odata.type": _ODATA_TYPE[change.kind],
                "@odata.id": resource,
                "id": change.object_id,
                "organizationId": self.ctx.tenant.tenant_id,
            },
            "clientState": sub.client_state,
            "tenantId": self.ctx.tenant.tenant_id,
        }

    def send(self, url: str, body: dict[str, Any], kind: str, items: int) -> None:
        if self.settings.drop and kind == "notification":
            return
        copies = 2 if self.settings.duplicate and kind == "notification" else 1
        for _ in range(copies):
            task = asyncio.get_running_loop().create_task(self._deliver(url, body, kind, items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, body: dict[str, Any], kind: str, items: int) -> None:
        settings = self.settings
        endpoint = self.endpoints.setdefault(_safe(url), Endpoint())
        now = time.monotonic()
        state = endpoint.state(now)
        if state == "dropped":
            return  # "Dropped notifications can't be recovered" [section 12]
        wait = settings.delay_s + (settings.penalty_s if state == "slow" else 0.0)
        if wait > 0:
            await asyncio.sleep(wait)
        first = time.monotonic()
        attempt = 0
        backoff = settings.retry_first_s
        while True:
            attempt += 1
            limit = settings.answer_within_s if attempt == 1 else settings.retry_timeout_s
            status, seconds = await self._post(url, body)
            delivered = status is not None and 200 <= status < 300 and seconds <= limit
            endpoint.judge(seconds, settings, time.monotonic())
            self.deliveries.append(
                Delivery(time.time(), _safe(url), kind, items, attempt, status, seconds, delivered)
            )
            if delivered or time.monotonic() + backoff - first > settings.retry_window_s:
                return
            await asyncio.sleep(backoff)
            backoff *= 2
            if endpoint.state(time.monotonic()) == "dropped":
                return

    async def _post(self, url: str, body: dict[str, Any]) -> tuple[int | None, float]:
        started = time.monotonic()
        try:
            response = await self.http().post(url, json=body, timeout=self.settings.retry_timeout_s)
            return response.status_code, time.monotonic() - started
        except httpx.TimeoutException:
            return None, max(time.monotonic() - started, self.settings.retry_timeout_s)
        except httpx.HTTPError:
            return None, time.monotonic() - started

    # ------------------------------------------------------------------------------------ lifecycle
    def reauthorization_required(self, sub: Subscription) -> None:
        """Send ``reauthorizationRequired`` and pause delivery until reauthorize or renewal."""
        if not sub.lifecycle_url:
            raise ValueError(f"subscription {sub.id} has no lifecycleNotificationUrl")
        sub.reauthorization_required = True
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _utc(sub.expiration),
            "tenantId": self.ctx.tenant.tenant_id,
            "clientState": sub.client_state,
            "lifecycleEvent": "reauthorizationRequired",
        }
        self.send(sub.lifecycle_url, {"value": [item]}, "lifecycle", 1)


_SERVICES: weakref.WeakKeyDictionary[Any, SubscriptionService] = weakref.WeakKeyDictionary()


def attach(ctx: ServerContext, ca_file: str | None = None) -> SubscriptionService:
    """Give a server its subscriptions (``ca_file``: trusted for notification endpoints, besides the system's)."""
    service_ = SubscriptionService(ctx, ca_file)
    _SERVICES[ctx.tenant] = service_
    return service_


def service(ctx: ServerContext) -> SubscriptionService:
    found = _SERVICES.get(ctx.tenant)
    return found if found is not None else attach(ctx)


def _safe(url: str) -> str:
    """A URL without its query (a Functions key travels there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


# -------------------------------------------------------------------------------------- validation


def _check_url(value: Any, name: str, settings: DeliverySettings) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(f"The '{name}' property is required and must be an absolute https URL.")
    parts = urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "localhost")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback and settings.allow_http_loopback):
        if parts.netloc:
            return value
    raise invalid(f"Invalid '{name}': '{_safe(value)}'. The URL must be an absolute https URL.")


def _expiration(value: Any) -> datetime:
    if not isinstance(value, str):
        raise invalid("The 'expirationDateTime' property is required.")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"Invalid 'expirationDateTime': '{value}'.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if moment <= now:
        raise invalid("Subscription expiration can only be 0-41760 minutes in the future.")
    if moment > now + timedelta(minutes=MAX_MINUTES):
        raise invalid(f"Subscription expiration can only be 0-{MAX_MINUTES} minutes in the future.")
    return max(moment, now + timedelta(minutes=MIN_MINUTES))


def _change_types(value: Any) -> frozenset[str]:
    if not isinstance(value, str) or not value.strip():
        raise invalid("The 'changeType' property is required.")
    names = [part.strip() for part in value.split(",")]
    for name in names:
        if name not in CHANGE_TYPES:
            raise invalid(f"Invalid 'changeType' attribute: '{name}'.")
    return frozenset(names)


def parse_new(ctx: ServerContext, req: GraphRequest, body: dict[str, Any]) -> Subscription:
    settings = service(ctx).settings
    if not isinstance(body, dict):
        raise invalid("The request body must be a subscription object.")
    resource = body.get("resource")
    match = _RESOURCE.match(resource) if isinstance(resource, str) else None
    if match is None:
        raise invalid(
            f"Invalid 'resource': '{resource}'. Supported: users, users/{{id}}, groups, groups/{{id}}, "
            "groups/{id}/members, groups/{id}/owners (without a base URL)."
        )
    collection = match.group("collection").lower()
    change_type = body.get("changeType")
    change_types = _change_types(change_type)
    notification_url = _check_url(body.get("notificationUrl"), "notificationUrl", settings)
    lifecycle = body.get("lifecycleNotificationUrl")
    lifecycle_url = None if lifecycle is None else _check_url(lifecycle, "lifecycleNotificationUrl", settings)
    expiration = _expiration(body.get("expirationDateTime"))
    client_state = body.get("clientState")
    if client_state is not None and (
        not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE
    ):
        raise invalid(
            f"The 'clientState' property must be a string of at most {MAX_CLIENT_STATE} characters."
        )
    tls = body.get("latestSupportedTlsVersion") or "v1_2"
    if tls not in TLS_VERSIONS:
        raise invalid(f"Invalid 'latestSupportedTlsVersion': '{tls}'.")
    if body.get("includeResourceData"):
        raise invalid("Rich notifications (includeResourceData) are not supported for this resource.")
    object_id = match.group("id")
    return Subscription(
        id=str(uuid.uuid4()),
        app_id=req.caller.client_id if req.caller else "",
        resource=resource,  # type: ignore[arg-type]
        collection=collection,
        object_id=object_id.lower() if object_id else None,
        navigation=(match.group("nav") or "").lower() or None,
        change_types=change_types,
        change_type=change_type,  # type: ignore[arg-type]
        notification_url=notification_url,
        lifecycle_url=lifecycle_url,
        client_state=client_state,
        expiration=expiration,
        tls_version=tls,
        from_seq=ctx.tenant.seq,
    )


# ----------------------------------------------------------------------------------------- handlers


class Pending(GraphResponse):
    """An answer that needs the handshake first: the server awaits :meth:`settle` before rendering."""

    def __init__(self, req: GraphRequest, work) -> None:
        super().__init__(202)
        self._req = req
        self._work = work

    async def settle(self) -> GraphResponse:
        try:
            return await self._work()
        except GraphError as error:
            return GraphResponse(
                error.status,
                error.body(self._req.request_id, self._req.header("client-request-id")),
                dict(error.headers),
                content_type="application/json",
            )


def _entity(req: GraphRequest, sub: Subscription, *, with_client_state: bool) -> dict[str, Any]:
    return {
        "@odata.context": f"{req.base_url}/$metadata#subscriptions/$entity",
        **sub.as_json(with_client_state=with_client_state),
    }


def _no_batch(req: GraphRequest) -> None:
    if req.in_batch:
        # UNCONFIRMED: whether Graph validates a subscription created inside $batch; the local Graph doesn't.
        raise invalid("Subscriptions cannot be created or renewed inside $batch on the local Graph.")


@router.route("POST", "/subscriptions")
def create_subscription(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    _no_batch(req)
    subs = service(ctx)
    sub = parse_new(ctx, req, req.json())
    subs.check_admission(sub)

    async def work() -> GraphResponse:
        await subs.validate_endpoint(sub.notification_url)
        if sub.lifecycle_url:
            await subs.validate_endpoint(sub.lifecycle_url)
        subs.check_admission(sub)  # another create may have won meanwhile
        sub.from_seq = ctx.tenant.seq
        subs.subscriptions[sub.id] = sub
        subs.start()
        return GraphResponse(201, _entity(req, sub, with_client_state=True))

    return Pending(req, work)


@router.route("GET", "/subscriptions")
def list_subscriptions(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    app_id = req.caller.client_id if req.caller else ""
    value = [s.as_json(with_client_state=False) for s in service(ctx).live(app_id)]
    return GraphResponse(200, {"@odata.context": f"{req.base_url}/$metadata#subscriptions", "value": value})


@router.route("GET", "/subscriptions/{id}")
def get_subscription(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    sub = service(ctx).own(req.caller.client_id if req.caller else "", id)
    return GraphResponse(200, _entity(req, sub, with_client_state=False))


@router.route("PATCH", "/subscriptions/{id}")
def update_subscription(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    _no_batch(req)
    subs = service(ctx)
    sub = subs.own(req.caller.client_id if req.caller else "", id)
    body = req.json()
    if not isinstance(body, dict) or not body:
        raise invalid("Specify expirationDateTime and/or notificationUrl.")
    extra = sorted(set(body) - _UPDATABLE)
    if extra:
        raise invalid(f"Only expirationDateTime and notificationUrl can be updated, not: {', '.join(extra)}.")
    expiration = _expiration(body["expirationDateTime"]) if "expirationDateTime" in body else None
    url = (
        _check_url(body["notificationUrl"], "notificationUrl", subs.settings)
        if "notificationUrl" in body
        else None
    )

    async def work() -> GraphResponse:
        if url is not None and url != sub.notification_url:
            await subs.validate_endpoint(url)
        current = subs.own(sub.app_id, sub.id)  # still there after the handshake
        if expiration is not None:
            current.expiration = expiration
        if url is not None:
            current.notification_url = url
        current.reauthorization_required = False  # a renewal also reauthorizes [section 12]
        return GraphResponse(200, _entity(req, current, with_client_state=True))

    return Pending(req, work)


@router.route("DELETE", "/subscriptions/{id}")
def delete_subscription(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    subs = service(ctx)
    sub = subs.own(req.caller.client_id if req.caller else "", id)
    del subs.subscriptions[sub.id]
    return GraphResponse(204)


@router.route("POST", "/subscriptions/{id}/reauthorize")
def reauthorize_subscription(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    sub = service(ctx).own(req.caller.client_id if req.caller else "", id)
    sub.reauthorization_required = False
    return GraphResponse(204)


# ------------------------------------------------------------------------------------- control API


def control_routes(ctx: ServerContext) -> list[Route]:
    """``/_control/subscriptions``: see the module docstring."""

    def find(subscription_id: str) -> Subscription:
        for sub in service(ctx).live():
            if sub.id == subscription_id.lower():
                return sub
        raise gone()

    async def listing(request: Request):
        subs = service(ctx)
        now = time.monotonic()
        return {
            "value": [
                {**s.as_json(with_client_state=False), "reauthorizationRequired": s.reauthorization_required}
                for s in subs.live()
            ],
            "endpoints": {url: e.state(now) for url, e in subs.endpoints.items()},
        }

    async def settings(request: Request):
        subs = service(ctx)
        if request.method == "PATCH":
            subs.settings.update(await json_body(request))
        return asdict(subs.settings)

    async def deliveries(request: Request):
        subs = service(ctx)
        if request.method == "DELETE":
            subs.deliveries.clear()
            return {"cleared": True}
        return {"value": [asdict(d) for d in subs.deliveries]}

    async def one(request: Request):
        sub = find(request.path_params["id"])
        if request.method == "DELETE":
            del service(ctx).subscriptions[sub.id]
            return {"removed": sub.id}
        return {
            **sub.as_json(with_client_state=False),
            "reauthorizationRequired": sub.reauthorization_required,
        }

    async def expire(request: Request):
        sub = find(request.path_params["id"])
        sub.expiration = datetime.now(UTC) - timedelta(seconds=1)
        service(ctx).live()
        return {"expired": sub.id}

    async def reauthorization(request: Request):
        sub = find(request.path_params["id"])
        service(ctx).reauthorization_required(sub)
        return {"reauthorizationRequired": sub.id}

    return [
        Route("/_control/subscriptions", guarded(listing), methods=["GET"]),
        Route("/_control/subscriptions/settings", guarded(settings), methods=["GET", "PATCH"]),
        Route("/_control/subscriptions/deliveries", guarded(deliveries), methods=["GET", "DELETE"]),
        Route("/_control/subscriptions/{id}", guarded(one), methods=["GET", "DELETE"]),
        Route("/_control/subscriptions/{id}/expire", guarded(expire), methods=["POST"]),
        Route(
            "/_control/subscriptions/{id}/reauthorization-required",
            guarded(reauthorization),
            methods=["POST"],
        ),
    ]
