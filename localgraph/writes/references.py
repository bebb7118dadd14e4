"""``@odata.id`` / ``@odata.bind`` links: parsing them and resolving the members and owners to bind."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from localgraph.context import ServerContext
from localgraph.errors import GraphError, bad_request, not_found
from localgraph.routing import GraphRequest
from localgraph.tenant import DirObject
from localgraph.writes.objects import GUID, object_body

TOO_MANY_LINKS = "A resource cannot contain more than 20 link changes."  # 3P (microsoft-graph-docs#6016)
MAX_LINKS = 20  # members@odata.bind and owners@odata.bind together [docs/graph-behaviour.md section 7; docs#6016 maintainer reply]
_GRAPH_HOSTS = {"graph.microsoft.com", "graph.microsoft.us", "dod-graph.microsoft.us",
                "microsoftgraph.chinacloudapi.cn"}  # fmt: skip
_REF_COLLECTIONS = {"directoryobjects": None, "users": "user", "groups": "group", "devices": "device",
                    "serviceprincipals": "servicePrincipal", "contacts": "orgContact"}  # fmt: skip
MEMBER_KINDS = ("user", "group", "device", "orgContact", "servicePrincipal")
OWNER_KINDS = ("user", "servicePrincipal")


def parse_ref(
    ctx: ServerContext, req: GraphRequest, value: Any, link: str, kinds: tuple[str, ...]
) -> DirObject:
    """The object an ``@odata.id`` / ``@odata.bind`` URL names: an absolute Graph URL
    ``https://graph.microsoft.com/v1.0/directoryObjects/{id}`` (or ``.../users/{id}``, the local base URL,
    a national cloud's Graph host). Malformed: 400 ``Request_UnsupportedQuery``; missing: 404."""
    unsupported = GraphError(
        400,
        "Request_UnsupportedQuery",
        f"Unsupported referenced-object resource identifier for link property '{link}'.",
    )
    if not isinstance(value, str):
        raise unsupported
    parts = urlsplit(value.strip())
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    local = {o.lower() for o in ctx.graph_origins} | {req.base_url.rsplit("/v1.0", 1)[0].lower()}
    if parts.scheme.lower() != "https" or (parts.hostname not in _GRAPH_HOSTS and origin not in local):
        raise unsupported
    segments = [unquote(s) for s in parts.path.strip("/").split("/")]
    if len(segments) != 3 or segments[0].lower() not in ("v1.0", "beta"):
        raise unsupported
    if segments[1].lower() not in _REF_COLLECTIONS or not GUID.match(segments[2]) or parts.query:
        raise unsupported
    expected = _REF_COLLECTIONS[segments[1].lower()]
    obj = ctx.tenant.objects.get(segments[2].lower())
    if obj is None or obj.deleted is not None or (expected is not None and obj.kind != expected):
        raise not_found(segments[2])
    if obj.kind not in kinds:
        raise unsupported  # e.g. an application as a member; the exact error is UNCONFIRMED
    return obj


def ref_body(req: GraphRequest) -> Any:
    body = object_body(req)
    return body.get("@odata.id")


def _binds(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(f"{name}@odata.bind")
    if value is None:
        return []
    if not isinstance(value, list):
        message = f"Unsupported referenced-object resource identifier for link property '{name}'."
        raise GraphError(400, "Request_UnsupportedQuery", message)
    return value


def resolve_links(
    ctx: ServerContext, req: GraphRequest, group: DirObject | None, body: dict[str, Any]
) -> tuple[list[DirObject], list[DirObject]]:
    """Members and owners to bind, all resolved before anything changes (a bad one changes nothing)."""
    member_refs, owner_refs = _binds(body, "members"), _binds(body, "owners")
    if len(member_refs) + len(owner_refs) > MAX_LINKS:
        raise bad_request(TOO_MANY_LINKS)
    members = [parse_ref(ctx, req, ref, "members", MEMBER_KINDS) for ref in member_refs]
    owners = [parse_ref(ctx, req, ref, "owners", OWNER_KINDS) for ref in owner_refs]
    for name, objects, existing in (
        ("members", members, ctx.tenant.members.get(group.id, {}) if group else {}),
        ("owners", owners, ctx.tenant.owners.get(group.id, {}) if group else {}),
    ):
        seen: set[str] = set()
        for obj in objects:
            if obj.id in seen or obj.id in existing:
                raise already_exists(name)
            seen.add(obj.id)
    return members, owners


def already_exists(link: str) -> GraphError:
    return bad_request(
        f"One or more added object references already exist for the following modified properties: '{link}'."
    )
