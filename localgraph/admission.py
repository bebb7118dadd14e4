"""Request admission: what every Graph request, and every step of a ``$batch``, passes through in the server's
pipeline (:func:`localgraph.server.dispatch`) after its route matched and before its handler runs, and what
the pipeline records after the handler answered. Handlers make none of these checks themselves, so none can
forget one.

- **Application permissions** (:mod:`localgraph.permissions`): 403 ``Authorization_RequestDenied``.
  Being checked first, a refusal comes before the handler's own 400 or 404 for the same request (e.g. a
  property app-only callers can't set next to an invalid one, or a group photo write to a missing group);
  which answer Graph gives first in such mixed cases is UNCONFIRMED.
- **The replication window** (``settings.replication_delay_ms``; 0 turns it off). Graph's directory is
  eventually consistent: "This request might have replication delays for users that were recently created,
  updated, or deleted" (Learn user-list, group-get), and a newly created object may answer "Not Found" for a
  moment [docs/graph-behaviour.md section 11]. For that long after an object is created through Graph:

  - ``GET`` of it by id (or a user's userPrincipalName) answers 404 ``Request_ResourceNotFound``;
  - ``POST /groups/{id}/members/$ref`` to it, or ``PATCH /groups/{id}`` with ``members@odata.bind``,
    answers 400 "The source resource object or one of the objects being referenced don't exist." (Learn
    group-post-members: "for recently created groups ... might return a 400 Bad Request error with the
    message ..."; "Retry after a brief delay"; the same note on group-update for ``members@odata.bind``)
    [docs/graph-behaviour.md section 11];
  - and the same 400 when the object *referenced* (the member being added) is the just-created one.
    UNCONFIRMED: Learn's note names recently created groups; for a just-created member, 400 or 404 is not
    settled by the sources. We answer the 400, whose message names "one of the objects being referenced".

  The window's length is not documented (UNCONFIRMED); it is a setting.
"""

from __future__ import annotations

import json
from urllib.parse import unquote, urlsplit

from localgraph import permissions
from localgraph.context import ServerContext
from localgraph.errors import GraphError, not_found
from localgraph.routing import GraphRequest, GraphResponse
from localgraph.tenant import COLLECTIONS

# GETs of one object by id that a replica without the object answers 404.
BY_ID_TEMPLATES = frozenset(f"/{collection}/{{id}}" for collection in COLLECTIONS) | {
    "/directoryObjects/{id}"
}
# Creates whose 201 answers carry the new object: the pipeline notes them for the replication window.
CREATE_TEMPLATES = frozenset(f"/{collection}" for collection in COLLECTIONS)
# Link writes that meet the window's 400 when the group or a referenced object is just created.
MEMBER_LINK_TEMPLATES = frozenset({("POST", "/groups/{id}/members/$ref"), ("PATCH", "/groups/{id}")})

NOT_REPLICATED_MESSAGE = "The source resource object or one of the objects being referenced don't exist."


def not_replicated() -> GraphError:
    """The 400 Learn documents for links to just-created objects. Its ``code`` is not in the sources:
    UNCONFIRMED, ``Request_ResourceNotFound`` (the code of Graph's other "does not exist" answers)."""
    return GraphError(400, "Request_ResourceNotFound", NOT_REPLICATED_MESSAGE)


def admit(ctx: ServerContext, req: GraphRequest, template: str, params: dict[str, str]) -> None:
    """Raise the error Graph would answer before the handler gets the request, if any."""
    permissions.check(ctx, req, template, params)
    delay_ms = ctx.settings.replication_delay_ms
    if delay_ms <= 0 or not ctx.replication.created:
        return
    if req.method == "GET" and template in BY_ID_TEMPLATES:
        if ctx.replication.fresh(params["id"], delay_ms):
            raise not_found(params["id"])  # a read served by a replica the create has not reached yet
    elif (req.method, template) in MEMBER_LINK_TEMPLATES:
        references = _member_references(req, template)
        if references is None:
            return  # a PATCH without members@odata.bind: no link, no window
        if any(ctx.replication.fresh(key, delay_ms) for key in [params["id"], *references]):
            raise not_replicated()


def record(ctx: ServerContext, req: GraphRequest, template: str, response: GraphResponse) -> None:
    """After the handler: note an object created through Graph, for the replication window."""
    delay_ms = ctx.settings.replication_delay_ms
    if delay_ms <= 0 or req.method != "POST" or response.status != 201 or template not in CREATE_TEMPLATES:
        return
    body = response.body if isinstance(response.body, dict) else {}
    keys = [value for value in (body.get("id"), body.get("userPrincipalName")) if isinstance(value, str)]
    if keys:
        ctx.replication.note(keys, delay_ms)


def _member_references(req: GraphRequest, template: str) -> list[str] | None:
    """The object ids a member link names (the last segment of each ``@odata.id`` / ``members@odata.bind``
    URL); None when the request carries no member link. A malformed body or link is left to the handler."""
    try:
        body = json.loads(req.body) if req.body.strip() else None
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    links = [body.get("@odata.id")] if template.endswith("$ref") else body.get("members@odata.bind")
    if not isinstance(links, list) or not links:
        return None
    return [
        unquote(urlsplit(link).path.rstrip("/").rsplit("/", 1)[-1]) for link in links if isinstance(link, str)
    ]
