"""Delta queries: ``GET /users/delta``, ``/groups/delta`` (and devices, applications, servicePrincipals,
contacts by the same mechanism) [docs/graph-behaviour.md section 3].

A round starts without a token (initial sync: every live object) or with a deltaLink's ``$deltatoken``
(the changes since that token). The round's pages are chained by ``@odata.nextLink`` (``$skiptoken``)
and its last page carries the ``@odata.deltaLink``; a page has one of the two, never both. Tokens are
opaque and HMAC'd (:class:`~localgraph.context.TokenCodec`); they hold the ORIGINAL query options
(``$select``, the id ``$filter``, the legacy ``$expand=members``) and the round's position, so later
requests must not repeat the options.

Change tracking reads the tenant's change log. A round has a snapshot sequence number (``tenant.seq`` when
it starts) and reports the net effect of the changes in ``(start, snapshot]`` rendered with the objects'
current state; the deltaLink at its end carries the snapshot, so changes made while the client was paging
are replayed by the next round (Graph allows replays: "the same item can appear ... more than once").

Shapes:
- created or restored (and the initial sync): the selected properties that are set (never-set ones are
  omitted) plus ``id``; groups whose members are tracked carry every current member in ``members@delta``
  (none: no ``members@delta``); users with ``$select=manager`` carry ``manager@delta``.
- updated: only when a selected property changed (no ``$select``: any property), or tracked members or the
  tracked manager changed. Default: every selected property (a selected property cleared in the round is
  ``null``); with ``Prefer: return=minimal``: ``id`` and the changed selected properties only.
- soft-deleted: ``@removed: {"reason": "changed"}``; purged: ``{"reason": "deleted"}``.
- membership: the net change per member; a removed member (membership removed or member deleted) carries
  ``@removed: {"reason": "deleted"}``. A group with more entries than ``delta_member_slice`` appears on
  consecutive pages, each with the next slice; continuation appearances carry only ``id`` and
  ``members@delta``.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from localgraph import schema
from localgraph.context import ServerContext
from localgraph.errors import GraphError, bad_request, unsupported_query
from localgraph.query import DEFAULT_PROPERTIES, context_url, parse_select
from localgraph.reads import ODATA_JSON
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.tenant import COLLECTIONS, ODATA_TYPES, DirObject, Tenant
from shared import odata

router = Router()

MAX_FILTER_IDS = 50  # "Limit of 50 filtered objects" [docs/graph-behaviour.md section 3]
# Options that define the query: they travel inside the tokens and must not be repeated with one.
QUERY_OPTIONS = ("$select", "$filter", "$expand")
# Accepted and ignored: delta's page size is the server's [docs/graph-behaviour.md section 3, "$top ... not supported"].
IGNORED_OPTIONS = ("$top",)
_ACCEPTED_OPTIONS = frozenset({*QUERY_OPTIONS, *IGNORED_OPTIONS, "$skiptoken", "$deltatoken"})
DIRECTORY_OBJECT_TYPE = "#microsoft.graph.directoryObject"
_REMOVED_DELETED = {"reason": "deleted"}
_REMOVED_CHANGED = {"reason": "changed"}
_LIFECYCLE_OPS = frozenset({"created", "restored", "deleted"})


# ------------------------------------------------------------------------------------------- errors


def sync_state_not_found() -> GraphError:
    """Graph's code for an expired token [docs/graph-behaviour.md section 3, "Expiry and reset"]. The exact response for a
    garbled directory token is UNCONFIRMED; a 400 with this code is the documented "40X" choice."""
    return GraphError(
        400,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be synchronized "
        "again.",
    )


def resync_required(location: str) -> GraphError:
    """Synchronization reset: 410 Gone and a Location with the initial query [docs/graph-behaviour.md section 3]."""
    return GraphError(
        410,
        "resyncRequired",
        "The delta token is no longer valid, and the app must reset the sync state.",
        headers={"Location": location},
    )


# -------------------------------------------------------------------------------------------- query


@dataclass(frozen=True)
class DeltaQuery:
    """The original query of a delta round: what is tracked and how objects are rendered."""

    collection: str
    kind: str
    options: dict[str, str]  # the raw $select / $filter / $expand, as the first request sent them
    select: list[str] | None
    ids: frozenset[str] | None
    expand_members: bool

    @property
    def names(self) -> list[str]:
        """Properties to render (navigation properties are tracked separately and skipped here)."""
        if self.select is None or "*" in self.select:
            return list(DEFAULT_PROPERTIES.get(self.kind) or schema.structural_properties(self.kind).keys())
        return self.select

    @property
    def tracked_properties(self) -> set[str] | None:
        """Properties whose change makes an object appear; None: any property [docs/graph-behaviour.md section 3]."""
        if self.select is None or "*" in self.select:
            return None
        return set(self.select)

    @property
    def track_members(self) -> bool:
        # $select=members tracks membership; so does no $select, and the legacy $expand=members.
        return self.kind == "group" and (
            self.select is None or "*" in self.select or "members" in self.select or self.expand_members
        )

    @property
    def track_manager(self) -> bool:
        return self.kind == "user" and self.select is not None and "manager" in self.select

    def location(self, base_url: str) -> str:
        """The initial query's URL with an empty ``$deltatoken`` (the 410 reset's Location)."""
        items = [*self.options.items(), ("$deltatoken", "")]
        return f"{base_url}/{self.collection}/delta?{urlencode(items, quote_via=quote, safe='$,()/')}"


def parse_delta_query(collection: str, options: dict[str, str]) -> DeltaQuery:
    kind = COLLECTIONS[collection]
    select = parse_select(options.get("$select"), [kind], collection=True)
    ids = None
    if "$filter" in options:
        try:
            node = odata.parse_filter(options["$filter"])
        except odata.FilterError as exc:
            raise bad_request(str(exc)) from None
        values = odata.analyze(node).id_eq_values
        if values is None:
            # Exact text UNCONFIRMED; the rule (only `id eq` joined by `or`) is documented.
            raise unsupported_query(
                "Unsupported query: delta query supports $filter only on id, as id eq '{id}' clauses joined "
                "by 'or'."
            )
        ids = frozenset(value.lower() for value in values)
        if len(ids) > MAX_FILTER_IDS:
            raise unsupported_query(
                f"Unsupported query: the $filter names {len(ids)} objects; delta query accepts at most "
                f"{MAX_FILTER_IDS}."
            )
    expand_members = False
    if "$expand" in options:
        names = [item.split("(")[0].strip() for item in options["$expand"].split(",") if item.strip()]
        if kind != "group" or not names or any(name != "members" for name in names):
            raise unsupported_query("The $expand query option is not supported with delta query.")
        expand_members = True
    return DeltaQuery(collection, kind, dict(options), select, ids, expand_members)


def _check_options(query: dict[str, str]) -> None:
    for name in query:
        if not name.startswith("$") or name in _ACCEPTED_OPTIONS:
            continue
        if name == "$orderby":
            raise unsupported_query("The $orderby query option is not supported with delta query.")
        if name in ("$count", "$search"):
            raise unsupported_query(f"The {name} query option is not supported with delta query.")
        raise bad_request(f"Query option '{name}' is not allowed.", code="BadRequest")


# ------------------------------------------------------------------------------------------- tokens


def _issue(ctx: ServerContext, payload: dict[str, Any]) -> str:
    return ctx.tokens.encode({**payload, "g": ctx.delta_generation, "t": round(time.time(), 3)})


def _read_token(
    ctx: ServerContext, req: GraphRequest, collection: str, token: str, sort: str
) -> dict[str, Any]:
    """A token's payload; raise Graph's error when it is garbled, foreign, expired or invalidated."""
    payload = ctx.tokens.decode(token)
    if (
        not isinstance(payload, dict)
        or payload.get("k") != sort
        or payload.get("c") != collection
        or not isinstance(payload.get("o"), dict)
    ):
        raise sync_state_not_found()
    issued = float(payload.get("t", 0))
    expired = (
        payload.get("g") != ctx.delta_generation
        or time.time() - issued > ctx.settings.delta_token_max_age_s
        or issued < ctx.delta_invalid_before
    )
    if expired:
        if ctx.settings.delta_token_failure == "reset":
            query = parse_delta_query(collection, payload["o"])
            raise resync_required(query.location(req.base_url))
        raise sync_state_not_found()
    return payload


# ------------------------------------------------------------------------------------ change window


@dataclass
class _Trace:
    """What the change log says about one object over a round's window."""

    ops: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    members: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # member -> (last op, kind)
    manager_changed: bool = False
    manager_before: str | None = None  # the manager when the window opened


