"""Directory writes: create, update, delete and restore objects, membership and manager links, photos,
application extension properties, ``getByIds`` [docs/graph-behaviour.md sections 6, 7 and 8].

One module per resource: :mod:`.users`, :mod:`.groups`, :mod:`.memberships` (members and owners ``$ref``),
:mod:`.manager`, :mod:`.photos`, :mod:`.applications` (applications, extension properties, service
principals), :mod:`.devices`, :mod:`.deleted_items`, :mod:`.directory_objects` (``DELETE`` / ``PATCH`` by
id for every collection, ``getByIds``); the checks they share are in :mod:`.properties` (a body's
properties against Graph's metadata), :mod:`.references` (``@odata.id`` / ``@odata.bind`` links) and
:mod:`.objects` (looking objects up, the 201 answer, deletion).

Every change goes through the :class:`~localgraph.tenant.Tenant` mutations, so it is in the change log and
later reads and delta rounds see it. Handlers validate the way Graph does, with Graph's status codes,
error codes and (where docs/graph-behaviour.md quotes them) messages:

- Property names are checked against the entity type in Graph's metadata (:mod:`localgraph.schema`):
  an unknown name is "Property 'x' does not exist as a declared property or extension property.";
  a directory extension ``extension_{appId}_{name}`` must be registered (``POST
  /applications/{id}/extensionProperties``) for that kind of object; read-only properties (ids,
  timestamps, sync-owned ``onPremises*``, ``proxyAddresses``, ...) are "Property 'x' is read-only and
  cannot be set."; a value of the wrong JSON type is "Invalid value specified for property 'x' of
  resource 'User'.".
- Objects synced from on-premises AD (``onPremisesSyncEnabled``) refuse changes to AD-mastered
  properties and memberships with Graph's "Unable to update the specified properties for on-premises
  mastered Directory Sync objects ..." [docs/graph-behaviour.md section 8].
- Writes are not idempotent: a retried create meets ``ObjectConflict`` [docs/graph-behaviour.md rule 8].

Choices where docs/graph-behaviour.md is silent are marked UNCONFIRMED next to the code.

Handlers make no admission checks: application permissions and the replication window are checked by
the server's pipeline before any handler runs, for direct requests and ``$batch`` steps alike
(:mod:`localgraph.admission`).
"""

from __future__ import annotations

from localgraph.routing import Router
from localgraph.writes import (
    applications,
    deleted_items,
    devices,
    directory_objects,
    groups,
    manager,
    memberships,
    photos,
    users,
)

__all__ = ["router"]

router = Router()
for _module in (users, directory_objects, groups, memberships, manager, photos, applications, devices,
                deleted_items):  # fmt: skip
    router.include(_module.router)
