"""Admin operations against Azurite and the local Graph: run now and history, overview statuses, test
connection (token, one read, roles against each feature's needs), authentication tasks (may this user sign in,
the sign-in configuration), event tasks in use by workflows need force, operations not in this build say so."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from shared.activities.api import ActivityApi
from shared.extract.runner import run_task
from shared.runs import RunRequest


async def _id(client, name):
    tasks = (await client.get("/v1/tasks", params={"name": name})).json()["value"]
    return next(t for t in tasks if t["name"] == name)


async def test_run_now_queues_and_history_shows_the_run_with_its_details(client, stored):
    task = await _id(client, "people")
    overview = (await client.get("/v1/overview")).json()
    assert overview["value"][0]["tasks"][0]["status"] == "not scheduled"  # on demand only, never run
    queued = await client.post(f"/v1/tasks/{task['id']}/run")
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    run_id = queued.json()["run_id"]
    assert (await client.get("/v1/overview")).json()["value"][0]["tasks"][0]["status"] == "waiting"
    [message] = stored.storage.queues.get_queue_client(stored.settings.runs_queue).receive_messages()
    request = RunRequest.model_validate_json(message.content)
    assert (request.task, request.run_id, request.trigger) == ("people", run_id, "api")
    await run_task(stored, request)  # what the queue-triggered function does with it
    history = (await client.get(f"/v1/tasks/{task['id']}/runs")).json()["value"]
    assert [(r["run_id"], r["status"]) for r in history] == [(run_id, "succeeded")]
    run = (await client.get(f"/v1/tasks/{task['id']}/runs/{run_id}")).json()
    assert run["counts"]["users"]["written"] == 60 and set(run["files"]) == {"users", "groups"}
    connector = (await client.get("/v1/overview")).json()["value"][0]
    assert connector["status"] == "ok" and connector["counts"] == {
        "scheduled": 1,
        "event": 0,
        "authentication": 0,
    }
    # The page's file download serves the committed output.
    download = await client.get(f"/tasks/{task['id']}/runs/{run_id}/files/users")
    assert download.status_code == 200 and len(download.text.splitlines()) == 60


async def test_test_connection_shows_roles_against_feature_needs(client, control, stored, graph):
    connector = (await client.get("/v1/connectors")).json()["value"][0]
    result = (await client.post(f"/v1/connectors/{connector['id']}/test")).json()
    assert result["token"]["ok"] and result["read"]["ok"]
    assert "Directory.ReadWrite.All" in result["roles"]
    assert {f["feature"] for f in result["features"]} == {"read users", "read groups and their members"}
    assert all(f["granted"] for f in result["features"])
    # An app registration with users only: the group feature shows as not granted.
    weak = control.add_app(["User.Read.All"])
    stored.environ["WEAK_SECRET"] = weak["client_secret"]
    definition = {
        **connector["definition"],
        "client_id": weak["client_id"],
        "credential": {"type": "client_secret", "secret": {"app_setting": "WEAK_SECRET"}},
    }
    await client.put(
        f"/v1/connectors/{connector['id']}", json=definition, headers={"If-Match": connector["etag"]}
    )
    result = (await client.post(f"/v1/connectors/{connector['id']}/test")).json()
    assert result["roles"] == ["User.Read.All"]
    granted = {f["feature"]: f["granted"] for f in result["features"]}
    assert granted == {"read users": True, "read groups and their members": False}


async def test_test_connection_reports_a_refused_credential(client, stored):
    stored.environ["LOCALGRAPH_CLIENT_SECRET"] = "wrong"
    connector = (await client.get("/v1/connectors")).json()["value"][0]
    result = (await client.post(f"/v1/connectors/{connector['id']}/test")).json()
    assert result["token"]["ok"] is False and "7000215" in result["token"]["error"]


async def test_authentication_task_decides_sign_in_through_transitive_groups_and_filters(client, control):
    users = [
        u
        for u in control.objects("users")
        if u.get("accountEnabled") and "#EXT#" not in u["userPrincipalName"]
    ]
    inside, outside = users[0], users[1]
    disabled = next(u for u in control.objects("users") if u.get("accountEnabled") is False)
    parent = control.create(
        "groups",
        {
            "displayName": "Sign-in allowed",
            "mailEnabled": False,
            "mailNickname": "signin",
            "securityEnabled": True,
        },
    )
    nested = control.create(
        "groups",
        {
            "displayName": "Nested team",
            "mailEnabled": False,
            "mailNickname": "nested",
            "securityEnabled": True,
        },
    )
    control.members(parent["id"], add=[nested["id"]])
    control.members(nested["id"], add=[inside["id"], disabled["id"]])
    created = await client.post(
        "/v1/tasks",
        json={
            "usage": "authentication", "name": "staff-sign-in", "connector": "local", "protocol": "saml2",
            "realm": "staff", "users": {"filter": "accountEnabled eq true"}, "groups": {"member_of": [parent["id"]]},
        },
    )  # fmt: skip
    assert created.status_code == 201, created.text
    id = created.json()["id"]

    async def check(user):
        answer = await client.post(f"/v1/tasks/{id}/sign-in-check", json={"user": user})
        assert answer.status_code == 200, answer.text
        return answer.json()

    allowed = await check(inside["userPrincipalName"])
    assert allowed["allowed"] is True and allowed["user"]["id"] == inside["id"]
    not_member = await check(outside["id"])
    assert not_member["allowed"] is False and "not a member" in not_member["reason"]
    filtered = await check(disabled["id"])
    assert filtered["allowed"] is False and "user filter" in filtered["reason"]
    missing = await check("nobody@" + inside["userPrincipalName"].split("@")[1])
    assert missing["allowed"] is False and "no user" in missing["reason"]

    configuration = (await client.get(f"/v1/tasks/{id}/sign-in-configuration")).json()
    tenant = configuration["tenant_id"]
    assert configuration["protocol"] == "saml2" and configuration["realm"] == "staff"
    assert configuration["metadata_url"].endswith(
        f"/{tenant}/federationmetadata/2007-06/federationmetadata.xml"
    )
    assert configuration["issuer"] == f"https://sts.windows.net/{tenant}/"  # the connector's cloud is global


async def test_event_task_called_recently_needs_force_to_delete_or_change_usage(client, stored):
    body = {
        "usage": "event", "name": "provisioning", "connector": "local", "mappings_type": "identity",
        "users": {"mappings": [{"local": "login", "external": "userPrincipalName"}]},
    }  # fmt: skip
    created = await client.post("/v1/tasks", json=body)
    assert created.status_code == 201, created.text
    id, etag = created.json()["id"], created.headers["etag"]
    usage = await ActivityApi(stored).usage()
    await usage.record("provisioning", "users.create", 200, datetime.now(UTC))
    overview = (await client.get("/v1/overview")).json()["value"][0]
    [event] = [t for t in overview["tasks"] if t["usage"] == "event"]
    assert event["calls"][0]["activity"] == "users.create" and event["calls"][0]["calls"] == 1
    changed = await client.put(
        f"/v1/tasks/{id}",
        json={**body, "mappings_type": "access", "users": None, "groups": body["users"]},
        headers={"If-Match": etag},
    )
    assert changed.status_code == 409 and "force" in changed.json()["detail"]
    rename = await client.put(
        f"/v1/tasks/{id}", json={**body, "name": "provisioning-2"}, headers={"If-Match": etag}
    )
    assert (
        rename.status_code == 409 and "changing its name" in rename.json()["detail"]
    )  # workflows call it by name
    refused = await client.delete(f"/v1/tasks/{id}", headers={"If-Match": etag})
    assert refused.status_code == 409 and "called by workflows" in refused.json()["detail"]
    forced = await client.delete(f"/v1/tasks/{id}", params={"force": "true"}, headers={"If-Match": etag})
    assert forced.status_code == 204


async def test_stop_mid_run_records_stopped_and_leaves_output_and_state_as_they_were(client, stored, control):
    task = await _id(client, "people")
    assert (await client.post(f"/v1/tasks/{task['id']}/stop")).status_code == 409  # nothing is running
    first = (await run_task(stored, RunRequest(task="people"))).record
    state_before = await stored.state.get("people")
    latest_before = stored.extracts.get_blob_client("people/latest.json").download_blob().readall()
    # A slow tenant and small pages: the next run reads page after page.
    paged = {**task["definition"], "users": {**task["definition"]["users"], "query": "$top=2"}}
    etag = (await client.get(f"/v1/tasks/{task['id']}")).headers["etag"]
    assert (
        await client.put(f"/v1/tasks/{task['id']}", json=paged, headers={"If-Match": etag})
    ).status_code == 200
    control.settings(latency_ms=150)
    running = asyncio.create_task(run_task(stored, RunRequest(task="people")))
    for _ in range(200):
        history = (await client.get(f"/v1/tasks/{task['id']}/runs")).json()["value"]
        if history[0]["status"] == "running":
            break
        await asyncio.sleep(0.05)
    asked = await client.post(f"/v1/tasks/{task['id']}/stop")
    assert asked.status_code == 202 and asked.json()["run_id"] == history[0]["run_id"]
    stopped = (await asyncio.wait_for(running, 60)).record
    assert stopped.status == "stopped" and "stopped by an administrator" in stopped.error
    assert stopped.counts == {} and stopped.files == {}  # nothing committed
    # Output and state exactly as the last good run left them; no checkpoint left behind.
    assert stored.extracts.get_blob_client("people/latest.json").download_blob().readall() == latest_before
    state_after = await stored.state.get("people")
    assert state_after.view == state_before.view and state_after.checkpoint is None
    assert (await client.get("/v1/overview")).json()["value"][0]["tasks"][0]["status"] == "stopped"
    control.settings(latency_ms=0)
    again = (await run_task(stored, RunRequest(task="people"))).record  # the next run is unaffected
    assert again.status == "succeeded" and again.counts["users"].written == first.counts["users"].written


async def test_held_run_shows_as_held_and_approval_releases_it_then_clear_cache_resends(
    client, stored, control, graph
):
    task = await _id(client, "people")
    users = {**task["definition"]["users"], "deletion_marking": {"attribute": "status", "value": "Deleted"}}
    guarded = {**task["definition"], "users": users, "delivery": {"deletion_guard": {"max_marks": 2}}}
    answer = await client.put(f"/v1/tasks/{task['id']}", json=guarded, headers={"If-Match": task["etag"]})
    assert answer.status_code == 200, answer.text
    await run_task(stored, RunRequest(task="people"))
    for user in control.objects("users")[:3]:
        control.delete("users", user["id"])
    held = (await run_task(stored, RunRequest(task="people"))).record
    assert held.status == "held", held.load.model_dump()
    overview = (await client.get("/v1/overview")).json()["value"][0]
    assert overview["tasks"][0]["status"] == "held" and overview["status"] == "held"
    wrong = await client.post(f"/v1/tasks/{task['id']}/runs/20261130T000000Z-000000/approve")
    assert wrong.status_code == 409 and "is not held" in wrong.json()["detail"]
    approved = await client.post(f"/v1/tasks/{task['id']}/runs/{held.run_id}/approve")
    assert approved.status_code == 202, approved.text
    run = (await client.get(f"/v1/tasks/{task['id']}/runs/{held.run_id}")).json()
    assert run["status"] == "succeeded" and run["load"]["status"] == "succeeded"
    assert (await client.get("/v1/overview")).json()["value"][0]["tasks"][0]["status"] == "ok"
    # Clearing the cache: the next run delivers every record once again.
    assert (await client.post(f"/v1/tasks/{task['id']}/clear-cache")).status_code == 204
    after = (await run_task(stored, RunRequest(task="people"))).record
    assert after.load.counts["upserts"] == after.counts["users"].written + after.counts["groups"].written


async def test_a_runs_own_log_lines_are_kept_with_it_and_downloadable(client, stored, caplog):
    import logging

    caplog.set_level(logging.INFO)
    task = await _id(client, "people")
    good = (await run_task(stored, RunRequest(task="people"))).record
    stored.environ["LOCALGRAPH_CLIENT_SECRET"] = "wrong"
    stored._tokens.clear()  # the next run builds its credential again, with the wrong secret
    stored._graphs.clear()
    bad = (await run_task(stored, RunRequest(task="people"))).record
    assert bad.status == "failed"
    log = await client.get(f"/v1/tasks/{task['id']}/runs/{bad.run_id}/log")
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")
    assert "run failed" in log.text and "7000215" in log.text and "--- attempt ended" in log.text
    assert "wrong" not in log.text  # the secret's value never appears
    kept = (await client.get(f"/v1/tasks/{task['id']}/runs/{good.run_id}/log")).text
    assert "plan:" in kept and "run failed" not in kept  # each run keeps only its own lines
    page = await client.get(f"/tasks/{task['id']}/runs/{bad.run_id}")
    assert "run failed" in page.text and "Download the run" in page.text


async def test_renaming_a_task_keeps_its_history_state_and_output(client, stored, graph):
    task = await _id(client, "people")
    first = (await run_task(stored, RunRequest(task="people"))).record
    renamed = {**task["definition"], "name": "staff", "mode": "full"}
    answer = await client.put(f"/v1/tasks/{task['id']}", json=renamed, headers={"If-Match": task["etag"]})
    assert answer.status_code == 200, answer.text
    second = (await run_task(stored, RunRequest(task="staff"))).record  # the queue names tasks by name
    assert second.status == "succeeded" and second.task == first.task == task["id"]
    history = (await client.get(f"/v1/tasks/{task['id']}/runs")).json()["value"]
    assert [r["run_id"] for r in history] == [second.run_id, first.run_id]
    # The state went on from the first run: the groups did not change (the users' records carry the task's
    # new name in their task attribute, so they did).
    assert second.counts["groups"].changed == 0 and second.counts["users"].changed == 60
    assert (await stored.state.get(task["id"])).view.run_id == second.run_id
    # A task created here gets a GUID as id; its runs, files and history are under that id.
    created = await client.post(
        "/v1/tasks", json={**{k: v for k, v in renamed.items() if k != "id"}, "name": "contractors"}
    )
    new_id = created.json()["id"]
    record = (await run_task(stored, RunRequest(task="contractors"))).record
    assert record.task == new_id and record.files["users"].startswith(f"{new_id}/runs/{record.run_id}/")
    assert (await client.get(f"/v1/tasks/{new_id}/runs")).json()["value"][0]["run_id"] == record.run_id


async def test_stop_during_a_delta_round_keeps_the_delta_links(client, stored):
    from shared.runs import new_run_id
    from shared.storage.stops import StopRequests

    task = await _id(client, "people")
    incremental = {**task["definition"], "mode": "incremental"}
    assert (
        await client.put(f"/v1/tasks/{task['id']}", json=incremental, headers={"If-Match": task["etag"]})
    ).status_code == 200
    assert (await run_task(stored, RunRequest(task="people"))).record.status == "succeeded"
    before = await stored.state.get(task["id"])
    run_id = new_run_id()
    await StopRequests(stored.state.table).request(task["id"], run_id)  # asked before its first page
    stopped = (await run_task(stored, RunRequest(task="people", run_id=run_id))).record
    assert stopped.status == "stopped" and stopped.files == {}
    after = await stored.state.get(task["id"])
    assert after.delta_links == before.delta_links and after.view == before.view and after.checkpoint is None
    assert not await StopRequests(stored.state.table).requested(task["id"], run_id)  # the request is used up
    assert (await run_task(stored, RunRequest(task="people"))).record.mode == "incremental"


async def test_the_environment_type_is_shown_read_only_with_how_to_change_it(client, stored):
    """Settings: the environment type is the ENVIRONMENT_TYPE app setting, which the alert rules' severities
    are deployed from too, so the page shows it and says how to change it (the deployment), with no form."""
    answer = (await client.get("/v1/settings")).json()
    assert answer["environment_type"] == stored.settings.environment_type
    assert answer["environment_types"] == ["test", "prod", "demo", "dev"]
    assert "azd env set ENVIRONMENT_TYPE" in answer["how_to_change"]
    assert "azd provision" in answer["how_to_change"] and "alert" in answer["how_to_change"]
    page = await client.get("/settings")
    assert page.status_code == 200
    assert f"<strong>{stored.settings.environment_type}</strong>" in page.text
    assert (
        "azd env set ENVIRONMENT_TYPE" in page.text
        and "would make telemetry and the alerts disagree" in page.text
    )
    assert "<form" not in page.text.split("<h1>Settings</h1>", 1)[1]  # nothing on the page changes it


async def test_a_disabled_task_runs_now_only_when_forced(client, stored):
    """The API and the page refuse to run a disabled task unless forced; forced, the run request carries
    force and the runner runs it (the CLI's ``enqueue --force`` does the same)."""
    from urllib.parse import parse_qs, urlsplit

    task = await _id(client, "people")
    disabled = {**task["definition"], "enabled": False}
    changed = await client.put(f"/v1/tasks/{task['id']}", json=disabled, headers={"If-Match": task["etag"]})
    assert changed.status_code == 200, changed.text
    refused = await client.post(f"/v1/tasks/{task['id']}/run")
    assert refused.status_code == 409 and "disabled" in refused.json()["detail"]
    page = await client.get(f"/tasks/{task['id']}")
    run_form = page.text.split("Run now")[0].rsplit("<form", 1)[1]
    assert 'name="force"' in run_form
    not_forced = await client.post(f"/tasks/{task['id']}/run", data={})
    assert not_forced.status_code == 303
    assert "disabled" in parse_qs(urlsplit(not_forced.headers["location"]).query)["error"][0]
    queue = stored.storage.queues.get_queue_client(stored.settings.runs_queue)
    assert list(queue.receive_messages()) == []  # neither refusal queued anything
    forced = await client.post(f"/v1/tasks/{task['id']}/run", params={"force": "true"})
    assert forced.status_code == 202 and forced.json()["status"] == "queued"
    by_page = await client.post(f"/tasks/{task['id']}/run", data={"force": "on"})
    assert by_page.status_code == 303 and "queued" in by_page.headers["location"]
    requests = [
        RunRequest.model_validate_json(m.content) for m in queue.receive_messages(messages_per_page=5)
    ]
    assert len(requests) == 2 and forced.json()["run_id"] in {r.run_id for r in requests}
    assert all(r.force and not r.full_resync for r in requests)
    outcome = await run_task(stored, requests[0])
    assert outcome.record.status == "succeeded"  # not skipped as disabled
