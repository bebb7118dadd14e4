"""Connectors and tasks through the admin API: list, read, create, update, delete, copy; stable ids, ETags,
every invalid field named."""

from __future__ import annotations

import pytest

from tests.support import USER_MAPPINGS


async def _task(client, name="people"):
    listing = (await client.get("/v1/tasks", params={"name": name})).json()["value"]
    return next(t for t in listing if t["name"] == name)


async def test_lists_connectors_and_tasks_with_ids_and_etags(client):
    connectors = (await client.get("/v1/connectors")).json()["value"]
    assert [c["name"] for c in connectors] == ["local"]
    task = await _task(client)
    assert task["usage"] == "scheduled" and task["definition"]["id"] == task["id"]
    read = await client.get(f"/v1/tasks/{task['id']}")
    assert read.status_code == 200 and read.headers["etag"] == task["etag"]


async def test_rename_keeps_the_id_and_a_stale_etag_is_refused(client):
    task = await _task(client)
    renamed = {**task["definition"], "name": "people-renamed"}
    answer = await client.put(f"/v1/tasks/{task['id']}", json=renamed, headers={"If-Match": task["etag"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == task["id"] and answer.json()["name"] == "people-renamed"
    assert answer.headers["etag"] != task["etag"]
    # A second editor still holding the first version is refused, and the first edit stands.
    stale = await client.put(
        f"/v1/tasks/{task['id']}",
        json={**task["definition"], "description": "x"},
        headers={"If-Match": task["etag"]},
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert (await client.get(f"/v1/tasks/{task['id']}")).json()["name"] == "people-renamed"
    missing = await client.put(f"/v1/tasks/{task['id']}", json=renamed)
    assert missing.status_code == 428


async def test_invalid_definition_names_every_bad_field_relative_to_it(client):
    answer = await client.post(
        "/v1/tasks",
        json={"name": "bad name", "connector": "nowhere", "mode": "sometimes", "mappings_type": "identity"},
    )
    assert answer.status_code == 422
    errors = {e["path"]: e["message"] for e in answer.json()["errors"]}
    assert set(errors) >= {"name", "connector", "mode", "users"}, errors
    assert "no connector named 'nowhere'" in errors["connector"]
    assert "required" in errors["users"]
    # Nothing was stored.
    assert [t["name"] for t in (await client.get("/v1/tasks")).json()["value"]] == ["people"]


async def test_create_read_delete_task(client):
    body = {
        "name": "staff",
        "connector": "local",
        "mode": "full",
        "mappings_type": "identity",
        "users": {"mappings": USER_MAPPINGS, "target_template": "account", "target_folder": "accounts"},
    }
    created = await client.post("/v1/tasks", json=body)
    assert created.status_code == 201, created.text
    id = created.json()["id"]
    given_id = await client.post("/v1/tasks", json={**body, "name": "other", "id": "mine"})
    assert given_id.status_code == 422 and given_id.json()["errors"][0]["path"] == "id"
    deleted = await client.delete(f"/v1/tasks/{id}", headers={"If-Match": created.headers["etag"]})
    assert deleted.status_code == 204
    assert (await client.get(f"/v1/tasks/{id}")).status_code == 404


async def test_copy_scheduled_task_as_authentication_task(client):
    task = await _task(client)
    copied = await client.post(
        f"/v1/tasks/{task['id']}/copy",
        json={"name": "sign-in", "usage": "authentication", "protocol": "openid_connect", "realm": "staff"},
    )
    assert copied.status_code == 201, copied.text
    definition = copied.json()["definition"]
    assert copied.json()["usage"] == "authentication" and copied.json()["id"] != task["id"]
    assert definition["connector"] == "local" and definition["protocol"] == "openid_connect"
    same_name = await client.post(f"/v1/tasks/{task['id']}/copy", json={"name": "people"})
    assert same_name.status_code == 422
    assert any("duplicate task name" in e["message"] for e in same_name.json()["errors"])


async def test_connector_rename_carries_its_tasks(client):
    connector = (await client.get("/v1/connectors")).json()["value"][0]
    answer = await client.put(
        f"/v1/connectors/{connector['id']}",
        json={**connector["definition"], "name": "tenant-a"},
        headers={"If-Match": connector["etag"]},
    )
    assert answer.status_code == 200, answer.text
    assert (await _task(client))["definition"]["connector"] == "tenant-a"
    refused = await client.delete(
        f"/v1/connectors/{connector['id']}", headers={"If-Match": answer.headers["etag"]}
    )
    assert refused.status_code == 409 and "people" in refused.json()["detail"]


async def test_concurrent_creates_of_one_name_store_exactly_one(client):
    import asyncio

    body = {
        "usage": "authentication", "connector": "local", "protocol": "saml2", "realm": "staff",
        "name": "sign-in",
    }  # fmt: skip
    answers = await asyncio.gather(
        *(client.post("/v1/tasks", json={**body, "name": name}) for name in ["sign-in", "SIGN-IN", "Sign-In"])
    )
    statuses = sorted(a.status_code for a in answers)
    # The losers were refused by the name claim (409) or, if they came after the winner, by validation (422).
    assert statuses[0] == 201 and all(s in (409, 422) for s in statuses[1:]), [a.text for a in answers]
    assert [
        t["name"] for t in (await client.get("/v1/tasks", params={"kind": "authentication"})).json()["value"]
    ] in (["sign-in"], ["SIGN-IN"], ["Sign-In"])
    # The name is free again once its task is renamed or deleted.
    created = next(a for a in answers if a.status_code == 201)
    renamed = {**created.json()["definition"], "name": "staff-sign-in"}
    moved = await client.put(
        f"/v1/tasks/{created.json()['id']}", json=renamed, headers={"If-Match": created.headers["etag"]}
    )
    assert moved.status_code == 200
    again = await client.post("/v1/tasks", json=body)
    assert again.status_code == 201, again.text
    gone = await client.delete(f"/v1/tasks/{again.json()['id']}", headers={"If-Match": again.headers["etag"]})
    assert gone.status_code == 204
    assert (await client.post("/v1/tasks", json=body)).status_code == 201


async def test_the_store_refuses_a_second_claim_of_a_name_even_without_validation(admin):
    from shared.admin.errors import Conflict

    first = await admin.store.insert("task", {"id": "a1", "name": "Twin", "usage": "authentication"})
    with pytest.raises(Conflict, match="is in use"):
        await admin.store.insert("task", {"id": "b2", "name": "twin", "usage": "authentication"})
    # A claim whose owner is gone (a write that failed halfway) is taken over.
    admin.store.table.delete_entity("task", first.id)
    taken = await admin.store.insert("task", {"id": "c3", "name": "TWIN", "usage": "authentication"})
    assert taken.id == "c3"
    assert [d.name for d in await admin.store.all("task") if d.name.lower() == "twin"] == ["TWIN"]


async def test_a_files_task_gets_its_name_as_id_and_a_later_file_never_clobbers_a_renamed_one(
    client, stored, graph
):
    from tests.support import task_config

    task = await _task(client)
    assert task["id"] == "people"  # stored from a file: its name is its id, where its storage already is
    renamed = {**task["definition"], "name": "people-2024"}
    assert (
        await client.put(f"/v1/tasks/{task['id']}", json=renamed, headers={"If-Match": task["etag"]})
    ).status_code == 200
    await stored.config_store.save(task_config(graph.info), replace=False)  # a file with a new "people"
    tasks = {t["name"]: t["id"] for t in (await client.get("/v1/tasks")).json()["value"]}
    assert tasks["people-2024"] == "people" and tasks["people"] not in ("people", "people-2024")
    assert (await stored.config_store.load()).task("people-2024").storage_key == "people"


async def test_the_page_escapes_what_definitions_hold(client):
    task = await _task(client)
    hostile = {**task["definition"], "description": "<script>alert('x')</script>"}
    assert (
        await client.put(f"/v1/tasks/{task['id']}", json=hostile, headers={"If-Match": task["etag"]})
    ).status_code == 200
    page = await client.get(f"/tasks/{task['id']}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
