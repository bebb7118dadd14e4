"""A full run end to end: local Graph (real HTTPS, real token) -> runner -> Azurite blobs and tables."""

from __future__ import annotations

import json
import logging

import pytest

from shared.extract.runner import run_task
from shared.storage import blobs, digests
from shared.storage.queues import RunRequest
from tests.support import expected_groups, expected_users, read_records, task_config


@pytest.fixture
def graph_shape():
    from localgraph.generate import TenantShape

    return TenantShape(users=150, groups=20, memberships=900, seed=11)


async def test_full_run_output_equals_the_tenant(graph, control, services):
    config = task_config(graph.info)
    outcome = await run_task(services, RunRequest(task="people"), config=config)
    record = outcome.record
    assert record.status == "succeeded", record.error
    assert record.mode == "full"
    assert await read_records(services, record.files["users"]) == expected_users(control)
    assert await read_records(services, record.files["groups"]) == expected_groups(control)
    assert record.counts["users"].read == record.counts["users"].written == 150
    assert record.counts["users"].changed == 150 and record.counts["users"].removed == 0


async def test_full_run_commits_files_manifest_and_latest_pointer(graph, services, caplog):
    caplog.set_level(logging.INFO)  # the level the Functions host and the CLI log at: the run keeps its lines
    config = task_config(graph.info)
    record = (
        await run_task(services, RunRequest(task="people", run_id="20261128T010000Z-aaaaaa"), config=config)
    ).record
    prefix = "people/runs/20261128T010000Z-aaaaaa"
    names = sorted(b.name for b in services.extracts.list_blobs(name_starts_with="people/"))
    assert names == [
        "people/latest.json",
        f"{prefix}/cache/groups.digests",  # delivery: the task cache's digest tables and the changes
        f"{prefix}/cache/users.digests",
        f"{prefix}/changes.jsonl",
        f"{prefix}/groups.jsonl",
        f"{prefix}/groups.jsonl.digests",  # each view's digest table, built while it was written
        f"{prefix}/manifest.json",
        f"{prefix}/run.log",  # the run's own log lines
        f"{prefix}/users.jsonl",
        f"{prefix}/users.jsonl.digests",
    ]
    manifest = await blobs.get_json(services.extracts, f"{prefix}/manifest.json")
    assert manifest == await blobs.get_json(services.extracts, "people/latest.json")
    assert manifest["files"]["users"] == {
        "path": f"{prefix}/users.jsonl",
        "records": 150,
        "target_template": "account",
        "target_folder": "accounts",
        "key": "id",
        "key_attribute": None,  # the key is the object id: no attribute carries it
    }
    assert manifest["counts"]["groups"]["written"] == record.counts["groups"].written
    users_blob = services.extracts.get_blob_client(f"{prefix}/users.jsonl").get_blob_properties()
    assert users_blob.content_settings.content_type == "application/x-ndjson"
    for stream in ("users", "groups"):  # the saved table is the one the view's lines give
        view = f"{prefix}/{stream}.jsonl"
        saved = await digests.load(services.extracts, digests.table_name(view))
        built = digests.DigestBuilder()
        async for line in blobs.read_lines(services.extracts, view):
            built.add_line(line)
        expected = built.table()
        assert saved is not None and len(saved) == manifest["files"][stream]["records"]
        assert (saved.hashes, saved.digests) == (expected.hashes, expected.digests)


async def test_second_full_run_reports_changes_against_the_previous_view(graph, control, services):
    config = task_config(graph.info)
    await run_task(services, RunRequest(task="people"), config=config)
    users = control.objects("users")
    control.update("users", users[0]["id"], {"jobTitle": "Chief Tester"})
    control.delete("users", users[1]["id"])
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.counts["users"].changed == 1
    assert record.counts["users"].removed == 1
    assert record.counts["users"].written == 149


async def test_full_run_compares_with_a_previous_view_that_has_no_digest_table(graph, control, services):
    """A view committed by an earlier version (or by a resumed run) has no table beside it: the comparison
    builds one from its lines, with the same counts."""
    config = task_config(graph.info)
    first = (await run_task(services, RunRequest(task="people"), config=config)).record
    services.extracts.delete_blob(digests.table_name(first.files["users"]))
    users = control.objects("users")
    control.update("users", users[0]["id"], {"jobTitle": "Chief Tester"})
    control.update("users", users[2]["id"], {"jobTitle": "Deputy Tester"})
    control.delete("users", users[1]["id"])
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert (record.counts["users"].changed, record.counts["users"].removed) == (2, 1)
    assert record.counts["users"].written == 149


