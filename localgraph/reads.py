"""Directory reads: collections, single objects, relationships, ``$count`` (Intune: :mod:`localgraph.intune`).

Paging follows Graph: ``$top`` 1..999 (default 100), an absolute ``@odata.nextLink`` that keeps every
original query option plus an opaque ``$skiptoken``, ``@odata.count`` on the first page only. A filtered
page scans a bounded slice of the directory, so a selective filter can give pages with fewer items than
``$top``, even empty ones, that still carry a nextLink: clients must follow links, not count items.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

from localgraph import schema
from localgraph.context import ServerContext, expired_page_token
from localgraph.errors import GraphError, bad_request, not_found
from localgraph.query import (
    ListQuery,
    context_url,
    parse_expand,
    parse_list_query,
    parse_select,
    project,
    sort_key,
)
from localgraph.routing import GraphRequest, GraphResponse, Router, is_cast
from localgraph.tenant import COLLECTIONS, KIND_TO_COLLECTION, DirObject

router = Router()
ODATA_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)


def next_link(req: GraphRequest, token: str) -> str:
    """The request's own URL with every original query option plus ``$skiptoken``."""
    items = [(k, v) for k, v in req.query.items() if k != "$skiptoken"]
    items.append(("$skiptoken", token))
    encoded = urlencode(items, quote_via=quote, safe="$'(),:/@*")
    return f"{req.base_url}{req.path}?{encoded}"


def collection_response(ctx, req, entity_set, items, query: ListQuery, link: str | None, total: int | None):
    body: dict[str, Any] = {"@odata.context": context_url(req.base_url, entity_set, query.select)}
    if total is not None:
        body["@odata.count"] = total
    if link:
        body["@odata.nextLink"] = link
    body["value"] = items
    return GraphResponse(200, body, content_type=ODATA_JSON)


def _page_over(
    ctx: ServerContext,
    req: GraphRequest,
    query: ListQuery,
    candidates: Callable[[Any], Iterable[tuple[Any, DirObject]]],
    render: Callable[[DirObject], dict[str, Any]],
    entity_set: str,
    count_all: Callable[[], int],
) -> GraphResponse:
    """One page of a list. ``candidates(cursor)`` yields ``(position, object)`` after ``cursor``."""
    cursor = ctx.read_page_token(req.path, req.query)
    first_page = cursor is None
    total = None
    if query.sorted:
        ordered = _sorted(query, (obj for _, obj in candidates(None) if query.matches(obj)))
        offset = cursor or 0
        page = ordered[offset : offset + query.top]
        link = next_link(req, ctx.page_token(req.path, req.query, offset + len(page))) if (
            offset + len(page) < len(ordered)
        ) else None  # fmt: skip
        if first_page and query.count:
            total = len(ordered)
        return collection_response(ctx, req, entity_set, [render(o) for o in page], query, link, total)
    page: list[DirObject] = []
    scanned = 0
    last_position = cursor
    exhausted = True
    limit = ctx.settings.filter_scan_per_page if query.predicate is not None else None
    for position, obj in candidates(cursor):
        if len(page) == query.top or (limit is not None and scanned >= limit):
            exhausted = False
            break
        scanned += 1
        last_position = position
        if query.matches(obj):
            page.append(obj)
    link = None if exhausted else next_link(req, ctx.page_token(req.path, req.query, last_position))
    if first_page and query.count:
        total = count_all()
    return collection_response(ctx, req, entity_set, [render(o) for o in page], query, link, total)


def _sorted(query: ListQuery, objects: Iterable[DirObject]) -> list[DirObject]:
    result = list(objects)
    for prop, descending in reversed(query.orderby):
        result.sort(key=sort_key(prop), reverse=descending)
    return result


def _uses_sign_in_activity(ctx: ServerContext, req: GraphRequest) -> bool:
    """Whether a users request selects or filters on signInActivity, which needs an Entra ID P1/P2
    licence (403 otherwise) and allows pages of 500 at most [docs/graph-behaviour.md sections 1, 6, 8]."""
    if "signInActivity" not in req.query.get("$select", "") + req.query.get("$filter", ""):
        return False
    if not ctx.settings.premium_licence:
        raise GraphError(
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        )
    return True


