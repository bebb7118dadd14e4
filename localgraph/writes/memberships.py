"""Group members and owners through ``$ref`` links [docs/graph-behaviour.md sections 6, 7]."""

from __future__ import annotations

from localgraph.context import ServerContext
from localgraph.errors import bad_request, not_found
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.writes.groups import check_members_writable
from localgraph.writes.objects import delete_object, lookup
from localgraph.writes.references import MEMBER_KINDS, OWNER_KINDS, already_exists, parse_ref, ref_body

router = Router()


@router.route("POST", "/groups/{id}/members/$ref")
def add_member(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """204; already a member: 400; the member does not exist: 404 [docs/graph-behaviour.md sections 6, 7]."""
    group = lookup(ctx, "group", id)
    member = parse_ref(ctx, req, ref_body(req), "members", MEMBER_KINDS)
    check_members_writable(group)
    if member.id == group.id:
        raise bad_request("A group cannot be a member of itself.")  # UNCONFIRMED text
    ctx.tenant.add_member(group.id, member.id)
    return GraphResponse(204)


@router.route("DELETE", "/groups/{id}/members/{memberId}/$ref")
def remove_member(ctx: ServerContext, req: GraphRequest, id: str, memberId: str) -> GraphResponse:
    """204; not a member: 404 ``Request_ResourceNotFound`` [docs/graph-behaviour.md section 6]."""
    group = lookup(ctx, "group", id)
    if memberId.lower() not in ctx.tenant.members.get(group.id, {}):
        raise not_found(memberId)
    check_members_writable(group)
    ctx.tenant.remove_member(group.id, memberId)
    return GraphResponse(204)


@router.route("DELETE", "/groups/{id}/members/{memberId}")
def delete_member_object(ctx: ServerContext, req: GraphRequest, id: str, memberId: str) -> GraphResponse:
    """Without ``/$ref`` Graph deletes the member object itself, if the app may delete it (else 403)
    [docs/graph-behaviour.md section 7]."""
    group = lookup(ctx, "group", id)
    if memberId.lower() not in ctx.tenant.members.get(group.id, {}):
        raise not_found(memberId)
    # The pipeline checked the permission to delete the member's kind (localgraph.permissions.TARGETED).
    delete_object(ctx, ctx.tenant.get(memberId))
    return GraphResponse(204)


@router.route("POST", "/groups/{id}/owners/$ref")
def add_owner(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """Owners: users or service principals; same $ref semantics as members. Owners are not tracked by delta,
    so the change is kept in ``tenant.owners`` only."""
    group = lookup(ctx, "group", id)
    owner = parse_ref(ctx, req, ref_body(req), "owners", OWNER_KINDS)
    owners = ctx.tenant.owners.setdefault(group.id, {})
    if owner.id in owners:
        raise already_exists("owners")
    owners[owner.id] = None
    return GraphResponse(204)


@router.route("DELETE", "/groups/{id}/owners/{ownerId}/$ref")
def remove_owner(ctx: ServerContext, req: GraphRequest, id: str, ownerId: str) -> GraphResponse:
    group = lookup(ctx, "group", id)
    owners = ctx.tenant.owners.get(group.id, {})
    if ownerId.lower() not in owners:
        raise not_found(ownerId)
    del owners[ownerId.lower()]
    return GraphResponse(204)
