"""Custom objects, the generic REST call (templating and the URL guard), photos and task runs."""

from __future__ import annotations

import base64
import http.server
import io
import json
import ssl
import threading

import pytest
from PIL import Image, PngImagePlugin

from shared.activities import addresses, templates
from shared.activities.api import ActivityApi
from shared.config import parse_config
from shared.storage.tables import RunRecord
from tests.activities.conftest import activity_config

# ------------------------------------------------------------------------------------- custom objects


async def test_custom_objects_create_update_delete(call, control):
    status, body, _ = await call(
        "objects.create", {"task": "apps", "values": {"app_name": 'Payroll "EU"', "app_notes": "n1"}}
    )
    assert status == 201, body
    app_id = body["object_id"]
    app = control.get("applications", app_id)
    assert app["displayName"] == 'Payroll "EU"' and app["notes"] == "n1"
    status, body, _ = await call(
        "objects.update", {"task": "apps", "object": app_id, "values": {"app_notes": "n2"}}
    )
    assert status == 200, body
    assert control.get("applications", app_id)["notes"] == "n2"
    status, body, _ = await call("objects.delete", {"task": "apps", "object": app_id})
    assert status == 200, body
    assert all(a["id"] != app_id for a in control.objects("applications") if not a.get("deletedDateTime"))


async def test_custom_object_create_with_unknown_outcome_is_not_repeated(call, control):
    control.set_faults({"status": 504, "method": "POST", "path": "^/applications$", "count": 1})
    control.clear_requests()
    status, body, _ = await call("objects.create", {"task": "apps", "values": {"app_name": "Maybe"}})
    assert (
        status == 502
        and body["type"].endswith(":outcome-unknown")
        and "check before repeating" in body["exception"]
    )
    assert control.requests()["by_path"] == {"POST /applications": 1}


async def test_an_unknown_outcome_is_kept_for_its_idempotency_key(call, control):
    # A repeat with the same key gets the same answer: the POST, which Graph may have done, is not sent again.
    control.set_faults({"status": 504, "method": "POST", "path": "^/applications$", "count": 1})
    control.clear_requests()
    headers = {"Idempotency-Key": "maybe-app"}
    request = {"task": "apps", "values": {"app_name": "Maybe twice"}}
    first = await call("objects.create", request, headers)
    again = await call("objects.create", request, headers)
    assert first[0] == again[0] == 502 and again[1] == first[1] and again[2]["Idempotent-Replayed"] == "true"
    assert control.requests()["by_path"] == {"POST /applications": 1}


async def test_generic_post_without_an_answer_is_an_unknown_outcome_not_a_retry(call, control):
    control.set_faults({"status": 504, "method": "POST", "path": "^/applications$", "count": 1})
    control.clear_requests()
    status, body, headers = await call(
        "graph.call",
        {"task": "people", "method": "POST", "url": "/applications", "body": '{"displayName": "Maybe"}'},
    )
    assert status == 502 and body["type"].endswith(":outcome-unknown"), body
    assert "check before repeating" in body["exception"] and "Retry-After" not in headers
    assert control.requests()["by_path"] == {"POST /applications": 1}


async def test_custom_object_refused_by_graph_is_explained(call, control):
    before = len(control.objects("contacts"))
    status, body, _ = await call(
        "objects.create", {"task": "contacts", "values": {"contact_name": "Ext Partner"}}
    )
    assert 400 <= status < 500, body
    assert body["graph_code"] and "read-only in Microsoft Graph" in body["exception"]
    assert len(control.objects("contacts")) == before


async def test_custom_objects_need_an_object_class(call):
    status, body, _ = await call("objects.create", {"task": "people", "values": {"name": "x"}})
    assert status == 400 and "has no custom object class" in body["exception"]


# ---------------------------------------------------------------------------------- generic REST call


