"""Admission checks the pipeline makes before a handler runs: application permissions and the
replication window [GRAPH.md rule 8].
"""

from __future__ import annotations

import time
import weakref

from localgraph import permissions
from localgraph.context import ServerContext
from localgraph.errors import not_found
from localgraph.routing import GraphRequest
from localgraph.tenant import COLLECTIONS, DirObject, Tenant

# Graph-created objects and when (monotonic seconds), per tenant: the replication window.
_CREATED: weakref.WeakKeyDictionary[Tenant, dict[str, float]] = weakref.WeakKeyDictionary()
_BY_ID_TEMPLATES = frozenset(f"/{collection}/{{id}}" for collection in COLLECTIONS) | {
    "/directoryObjects/{id}"
}


def admit(ctx: ServerContext, req: GraphRequest, template: str, params: dict[str, str]) -> None:
    """Checks the pipeline makes after the route matched and before the handler runs."""
    permissions.check(req, template)
    delay_ms = ctx.settings.replication_delay_ms
    if delay_ms > 0 and req.method == "GET" and template in _BY_ID_TEMPLATES:
        created = _CREATED.get(ctx.tenant, {}).get(params["id"].lower())
        if created is not None and (time.monotonic() - created) * 1000 < delay_ms:
            # A read served by a replica the create has not reached yet [GRAPH.md rule 8].
            raise not_found(params["id"])


def note_created(ctx: ServerContext, obj: DirObject) -> None:
    if ctx.settings.replication_delay_ms <= 0:
        return
    created = _CREATED.setdefault(ctx.tenant, {})
    now = time.monotonic()
    created[obj.id] = now
    if obj.kind == "user":
        created[obj.props["userPrincipalName"].lower()] = now