async def test_users_query_filter_and_exclusions_apply(graph, control, services):
    users = [u for u in control.objects("users") if u.get("department")]
    department = users[0]["department"]
    excluded = next(u["id"] for u in users if u["department"] == department)
    config = task_config(
        graph.info,
        mappings_type="identity",
        users={"query": f"$filter=department eq '{department}'", "excluded_ids": [excluded]},
    )
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.status == "succeeded", record.error
    produced = await read_records(services, record.files["users"])
    wanted = {u["id"] for u in control.objects("users") if u.get("department") == department} - {excluded}
    assert set(produced) == wanted and wanted


async def test_advanced_query_with_headers_runs_and_without_fails_with_graphs_error(graph, control, services):
    query = "$count=true&$filter=endsWith(mail,'@contoso.example')"
    good = task_config(
        graph.info,
        mappings_type="identity",
        users={"query": query, "headers": {"ConsistencyLevel": "eventual"}},
    )
    record = (await run_task(services, RunRequest(task="people"), config=good)).record
    assert record.status == "succeeded", record.error
    wanted = {u["id"] for u in control.objects("users") if (u.get("mail") or "").endswith("@contoso.example")}
    assert set(await read_records(services, record.files["users"])) == wanted
    bad = task_config(graph.info, mappings_type="identity", users={"query": query})
    failed = (await run_task(services, RunRequest(task="people"), config=bad)).record
    assert failed.status == "failed"
    assert "Request_UnsupportedQuery" in failed.error and "request-id" in failed.error


async def test_include_and_exclude_by_group_membership(graph, control, services):
    groups = sorted(control.objects("groups"), key=lambda g: len(g["members"]), reverse=True)
    include, exclude = groups[3], groups[4]
    config = task_config(
        graph.info,
        mappings_type="identity",
        users={"include_members_of": [include["id"]], "exclude_members_of": [exclude["id"]]},
    )
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    users = {u["id"] for u in control.objects("users")}
    wanted = (set(include["members"]) - set(exclude["members"])) & users
    assert set(await read_records(services, record.files["users"])) == wanted and wanted


async def test_member_of_mapping_lists_each_users_groups(graph, control, services):
    config = task_config(
        graph.info,
        mappings_type="identity",
        users={
            "mappings": [
                {"external": "displayName", "local": "name"},
                {"external": "memberOf", "local": "groups"},
            ]
        },
    )
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.status == "succeeded", record.error
    produced = await read_records(services, record.files["users"])
    groups_of: dict[str, set[str]] = {}
    for group in control.objects("groups"):
        for member in group["members"]:
            groups_of.setdefault(member, set()).add(group["id"])
    for user_id, attributes in produced.items():
        assert attributes["groups"] == sorted(groups_of.get(user_id, ())), user_id


async def test_history_row_tells_what_happened(graph, services):
    config = task_config(graph.info)
    outcome = await run_task(services, RunRequest(task="people", trigger="cli"), config=config)
    stored = await services.history.get("people", outcome.record.run_id)
    assert stored.status == "succeeded" and stored.trigger == "cli" and stored.mode == "full"
    assert stored.started_at <= stored.completed_at
    assert stored.requests["http_calls"] >= 3 and stored.requests["batch_steps"] >= 20
    assert stored.files == outcome.record.files
    assert json.loads(json.dumps(stored.counts["users"].model_dump()))["written"] == 150
    listed = await services.history.list("people")
    assert [r.run_id for r in listed] == [outcome.record.run_id]


async def test_sign_in_activity_mapping_pages_at_graphs_limit_of_500(graph, control, services):
    config = task_config(graph.info, mappings_type="identity", users={"mappings": [
        {"external": "displayName", "local": "name"},
        {"external": "signInActivity.lastSignInDateTime", "local": "last_sign_in"}]})  # fmt: skip
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.status == "succeeded", record.error
    produced = await read_records(services, record.files["users"])
    wanted = {
        u["id"]: (u.get("signInActivity") or {}).get("lastSignInDateTime") for u in control.objects("users")
    }
    assert {i: a["last_sign_in"] for i, a in produced.items()} == wanted