def _top_level_list(ctx: ServerContext, req: GraphRequest, kind: str) -> GraphResponse:
    max_top = ctx.settings.max_page_size
    if kind == "user" and _uses_sign_in_activity(ctx, req):
        max_top = ctx.settings.sign_in_activity_max_page_size
    query = _parse_page_query(req, [kind], default_top=ctx.settings.default_page_size, max_top=max_top)
    tenant = ctx.tenant

    def candidates(cursor):
        for obj in tenant.live(kind, -1 if cursor is None else cursor):
            yield obj.ordinal, obj

    def count_all() -> int:
        return sum(1 for obj in tenant.live(kind) if query.matches(obj))

    render = _renderer(ctx, req, query, with_type=False)
    return _page_over(ctx, req, query, candidates, render, KIND_TO_COLLECTION[kind], count_all)


def _parse_page_query(req: GraphRequest, kinds: list[str], **options: Any) -> ListQuery:
    """:func:`parse_list_query`, except that a nextLink followed without the advanced-query parameters its
    query needs (the client did not resend ``ConsistencyLevel``) is refused as an expired page token, as
    observed on Graph [docs/graph-behaviour.md section 1, 3P]."""
    try:
        return parse_list_query(req, kinds, **options)
    except GraphError as error:
        if "$skiptoken" in req.query and error.code == "Request_UnsupportedQuery" and not req.eventual:
            raise expired_page_token() from None
        raise


def _live(ctx: ServerContext, object_id: str | None) -> DirObject | None:
    """The live object with this id, or None (missing, purged or in deleted items)."""
    obj = ctx.tenant.objects.get(object_id) if object_id else None
    return obj if obj is not None and obj.deleted is None else None


def _manager_of(ctx: ServerContext, user_id: str) -> DirObject | None:
    return _live(ctx, ctx.tenant.manager.get(user_id))


def _direct_reports(ctx: ServerContext, manager_id: str) -> list[DirObject]:
    reports = (_live(ctx, u) for u, m in ctx.tenant.manager.items() if m == manager_id)
    return [obj for obj in reports if obj is not None]


def _lookup(ctx: ServerContext, kind: str, key: str) -> DirObject:
    """``/{collection}/{key}``: users by id or userPrincipalName; other objects by id, where a key that
    is not a GUID is a malformed identifier (400), not a missing object (404) [docs/graph-behaviour.md section 6]."""
    if kind == "user":
        return ctx.tenant.find_user(key)
    try:
        uuid.UUID(key)
    except ValueError:
        raise bad_request(f"Invalid object identifier '{key}'.") from None
    return ctx.tenant.get(key, kind)


def _renderer(ctx: ServerContext, req: GraphRequest, query: ListQuery, *, with_type: bool):
    expand = query.expand

    def render(obj: DirObject) -> dict[str, Any]:
        item = project(obj, query.select, with_type=with_type)
        for name, nested in expand.items():
            _expand_into(ctx, obj, name, nested, item)
        return item

    return render


def _expand_into(ctx: ServerContext, obj: DirObject, name: str, nested, item: dict[str, Any]) -> None:
    tenant = ctx.tenant
    if name == "manager":
        manager = _manager_of(ctx, obj.id)
        if manager is not None:
            item["manager"] = project(manager, nested, with_type=True)
    elif name == "members":
        item["members"] = [project(m, nested, with_type=True) for m in tenant.group_members(obj.id)[:20]]
    elif name == "memberOf":
        item["memberOf"] = [project(g, nested, with_type=True) for g in tenant.groups_of(obj.id)[:20]]
    elif name == "directReports":
        reports = _direct_reports(ctx, obj.id)
        item["directReports"] = [project(u, nested, with_type=True) for u in reports[:20]]
    elif name == "owners":
        owners = (_live(ctx, o) for o in tenant.owners.get(obj.id, {}))
        item["owners"] = [project(o, nested, with_type=True) for o in owners if o is not None]


def _count_response(ctx: ServerContext, req: GraphRequest, kinds: list[str], objects: Iterable[DirObject]):
    if not req.eventual:
        raise bad_request("$count is not currently supported.")
    query = parse_list_query(req, kinds, default_top=1, max_top=999, count_segment=True)
    return GraphResponse(200, str(sum(1 for obj in objects if query.matches(obj))), content_type="text/plain")


# ------------------------------------------------------------------------------------------ collections