async def test_generic_patch_with_templates_in_url_and_body(call, control):
    user = next(u for u in control.objects("users") if not u.get("onPremisesSyncEnabled"))
    status, body, _ = await call(
        "graph.call",
        {
            "task": "people",
            "method": "PATCH",
            "url": "/users/$objectGUID$",
            "body": '{"jobTitle": "$title$", "officeLocation": "$manager:office$", "employeeId": $emp$}',
            "values": {
                "objectGUID": user["id"],
                "title": 'Lead "Ops"\nsecond line\\ "}, "accountEnabled": false, "x": "',
                "manager": {"office": "Room 4"},
                "emp": "E-17",
            },
        },
    )
    assert status == 200, body
    assert body["result"]["status_code"] == 204
    changed = control.get("users", user["id"])
    assert changed["jobTitle"] == 'Lead "Ops"\nsecond line\\ "}, "accountEnabled": false, "x": "'
    assert changed["accountEnabled"] == user["accountEnabled"]  # nothing injected
    assert changed["officeLocation"] == "Room 4" and changed["employeeId"] == "E-17"


async def test_generic_get_joins_base_query_and_returns_the_body(call, control):
    user = control.objects("users")[3]
    status, body, _ = await call(
        "graph.call",
        {
            "task": "apps",
            "method": "GET",
            "url": "$upn$?$$select=id,displayName",
            "values": {"upn": user["userPrincipalName"]},
        },
    )
    assert status == 200, body
    assert body["result"]["response"]["id"] == user["id"]
    assert set(body["result"]["response"]) == {"@odata.context", "id", "displayName"}


async def test_generic_filter_values_are_odata_escaped_inside_quotes(call, control):
    # A value inside a quoted OData literal has its ' doubled before it is percent-encoded (Graph decodes %27
    # back to ' before reading the filter): O'Brien matches, and a value cannot end the literal.
    named = next(u for u in control.objects("users") if "'" in (u.get("displayName") or ""))
    request = {
        "task": "people",
        "method": "GET",
        "url": "users?$filter=displayName%20eq%20'$name$'&$select=id",
    }
    status, body, _ = await call("graph.call", {**request, "values": {"name": named["displayName"]}})
    assert status == 200, body
    assert named["id"] in [u["id"] for u in body["result"]["response"]["value"]]
    injected = "nobody' or startswith(displayName,'"
    status, body, _ = await call("graph.call", {**request, "values": {"name": injected}})
    assert status == 200 and body["result"]["response"]["value"] == [], body


async def test_generic_call_reaches_a_guest_by_user_principal_name(call, control):
    # Graph needs the '#' of a guest's #EXT# UPN encoded as %23 in the path: allowed there.
    guest = next(u for u in control.objects("users") if "#EXT#" in u["userPrincipalName"])
    status, body, _ = await call(
        "graph.call",
        {
            "task": "people",
            "method": "GET",
            "url": "users/$upn$",
            "values": {"upn": guest["userPrincipalName"]},
        },
    )
    assert status == 200, body
    assert body["result"]["response"]["id"] == guest["id"]


async def test_generic_whole_body_from_one_attribute(call, control):
    user = next(u for u in control.objects("users") if not u.get("onPremisesSyncEnabled"))
    payload = json.dumps(
        {"onPremisesExtensionAttributes": {"extensionAttribute4": "EXT", "extensionAttribute9": "HR"}}
    )
    status, body, _ = await call(
        "graph.call",
        {"task": "people", "method": "PATCH", "url": f"users/{user['id']}", "body": "$generated$",
         "values": {"generated": payload}},
    )  # fmt: skip
    assert status == 200, body
    attributes = control.get("users", user["id"])["onPremisesExtensionAttributes"]
    assert attributes["extensionAttribute4"] == "EXT" and attributes["extensionAttribute9"] == "HR"


async def test_generic_call_passes_on_graphs_error(call):
    status, body, _ = await call(
        "graph.call", {"task": "people", "method": "GET", "url": "users/00000000-0000-4000-8000-000000000009"}
    )
    assert (
        status == 404 and body["graph_code"] == "Request_ResourceNotFound" and body["outcome"] == "Exception"
    )


