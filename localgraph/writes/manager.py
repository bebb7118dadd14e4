"""A user's manager link (``/users/{id}/manager/$ref``) [docs/graph-behaviour.md section 7]."""

from __future__ import annotations

from localgraph.context import ServerContext
from localgraph.errors import bad_request, not_found
from localgraph.routing import GraphRequest, GraphResponse, Router
from localgraph.writes.objects import SYNC_MASTERED_MESSAGE, synced
from localgraph.writes.references import parse_ref, ref_body

router = Router()


@router.route("PUT", "/users/{id}/manager/$ref")
def set_manager(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """``{"@odata.id": ".../users/{managerId}"}`` -> 204 [docs/graph-behaviour.md section 7]. The manager is a user or an
    org contact (the navigation's type is directoryObject) [docs/graph-behaviour.md section 8]."""
    user = ctx.tenant.find_user(id)
    manager = parse_ref(ctx, req, ref_body(req), "manager", ("user", "orgContact"))
    if synced(user):
        raise bad_request(SYNC_MASTERED_MESSAGE)  # the manager attribute comes from AD; UNCONFIRMED
    if manager.id == user.id:
        raise bad_request("A user cannot be their own manager.")  # UNCONFIRMED text
    ctx.tenant.set_manager(user.id, manager.id)
    return GraphResponse(204)


@router.route("DELETE", "/users/{id}/manager/$ref")
def remove_manager(ctx: ServerContext, req: GraphRequest, id: str) -> GraphResponse:
    """204; 404 when the user has no manager."""
    user = ctx.tenant.find_user(id)
    if user.id not in ctx.tenant.manager:
        raise not_found("manager")
    if synced(user):
        raise bad_request(SYNC_MASTERED_MESSAGE)
    ctx.tenant.set_manager(user.id, None)
    return GraphResponse(204)