def _register_collection(collection: str, kind: str) -> None:
    @router.route("GET", f"/{collection}")
    def list_collection(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
        return _top_level_list(ctx, req, kind)

    @router.route("GET", f"/{collection}/$count")
    def count_collection(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
        return _count_response(ctx, req, [kind], ctx.tenant.live(kind))

    @router.route("GET", f"/{collection}/{{id}}")
    def get_object(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
        obj = _lookup(ctx, kind, id)
        for name in req.query:
            if name.startswith("$") and name not in ("$select", "$expand"):
                raise bad_request(f"Query option '{name}' is not allowed.", code="BadRequest")
        if kind == "user":
            _uses_sign_in_activity(ctx, req)
        select = parse_select(req.query.get("$select"), [kind], collection=False)
        body = {"@odata.context": context_url(req.base_url, collection, select, entity=True)}
        body.update(project(obj, select))
        if "$expand" in req.query:
            for name, nested in parse_expand(req.query["$expand"], [kind]).items():
                _expand_into(ctx, obj, name, nested, body)
        return GraphResponse(200, body, content_type=ODATA_JSON)


for _collection, _kind in COLLECTIONS.items():
    _register_collection(_collection, _kind)


# ---------------------------------------------------------------------------------------- relationships

# The directory object types a cast segment may name on a relationship of directory objects, and on
# deleted items. A cast is qualified by the namespace or by the schema's alias: ``microsoft.graph.user`` and
# ``graph.user`` are the same cast (:data:`localgraph.routing.CAST`).
CAST_KINDS = ("user", "group", "device", "orgContact", "servicePrincipal", "application")
DELETED_ITEM_KINDS = ("user", "group", "application", "servicePrincipal", "device")
_MEMBER_KINDS = ["user", "group", "device", "orgContact", "servicePrincipal"]


def cast_kind(cast: str, kinds=CAST_KINDS) -> str:
    """The kind a cast segment names (``graph.user`` -> ``user``), or 400 "Resource not found for the
    segment" as Graph answers a cast to a type that is not derived from the collection's type."""
    name = (schema.cast_type_name(cast) or "") if is_cast(cast) else ""
    short = name.removeprefix(schema.NAMESPACE + ".")
    kind = next((k for k in kinds if k.lower() == short.lower()), None)
    if kind is None:
        raise bad_request(f"Resource not found for the segment '{cast}'.", code="BadRequest")
    return kind


def _relationship(
    ctx: ServerContext, req: GraphRequest, objects: list[DirObject], cast: str | None
) -> GraphResponse:
    kinds = _MEMBER_KINDS
    if cast is not None:
        kind = cast_kind(cast)
        objects = [obj for obj in objects if obj.kind == kind]
        kinds = [kind]
    query = _parse_page_query(
        req, kinds, default_top=ctx.settings.default_page_size, max_top=ctx.settings.max_page_size,
        relationship=True,
    )  # fmt: skip
    if (
        cast is not None
        and query.advanced is False
        and len(req.query.keys() - {"$skiptoken", "$top", "$select"})
    ):
        raise GraphError(400, "Request_UnsupportedQuery", "The specified query is not supported. OData cast "
                         "with other query parameters requires advanced query parameters.")  # fmt: skip

    def candidates(cursor):
        start = 0 if cursor is None else cursor + 1
        for index in range(start, len(objects)):
            yield index, objects[index]

    def count_all() -> int:
        return sum(1 for obj in objects if query.matches(obj))

    entity_set = "directoryObjects" if cast is None else KIND_TO_COLLECTION[kinds[0]]
    render = _renderer(ctx, req, query, with_type=cast is None)
    return _page_over(ctx, req, query, candidates, render, entity_set, count_all)


def _register_relationship(owner_collection: str, owner_kind: str, name: str, source) -> None:
    def handler(ctx: ServerContext, req: GraphRequest, id: str, cast: str | None = None) -> GraphResponse:
        owner = _lookup(ctx, owner_kind, id)
        return _relationship(ctx, req, source(ctx, owner.id), cast)

    def count(ctx: ServerContext, req: GraphRequest, id: str, cast: str | None = None) -> GraphResponse:
        owner = _lookup(ctx, owner_kind, id)
        objects = source(ctx, owner.id)
        if cast is None:
            return _count_response(ctx, req, _MEMBER_KINDS, objects)
        kind = cast_kind(cast)
        return _count_response(ctx, req, [kind], [obj for obj in objects if obj.kind == kind])

    router.route("GET", f"/{owner_collection}/{{id}}/{name}")(handler)
    router.route("GET", f"/{owner_collection}/{{id}}/{name}/$count")(count)
    router.route("GET", f"/{owner_collection}/{{id}}/{name}/{{cast}}")(handler)
    router.route("GET", f"/{owner_collection}/{{id}}/{name}/{{cast}}/$count")(count)


_register_relationship("groups", "group", "members", lambda c, i: c.tenant.group_members(i))
_register_relationship("groups", "group", "transitiveMembers", lambda c, i: c.tenant.transitive_members(i))
_register_relationship(
    "groups",
    "group",
    "owners",
    lambda c, i: [o for o in map(partial(_live, c), c.tenant.owners.get(i, {})) if o],
)
for _collection, _kind in COLLECTIONS.items():
    if _kind in ("user", "group", "device", "orgContact", "servicePrincipal"):
        _register_relationship(_collection, _kind, "memberOf", lambda c, i: c.tenant.groups_of(i))
        _register_relationship(
            _collection, _kind, "transitiveMemberOf", lambda c, i: c.tenant.transitive_groups_of(i)
        )
_register_relationship("users", "user", "directReports", _direct_reports)


@router.route("GET", "/users/{id}/manager")
def get_manager(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    user = ctx.tenant.find_user(id)
    manager = _manager_of(ctx, user.id)
    if manager is None:
        raise not_found("manager")
    select = parse_select(req.query.get("$select"), ["user"], collection=False)
    body = {"@odata.context": f"{req.base_url}/$metadata#directoryObjects/$entity"}
    body.update(project(manager, select, with_type=True))
    return GraphResponse(200, body, content_type=ODATA_JSON)


@router.route("GET", "/directoryObjects/{id}")
@router.route("GET", "/directoryObjects/{id}/{cast}")
def get_directory_object(
    ctx: ServerContext, req: GraphRequest, id: str, cast: str | None = None
) -> GraphResponse:
    obj = ctx.tenant.get(id)
    if cast is not None and obj.kind != cast_kind(cast):
        # UNCONFIRMED: Graph's answer to a cast the object does not have; OData says the cast segment
        # yields nothing, so answer as for a missing object.
        raise not_found(id)
    body = {"@odata.context": f"{req.base_url}/$metadata#directoryObjects/$entity"}
    body.update(
        project(obj, parse_select(req.query.get("$select"), [obj.kind], collection=False), with_type=True)
    )
    return GraphResponse(200, body, content_type=ODATA_JSON)


# ---------------------------------------------------------------------------------------- deleted items


@router.route("GET", "/directory/deletedItems/{id}")
def get_deleted_item(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    obj = ctx.tenant.get(id, include_deleted=True)
    if obj.deleted is None:
        raise not_found(id)
    body = {"@odata.context": f"{req.base_url}/$metadata#directoryObjects/$entity"}
    body.update(project(obj, None, with_type=True))
    body["deletedDateTime"] = obj.deleted
    return GraphResponse(200, body, content_type=ODATA_JSON)


@router.route("GET", "/directory/deletedItems/{cast}")
def list_deleted(ctx: ServerContext, req: GraphRequest, cast: str) -> GraphResponse:
    """Deleted items of one type: Graph requires the cast (``microsoft.graph.user`` or ``graph.user``)."""
    kind = cast_kind(cast, DELETED_ITEM_KINDS)
    query = parse_list_query(req, [kind], default_top=ctx.settings.default_page_size, max_top=999)
    objects = list(ctx.tenant.deleted_items(kind))

    def candidates(cursor):
        start = 0 if cursor is None else cursor + 1
        for index in range(start, len(objects)):
            yield index, objects[index]

    def render(obj: DirObject) -> dict[str, Any]:
        item = project(obj, query.select)
        item["deletedDateTime"] = obj.deleted
        return item

    return _page_over(ctx, req, query, candidates, render, "directoryObjects", lambda: len(objects))


@router.route("GET", "/organization")
def list_organization(ctx: ServerContext, req: GraphRequest) -> GraphResponse:
    tenant = ctx.tenant
    org = {
        "id": tenant.tenant_id,
        "displayName": "Contoso (local Graph)",
        "verifiedDomains": [
            {
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": i == 0,
                "isInitial": i == 0,
                "name": name,
                "type": "Managed",
            }
            for i, name in enumerate(tenant.verified_domains)
        ],
        "tenantType": "AAD",
        "countryLetterCode": "FI",
    }
    return GraphResponse(200, {"@odata.context": f"{req.base_url}/$metadata#organization", "value": [org]})
