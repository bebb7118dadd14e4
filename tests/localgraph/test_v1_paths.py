"""Every route the local Graph serves exists in Graph v1.0.

The routes are read from the server's own router (nothing is listed by hand) and each path template is
resolved segment by segment against the committed extract of Graph's v1.0 metadata: an entity set or
singleton, then keys, navigation properties, casts, bound functions or actions, ``$count``, ``$ref`` or
``$value`` (:mod:`localgraph.paths`). A beta-only path (``/managedDevices/{id}/detectedApps``) cannot slip
in again. The only exceptions are the endpoints that are not Graph resources, listed below with why.
"""

from __future__ import annotations

import pytest
from starlette.routing import Route

from localgraph import paths, reads, schema
from localgraph.context import GraphSettings, ServerContext
from localgraph.generate import TenantShape
from localgraph.server import GRAPH_ROUTER, build_app
from localgraph.tenant import Tenant
from tests.support import assert_error

# Graph routes that are not resources of the v1.0 entity model.
GRAPH_EXCEPTIONS = {
    # JSON batching: an endpoint of the service, not an entity set [Learn: graph/json-batching].
    ("POST", "/$batch"),
}

# Starlette routes outside /v1.0: not Graph at all.
NON_GRAPH_PREFIXES = (
    "/_control",  # the local Graph's own control API (loopback only, no token)
    "/{tenant}/v2.0/.well-known/openid-configuration",  # identity platform: OpenID discovery
    "/{tenant}/discovery/v2.0/keys",  # identity platform: signing keys
    "/{tenant}/oauth2/v2.0/token",  # identity platform: token endpoint
    "/common/discovery/instance",  # identity platform: MSAL instance discovery
    "/msi/token",  # App Service / Functions managed identity endpoint
    "/secrets",  # Key Vault secrets (the local vault shares the host)
    "/deletedsecrets",  # Key Vault soft-deleted secrets (read, purge)
)


def graph_routes() -> list[tuple[str, str]]:
    return sorted({(route.method, route.template) for route in GRAPH_ROUTER.routes})


def concrete_templates(template: str) -> list[str]:
    """A template with ``{cast}`` stands for each cast its handler accepts (in both qualified forms)."""
    if "{cast}" not in template:
        return [template]
    kinds = reads.DELETED_ITEM_KINDS if template.startswith("/directory/deletedItems") else reads.CAST_KINDS
    return [
        template.replace("{cast}", f"{form}.{kind}")
        for kind in kinds
        for form in ("graph", "microsoft.graph")
    ]


def test_the_router_serves_routes():
    routes = graph_routes()
    assert len(routes) > 100
    assert ("GET", "/deviceManagement/detectedApps/{id}/managedDevices") in routes


@pytest.mark.parametrize(("method", "template"), graph_routes(), ids=lambda v: v)
def test_every_graph_route_is_a_v1_path(method, template):
    if (method, template) in GRAPH_EXCEPTIONS:
        return
    for path in concrete_templates(template):
        resolution = paths.resolve(path, template=True)
        assert resolution.complete, f"{path}: goes through a type the metadata extract does not hold"
        assert resolution.unknown is None, f"{path}: '{resolution.unknown}' is not a v1.0 segment there"


def test_every_non_graph_endpoint_is_an_explicit_exception(tmp_path):
    ctx = ServerContext(
        tenant=Tenant("00000000-0000-0000-0000-000000000001", "x.example"), settings=GraphSettings()
    )
    app = build_app(ctx)
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path.startswith("/v1.0"):
            continue
        assert route.path.startswith(NON_GRAPH_PREFIXES), (
            f"{route.path} is neither Graph v1.0 nor an exception"
        )


# --- the resolver itself: it must be able to fail --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "unknown"),
    [
        ("/deviceManagement/managedDevices/{id}/detectedApps", "detectedApps"),  # beta only
        ("/deviceManagement/managedDevices/delta", None),  # a key in a template-free path ...
        ("/administrativeUnits", "administrativeUnits"),  # v1.0 has only /directory/administrativeUnits
        ("/users/{id}/photo/$count", "$count"),  # photo is single-valued
        ("/users/$ref", "$ref"),  # $ref needs a navigation
        ("/users/{id}/$value", "$value"),  # user is not a media entity
        ("/groups/{id}/members/graph.calendar", "graph.calendar"),  # not derived from directoryObject
        ("/groups/{id}/members/beta.user", "beta.user"),  # neither the namespace nor the alias
        ("/users/{id}/memberOf/{id}/memberOf", "memberOf"),  # not a navigation of directoryObject
    ],
)
def test_resolver_rejects_what_v1_does_not_have(path, unknown):
    if unknown is None:
        # ... but in a template only a {parameter} may be a key: managedDevices binds no delta in v1.0.
        assert paths.resolve(path, template=True).unknown == "delta"
        assert paths.resolve(path).unknown is None  # a request path: "delta" reads as a key
        return
    assert paths.resolve(path, template=True).unknown == unknown


def test_resolver_accepts_both_cast_forms_and_bound_operations():
    for path in (
        "/groups/{id}/members/graph.user/$count",
        "/groups/{id}/transitiveMembers/microsoft.graph.device",
        "/directory/deletedItems/graph.group",
        "/directoryObjects/graph.user",
        "/users/microsoft.graph.delta()",
        "/directory/deletedItems/{id}/restore",
        "/deviceManagement/managedDevices/{id}/syncDevice",
    ):
        resolution = paths.resolve(path, template=True)
        assert resolution.unknown is None and resolution.complete, path
    assert schema.bound_operation("managedDevice", "delta", collection=True) is None
    # Graph's URLs are case-insensitive: names and casts resolve whatever their case.
    assert paths.resolve("/Users/{id}/MemberOf/Graph.Group/$count", template=True).unknown is None


# --- what a client sees ------------------------------------------------------------------------------


@pytest.fixture
def graph_shape() -> TenantShape:
    return TenantShape(users=40, seed=2)


def test_a_beta_only_path_answers_like_graph_v1(http):
    device = http.get("/deviceManagement/managedDevices", params={"$top": "1"}).json()["value"][0]
    assert_error(
        http.get(f"/deviceManagement/managedDevices/{device['id']}/detectedApps"),
        400,
        "BadRequest",
        "Resource not found for the segment 'detectedApps'.",
    )
    # The first unresolvable segment is named, not the last one.
    assert_error(
        http.get(f"/users/{device['userId']}/notARelationship/members"),
        400,
        "BadRequest",
        "Resource not found for the segment 'notARelationship'.",
    )


def test_empty_segments_are_served_as_graph_serves_them(graph, http):
    """Microsoft's Python SDK joins its base URL (with httpx's trailing slash) and ``/users``: ``/v1.0//users``.
    (Its batch steps are relative URLs with one slash; a step URL starting with ``//`` stays a malformed batch.)"""
    response = http.get(f"{graph.info.graph_base_url}//users", params={"$top": "2"})
    assert response.status_code == 200 and len(response.json()["value"]) == 2