_WINDOWS: weakref.WeakKeyDictionary[Tenant, dict[tuple[str, int, int], dict[str, _Trace]]] = (
    weakref.WeakKeyDictionary()
)
_WINDOWS_KEPT = 16


def _window(tenant: Tenant, kind: str, start: int, end: int) -> dict[str, _Trace]:
    """Traces of the objects of ``kind`` changed in ``(start, end]``, in order of first change.

    The log is append-only, so a window's traces never change: they are cached for the round's pages.
    """
    cache = _WINDOWS.setdefault(tenant, {})
    key = (kind, start, end)
    traces = cache.get(key)
    if traces is not None:
        return traces
    traces = {}
    for change in tenant.changes_since(start):
        if change.seq > end:
            break
        if change.kind != kind:
            continue
        trace = traces.get(change.object_id)
        if trace is None:
            trace = traces[change.object_id] = _Trace()
        if change.op == "updated":
            trace.touched.update(change.props or ())
        elif change.op in ("member_added", "member_removed"):
            trace.members[change.other] = (change.op, change.other_kind)
        elif change.op == "manager":
            if not trace.manager_changed:
                trace.manager_changed = True
                trace.manager_before = change.previous
        else:
            trace.ops.add(change.op)
    if len(cache) >= _WINDOWS_KEPT:
        cache.pop(next(iter(cache)))
    cache[key] = traces
    return traces