class RedirectingGraph:
    """A real HTTPS server standing for a Graph host that answers every request with 302 to ``/elsewhere``
    (as Graph's report downloads do, to another host): records each request's path and Authorization."""

    def __init__(self, graph) -> None:
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append((self.path, self.headers.get("Authorization")))
                self.send_response(302)
                self.send_header("Location", f"https://127.0.0.1:{self.server.server_port}/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(graph.tls.server_cert_file, graph.tls.server_key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_a_redirect_from_graph_is_returned_not_followed(graph, control, services):
    redirecting = RedirectingGraph(graph)
    try:
        # A connector whose Graph host is that server (tokens from the local Graph, for an app exposing it).
        control.create(
            "applications", {"displayName": "Redirecting API", "identifierUris": [redirecting.url]}
        )
        data = activity_config(graph.info, control)
        data["connectors"][0]["graph_url"] = redirecting.url
        await services.config_store.save(parse_config(data))
        api = ActivityApi(services)
        answer = await api.handle(
            "graph.call", json.dumps({"task": "people", "method": "GET", "url": "reports/x"}).encode(), {}
        )
        assert answer.status == 200, answer.json
        assert answer.json["result"]["status_code"] == 302
        assert answer.json["result"]["location"] == f"{redirecting.url}/elsewhere"
        # One request, to the URL asked for; /elsewhere was never called (nor given the token).
        assert [path for path, _ in redirecting.seen] == ["/v1.0/reports/x"]
        assert redirecting.seen[0][1].startswith("Bearer ")
    finally:
        redirecting.close()
        await services.aclose()


HOSTILE_URLS = [
    "https://evil.example/v1.0/users",
    "https://{host}@evil.example/v1.0/users",
    "https://evil.example@{host}/v1.0/users",
    "//evil.example/users",
    "/\\evil.example/users",
    "https:\\\\evil.example/users",
    "users\\..\\..\\x",
    "http://{host}/v1.0/users",
    "https://{host}.evil.example/v1.0/users",
    "https://127.0.0.1.nip.io/v1.0/users",
    "https://0x7f.1/v1.0/users",
    "https://[::1]/v1.0/users",
    "https://2130706433/v1.0/users",
    "users/..%2f..%2fadmin",
    "users/%2e%2e/%2e%2e/beta/users",
    "users//x",
    "users/%252e%252e/x",
    "users/a%5cb",
    "users/x#frag",
    "users/x y",
    "users/\u00e9",
    "users?$filter=a%0d%0aHost:%20evil",
    "javascript:alert(1)",
    "https://{host}:444/v1.0/users",
    "https://{hostname}:0{port}/v1.0/users",  # the right port, spelled otherwise
    # The local Graph's own address (127.0.0.1) and port, in other spellings: never equal to the host.
    "https://[::ffff:127.0.0.1]:{port}/v1.0/users",
    "https://2130706433:{port}/v1.0/users",
    "https://0x7f.0.0.1:{port}/v1.0/users",
    "https://127.0.0.1.:{port}/v1.0/users",
    "https://127\u30020\u30020\u30021:{port}/v1.0/users",  # ideographic full stops (IDNA maps them to '.')
    "https://{host}%2F@evil.example/v1.0/users",
    "https://{host}/v1.0/users/%2e%2e%2fme",
    "ftp://{host}/v1.0/users",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
async def test_hostile_urls_are_refused_before_any_request(call, control, graph, url):
    host = graph.info.graph_url.removeprefix("https://")
    hostname, port = host.rsplit(":", 1)
    control.clear_requests()
    status, body, _ = await call(
        "graph.call",
        {"task": "people", "method": "GET", "url": url.format(host=host, hostname=hostname, port=port)},
    )
    assert status == 400, body
    assert body["errors"][0]["field"] == "url" and body["errors"][0]["message"].startswith("refused")
    assert control.requests()["http_calls"] == 0


async def test_a_value_cannot_change_the_host_or_path(call, control, graph):
    control.clear_requests()
    status, body, _ = await call(
        "graph.call",
        {
            "task": "people",
            "method": "GET",
            "url": "users/$id$",
            "values": {"id": "../../x?y=@evil.example/#"},
        },
    )
    # The value is percent-encoded into one path segment; its encoded '/' is then refused by the guard.
    assert status == 400 and body["errors"][0]["field"] == "url"
    assert control.requests()["http_calls"] == 0


def test_url_joining_rules():
    root = "https://graph.example"
    assert addresses.join(root, "", "users") == "https://graph.example/v1.0/users"
    assert addresses.join(root, "/users/", "/abc/") == "https://graph.example/v1.0/users/abc/"
    assert addresses.join(root, "users", "?$top=5") == "https://graph.example/v1.0/users?$top=5"
    assert addresses.join(root, "users", "") == "https://graph.example/v1.0/users"
    assert addresses.join(root, "x", "https://graph.example/beta/me") == "https://graph.example/beta/me"


def test_templates_encode_values_for_urls_and_json():
    values = {"a": "x/y?z=1&w", "b": 'q"u\\o\nte', "n": 5, "t": True, "ref:c": "R", "card": {"d": "D"}}
    assert templates.render_url("u/$a$/$ref:c$/$card:d$/$$ref", values) == "u/x%2Fy%3Fz%3D1%26w/R/D/$ref"
    quoted = templates.render_url("u?$filter=a%20eq%20'$q$'%20and%20b%20eq%20%27$q$%27&x=$q$", {"q": "O'B"})
    assert quoted == "u?$filter=a%20eq%20'O%27%27B'%20and%20b%20eq%20%27O%27%27B%27&x=O%27B"
    body = templates.render_body('{"s": "$b$", "n": $n$, "t": $t$, "raw": "$filter=$$x"}', values)
    assert body == {"s": 'q"u\\o\nte', "n": 5, "t": True, "raw": "$filter=$x"}
    with pytest.raises(templates.TemplateError) as missing:
        templates.render_url("users/$nope$/$a$/$other$", values)
    assert missing.value.codes == ["nope", "other"]
    with pytest.raises(templates.TemplateError):
        templates.render_body("$b$", values)  # a whole body must be JSON


# -------------------------------------------------------------------------------------------- photos


def image_bytes(fmt: str, size: tuple[int, int], mode: str = "RGB") -> bytes:
    """A photo-like image: a gradient with noise (JPEG), or a large smooth one (PNG), or a translucent one."""
    if mode == "RGBA":
        image = Image.new("RGBA", size, (0, 90, 200, 120))
    elif fmt == "JPEG":
        image = Image.effect_noise(size, 60).convert("RGB")
    else:
        gradient = Image.linear_gradient("L").resize(size)
        image = Image.merge(
            "RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90).resize(size), gradient)
        )
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


async def stored_photo(http, user_id: str) -> bytes:
    response = http.get(f"/users/{user_id}/photo/$value")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/jpeg"
    return response.content


@pytest.mark.parametrize(
    ("fmt", "size", "mode"),
    [("PNG", (1600, 1200), "RGB"), ("JPEG", (900, 900), "RGB"), ("PNG", (300, 200), "RGBA")],
)
async def test_photo_is_converted_to_a_jpeg_within_the_limit(call, control, http, fmt, size, mode):
    user = control.objects("users")[2]
    data = image_bytes(fmt, size, mode)
    status, body, _ = await call(
        "users.set-photo", {"task": "people", "user": user["id"], "photo": base64.b64encode(data).decode()}
    )
    assert status == 200, body
    stored = await stored_photo(http, user["id"])
    assert len(stored) <= 20000 and stored.startswith(b"\xff\xd8\xff")  # a JPEG's start of image
    with Image.open(io.BytesIO(stored)) as image:
        assert image.format == "JPEG" and max(image.size) <= 648
    assert body["result"]["bytes"] == len(stored) and body["result"]["source_format"] == fmt


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GIF89a" + b"\x00" * 100, "JPEG or PNG"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "PNG"),
        (b"\xff\xd8\xff\xe0" + b"garbage" * 50, "JPEG"),
        (b"\xff\xd8\xff" + b"\x00" * (4 * 1024 * 1024), "4,194,304"),
    ],
)
async def test_photo_that_is_not_a_usable_image_is_refused(call, control, data, reason):
    user = control.objects("users")[2]
    control.clear_requests()
    status, body, _ = await call(
        "users.set-photo", {"task": "people", "user": user["id"], "photo": base64.b64encode(data).decode()}
    )
    assert status == 400 and body["errors"][0]["field"] == "photo" and reason in body["errors"][0]["message"]
    assert control.requests()["http_calls"] == 0


