"""The one $batch fan-out against the local Graph: chunks of 20, missing objects, sub-collections, objects."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator

import pytest

from localgraph.generate import TenantShape
from shared.credentials import build_credential
from shared.extract.fanout import PAGE_QUERY, FanOut, IdCollector, ObjectCollector, SubQuery
from shared.graph.auth import TokenProvider
from shared.graph.client import GraphClient
from tests.support import task_config


@pytest.fixture
def graph_shape():
    return TenantShape(users=80, groups=30, memberships=300, seed=4)


@pytest.fixture
async def fanout(graph) -> AsyncIterator[FanOut]:
    connector = task_config(graph.info).connector("local")
    environ = {
        "LOCALGRAPH_CLIENT_SECRET": graph.info.client_secret,
        "CONNECTOR_CA_BUNDLE": graph.info.ca_file,
    }
    tokens = TokenProvider(build_credential(connector, environ=environ), connector.scope)
    verify = ssl.create_default_context(cafile=graph.info.ca_file)
    async with GraphClient(connector.graph_root, tokens, verify=verify) as client:
        yield FanOut(client, concurrency=2)


async def test_collections_of_many_items_in_batches_of_20_with_missing_items_as_none(fanout, control):
    groups = control.objects("groups")
    gone = str(uuid.uuid4())
    ids = [g["id"] for g in groups] + [gone]
    control.clear_requests()
    found = await fanout.collections(ids, SubQuery(f"/groups/{{id}}/members?{PAGE_QUERY}", IdCollector))
    assert found[gone] is None
    assert {g["id"]: sorted(g["members"]) for g in groups} == {
        gid: collector.ids.sorted() for gid, collector in found.items() if collector is not None
    }
    assert control.requests()["by_path"]["POST /$batch"] == 2  # 31 items: 20 + 11


async def test_a_sub_query_gathers_objects_and_objects_are_fetched_by_id(fanout, control):
    users = control.objects("users")[:25]
    query = SubQuery("/users/{id}/memberOf?$select=id,displayName", ObjectCollector)
    found = await fanout.collections([u["id"] for u in users], query)
    groups = {g["id"]: g for g in control.objects("groups")}
    for user in users:
        collector = found[user["id"]]
        assert collector is not None
        expected = sorted(gid for gid, g in groups.items() if user["id"] in g["members"])
        assert (
            sorted(o["id"] for o in collector.objects if o["@odata.type"] == "#microsoft.graph.group")
            == expected
        )
    fetched = await fanout.objects([u["id"] for u in users[:3]], "/users/{id}?$select=id,displayName")
    assert {k: v["displayName"] for k, v in fetched.items() if v} == {
        u["id"]: u["displayName"] for u in users[:3]
    }
    assert not any(key.startswith("@odata") for v in fetched.values() if v for key in v)


async def test_ids_are_percent_encoded_into_the_paths(fanout, control):
    """A generic collection's key need not be a GUID: a ``#`` or ``?`` in it stays inside its path segment."""
    user = control.objects("users")[0]["id"]
    odd = f"{user}#x"  # unencoded, the rest of the path would be a fragment and this would read the user
    found = await fanout.objects([user, odd], "/users/{id}?$select=id")
    assert found[user] == {"id": user}
    assert found[odd] is None