# ---------------------------------------------------------------------------------------- rendering


def _ref(object_id: str, kind: str | None) -> dict[str, Any]:
    return {"@odata.type": ODATA_TYPES.get(kind or "", DIRECTORY_OBJECT_TYPE), "id": object_id}


def _live(tenant: Tenant, object_id: str | None) -> DirObject | None:
    obj = tenant.objects.get(object_id) if object_id else None
    return obj if obj is not None and obj.deleted is None else None


def _properties(obj: DirObject, names: list[str], cleared: set[str] | None = None) -> dict[str, Any]:
    """``id`` plus the named properties that are set; a name in ``cleared`` that is unset is ``null``
    (it was set before and the client must learn it is gone); never-set properties are omitted."""
    declared = schema.structural_properties(obj.kind)
    props = obj.view
    item: dict[str, Any] = {}
    for name in names:
        if name not in declared and not name.startswith("extension_"):
            continue  # navigation properties (members, manager) are rendered as @delta annotations
        value = props.get(name)
        if value is None:
            if cleared and name in cleared:
                item[name] = None
            continue
        if name == "onPremisesExtensionAttributes" and isinstance(value, dict):
            value = {f"extensionAttribute{n}": value.get(f"extensionAttribute{n}") for n in range(1, 16)}
        item[name] = value
    item.setdefault("id", obj.id)
    return item


def _current_members(tenant: Tenant, group_id: str) -> list[dict[str, Any]]:
    entries = []
    for member_id in tenant.members.get(group_id, {}):
        member = _live(tenant, member_id)
        if member is not None:
            entries.append(_ref(member.id, member.kind))
    return entries


def _manager_now(tenant: Tenant, user_id: str) -> DirObject | None:
    return tenant.objects.get(tenant.manager.get(user_id, ""))