async def test_a_png_bomb_is_refused_before_its_pixels_are_decoded(call, control, monkeypatch):
    # 4100x4100 transparent pixels in about 65 kB: decoding it would take over 100 MB.
    out = io.BytesIO()
    Image.new("RGBA", (4100, 4100)).save(out, format="PNG")
    assert len(out.getvalue()) < 100_000

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("the PNG's pixels were decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    user = control.objects("users")[2]
    control.clear_requests()
    status, body, _ = await call(
        "users.set-photo",
        {"task": "people", "user": user["id"], "photo": base64.b64encode(out.getvalue()).decode()},
    )
    assert status == 400, body
    assert body["errors"] == [
        {
            "field": "photo",
            "message": "the photo is 4100x4100 pixels; a PNG of at most 16,777,216 pixels is accepted",
        }
    ]
    assert control.requests()["http_calls"] == 0


async def test_photo_must_be_base64(call, control):
    status, body, _ = await call(
        "users.set-photo",
        {"task": "people", "user": control.objects("users")[0]["id"], "photo": "**not base64**"},
    )
    assert status == 400 and body["errors"] == [{"field": "photo", "message": "not base64"}]


# ----------------------------------------------------------------------------------------- task runs


async def test_run_task_answers_202_with_where_to_poll(call, services, handlers):
    status, body, headers = await call("tasks.run", {"task": "nightly"})
    assert status == 202, body
    run_id = body["run_id"]
    assert headers["Location"] == f"/api/v1/activities/tasks/runs/nightly/{run_id}" == body["poll"]
    message = services.queue.queue.receive_message()
    assert (
        json.loads(message.content)["run_id"] == run_id
        and json.loads(message.content)["trigger"] == "activity"
    )


async def test_run_task_waits_for_the_history_row(call, services):
    async def finish_the_run_meanwhile():
        import asyncio

        await asyncio.sleep(1.0)
        message = services.queue.queue.receive_message()
        request = json.loads(message.content)
        await services.history.put(
            RunRecord(task="nightly", run_id=request["run_id"], trigger="activity", status="succeeded")
        )

    import asyncio

    finisher = asyncio.create_task(finish_the_run_meanwhile())
    status, body, _ = await call("tasks.run", {"task": "nightly", "wait_seconds": 20})
    await finisher
    assert status == 200, body
    assert body["run_status"] == "succeeded" and body["poll"] is None


async def test_run_task_refuses_event_tasks_and_unknown_names(call):
    status, body, _ = await call("tasks.run", {"task": "people"})
    assert status == 400 and body["errors"][0]["field"] == "task"
    status, body, _ = await call("tasks.run", {"task": "nope"})
    assert status == 400 and body["errors"][0]["field"] == "task"


async def test_the_poll_url_follows_the_run_to_its_end(call, services, handlers):
    import azure.functions as func

    status, body, headers = await call("tasks.run", {"task": "nightly"})
    run_id = body["run_id"]

    async def poll(task: str, run: str) -> tuple[int, dict]:
        request = func.HttpRequest(
            method="GET",
            url=f"https://connector.example/api/v1/activities/tasks/runs/{task}/{run}",
            body=b"",
            route_params={"task": task, "run_id": run},
        )
        response = await handlers["activity_run_status"](request)
        return response.status_code, json.loads(response.get_body())

    status, body = await poll("nightly", run_id)
    assert status == 202 and body["run_status"] == "queued" and body["poll"] == headers["Location"]
    await services.history.put(RunRecord(task="nightly", run_id=run_id, trigger="activity", status="running"))
    assert (await poll("nightly", run_id))[1]["run_status"] == "running"
    await services.history.put(
        RunRecord(task="nightly", run_id=run_id, trigger="activity", status="failed", error="Graph said no")
    )
    status, body = await poll("nightly", run_id)
    assert status == 502 and body["outcome"] == "Exception" and "Graph said no" in body["exception"]
    status, body = await poll("nightly", "../../etc")
    assert status == 400 and body["errors"][0]["field"] == "run_id"