class _Round:
    """Renders the objects of one round. ``render(id)`` gives ``(item, member entries)`` or ``(None, [])``
    when the object has nothing to report."""

    def __init__(self, ctx: ServerContext, query: DeltaQuery, state: dict[str, Any], minimal: bool) -> None:
        self.tenant = ctx.tenant
        self.query = query
        self.initial = state["r"] == "i"
        self.minimal = minimal and not self.initial
        self.traces = {} if self.initial else _window(ctx.tenant, query.kind, state["a"], state["e"])
        self.affected: list[str] = []
        if not self.initial:
            ids = query.ids
            self.affected = [oid for oid in self.traces if ids is None or oid in ids]

    def positions(self, after: int) -> Iterator[tuple[int, str]]:
        """``(position, object id)`` after a position: creation ordinals (initial) or window indexes."""
        tenant, kind = self.tenant, self.query.kind
        if not self.initial:
            for index in range(after + 1, len(self.affected)):
                yield index, self.affected[index]
        elif self.query.ids is None:
            for obj in tenant.live(kind, after):
                yield obj.ordinal, obj.id
        else:
            chosen = (tenant.objects.get(oid) for oid in self.query.ids)
            live = sorted((o for o in chosen if o is not None and o.kind == kind and o.deleted is None),
                          key=lambda o: o.ordinal)  # fmt: skip
            for obj in live:
                if obj.ordinal > after:
                    yield obj.ordinal, obj.id

    def render(self, object_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        if self.initial:
            obj = _live(self.tenant, object_id)
            return (None, []) if obj is None else self._full(obj, None)
        return self._changed(object_id, self.traces[object_id])

    def _full(self, obj: DirObject, trace: _Trace | None):
        """The whole selected representation; in a change round (``trace``) also the members removed in
        the window, since a client that still holds the group (deleted and restored within the window)
        merges rather than replaces."""
        query = self.query
        item = _properties(obj, query.names, trace.touched if trace else None)
        if query.track_manager:
            manager = _manager_now(self.tenant, obj.id)
            if manager is not None:
                item["manager@delta"] = [_ref(manager.id, manager.kind)]
        entries = []
        if query.track_members:
            entries = _current_members(self.tenant, obj.id)
            if trace is not None:
                entries += [e for e in self._member_changes(obj, trace) if "@removed" in e]
        return item, entries

    def _changed(self, object_id: str, trace: _Trace):
        tenant, query = self.tenant, self.query
        obj = tenant.objects.get(object_id)
        if obj is None:
            return {"id": object_id, "@removed": dict(_REMOVED_DELETED)}, []
        if obj.deleted is not None:
            return {"id": object_id, "@removed": dict(_REMOVED_CHANGED)}, []
        if trace.ops & _LIFECYCLE_OPS:
            # Created, restored (or deleted and restored since): a new object for the client.
            return self._full(obj, trace)
        tracked = query.tracked_properties
        changed = trace.touched if tracked is None else trace.touched & tracked
        entries = self._member_changes(obj, trace) if query.track_members else []
        manager = self._manager_change(obj, trace) if query.track_manager else None
        if not changed and not entries and manager is None:
            return None, []
        if self.minimal:
            names = [name for name in query.names if name in trace.touched]
            item = _properties(obj, names, trace.touched)
        else:
            item = _properties(obj, query.names, trace.touched)
        if manager is not None:
            item["manager@delta"] = manager
        return item, entries

    def _member_changes(self, group: DirObject, trace: _Trace) -> list[dict[str, Any]]:
        """Net membership change per member over the window; a change undone after the window's end
        is left to the next round (which replays it)."""
        current = self.tenant.members.get(group.id, {})
        entries = []
        for member_id, (op, kind) in trace.members.items():
            member = _live(self.tenant, member_id)
            is_member = member_id in current and member is not None
            if op == "member_added" and is_member:
                entries.append(_ref(member_id, member.kind))
            elif op == "member_removed" and not is_member:
                gone = self.tenant.objects.get(member_id)
                entries.append({**_ref(member_id, kind or (gone.kind if gone else None)),
                                "@removed": dict(_REMOVED_DELETED)})  # fmt: skip
        return entries

    def _manager_change(self, user: DirObject, trace: _Trace) -> list[dict[str, Any]] | None:
        # The shape of a removed manager is UNCONFIRMED; it follows members@delta's removal entries.
        if not trace.manager_changed:
            return None
        manager = _manager_now(self.tenant, user.id)
        now = manager.id if manager is not None else None
        if now == trace.manager_before:
            return None
        if manager is not None:
            return [_ref(manager.id, manager.kind)]
        before = self.tenant.objects.get(trace.manager_before or "")
        removed = _ref(trace.manager_before, before.kind if before else "user")
        return [{**removed, "@removed": dict(_REMOVED_DELETED)}]


# -------------------------------------------------------------------------------------------- pages


def _resume(entries: list[dict[str, Any]], offset: int, anchor: str | None) -> int:
    """Where the next slice of a split group starts: after the last entry sent. If the entries moved
    (membership changed between pages), find the anchor; if it is gone, start over (a replay)."""
    if 0 < offset <= len(entries) and entries[offset - 1]["id"] == anchor:
        return offset
    for index, entry in enumerate(entries):
        if entry["id"] == anchor:
            return index + 1
    return 0


def _page(ctx: ServerContext, req: GraphRequest, query: DeltaQuery, state: dict[str, Any]) -> GraphResponse:
    """One page of a round. ``state``: r (i: initial, c: changes), a (window start), e (snapshot seq),
    p (position of the last object sent), and for a group split across pages: pi (its id), po (member
    entries sent), pa (the last entry's id)."""
    settings = ctx.settings
    page_size = max(1, settings.delta_page_size)
    slice_size = max(1, settings.delta_member_slice)
    prefer = (req.header("Prefer") or "").split(",")
    minimal = any(part.strip().lower() == "return=minimal" for part in prefer)
    round_ = _Round(ctx, query, state, minimal)
    items: list[dict[str, Any]] = []
    position = state["p"]
    pending: tuple[str, int, str] | None = None

    if state.get("pi"):
        item, entries = round_.render(state["pi"])
        if item is not None and "@removed" not in item and entries:
            start = _resume(entries, state["po"], state.get("pa"))
            chunk = entries[start : start + slice_size]
            if chunk:
                items.append({"id": state["pi"], "members@delta": chunk})
                if start + len(chunk) < len(entries):
                    pending = (state["pi"], start + len(chunk), chunk[-1]["id"])

    last_sent = None
    if settings.delta_replays and state.get("pl") and not state.get("pi"):
        # Graph may send an object again anywhere in a round [docs/graph-behaviour.md section 3]: repeat the previous page's
        # last object, as it is now, so clients must treat entries as idempotent.
        item, entries = round_.render(state["pl"])
        if item is not None:
            if entries:
                item["members@delta"] = entries[:slice_size]
            items.append(item)

    more = pending is not None
    if pending is None:
        for pos, object_id in round_.positions(position):
            item, entries = round_.render(object_id)
            if item is None:
                continue
            if len(items) >= page_size:
                more = True  # this object opens the next page
                break
            position = pos
            last_sent = object_id
            if entries:
                item["members@delta"] = entries[:slice_size]
                if len(entries) > slice_size:
                    pending = (object_id, slice_size, entries[slice_size - 1]["id"])
                    more = True
            items.append(item)
            if pending is not None:
                break

    body: dict[str, Any] = {"@odata.context": context_url(req.base_url, query.collection, query.select)}
    if more:
        next_state = {"k": "dskip", "c": query.collection, "o": query.options, "r": state["r"],
                      "a": state.get("a"), "e": state["e"], "p": position}  # fmt: skip
        if pending is not None:
            next_state.update(pi=pending[0], po=pending[1], pa=pending[2])
        if last_sent is not None:
            next_state["pl"] = last_sent
        token = _issue(ctx, next_state)
        body["@odata.nextLink"] = f"{req.base_url}/{query.collection}/delta?$skiptoken={token}"
    else:
        body["@odata.deltaLink"] = _delta_link(ctx, req, query, state["e"])
    body["value"] = items
    headers = {"Preference-Applied": "return=minimal"} if round_.minimal else {}
    return GraphResponse(200, body, headers, content_type=ODATA_JSON)


def _delta_link(ctx: ServerContext, req: GraphRequest, query: DeltaQuery, seq: int) -> str:
    token = _issue(ctx, {"k": "delta", "c": query.collection, "o": query.options, "s": seq})
    return f"{req.base_url}/{query.collection}/delta?$deltatoken={token}"


# ------------------------------------------------------------------------------------------- routes


def delta(ctx: ServerContext, req: GraphRequest, collection: str) -> GraphResponse:
    query_options = req.query
    _check_options(query_options)
    skip_token = query_options.get("$skiptoken")
    delta_token = query_options.get("$deltatoken")
    if skip_token is not None and delta_token is not None:
        raise bad_request("A delta query takes either $skiptoken or $deltatoken, not both.")
    latest = delta_token is not None and delta_token.lower() == "latest"
    token_name = "$skiptoken" if skip_token is not None else "$deltatoken"
    if skip_token is not None or (delta_token and not latest):
        repeated = [name for name in QUERY_OPTIONS if name in query_options]
        if repeated:
            # The token encodes the original query [docs/graph-behaviour.md section 3]: "Delta queries with both $select
            # and $skiptoken aren't supported."
            raise bad_request(
                f"Delta queries with both {repeated[0]} and {token_name} aren't supported. The token encodes "
                "the original query parameters; do not repeat them."
            )
    tenant = ctx.tenant
    if skip_token is not None:
        payload = _read_token(ctx, req, collection, skip_token, "dskip")
        query = parse_delta_query(collection, payload["o"])
        return _page(ctx, req, query, payload)
    if delta_token and not latest:
        payload = _read_token(ctx, req, collection, delta_token, "delta")
        query = parse_delta_query(collection, payload["o"])
        return _page(ctx, req, query, {"r": "c", "a": payload["s"], "e": tenant.seq, "p": -1})
    options = {name: query_options[name] for name in QUERY_OPTIONS if name in query_options}
    query = parse_delta_query(collection, options)
    if latest:
        # "Sync from now": a deltaLink at the current state and no resource data.
        body = {
            "@odata.context": context_url(req.base_url, collection, query.select),
            "@odata.deltaLink": _delta_link(ctx, req, query, tenant.seq),
            "value": [],
        }
        return GraphResponse(200, body, content_type=ODATA_JSON)
    return _page(ctx, req, query, {"r": "i", "a": None, "e": tenant.seq, "p": -1})


def _register(collection: str) -> None:
    @router.route("GET", f"/{collection}/delta")
    def collection_delta(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
        return delta(ctx, req, collection)


for _collection in COLLECTIONS:
    _register(_collection)
