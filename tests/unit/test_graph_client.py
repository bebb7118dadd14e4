"""The Graph client: Retry-After parsing, the retry table, the host guard, the page loop, $batch.

Against the local Graph (real HTTPS, real token) wherever a real server can show the behaviour; an
httpx.MockTransport only for what no well-behaved server does (a page loop that repeats a link, a nextLink
to another host).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from azure.core.credentials import AccessToken

from shared.credentials import build_credential
from shared.graph.auth import TokenProvider
from shared.graph.client import BatchStep, GraphClient, RequestStats
from shared.graph.errors import BadRequest, GraphError, PagingError, ServiceUnavailable, Throttled
from shared.retry import Action, RetryPolicy, classify, parse_retry_after, transient
from tests.support import task_config

# ------------------------------------------------------------------------------------ Retry-After


NOW = datetime(2026, 11, 28, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        (" 10 ", 10.0),
        ("2.128", 2.128),  # an older Graph doc example [docs/graph-behaviour.md section 5]
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),  # a past date: now
        ("soon", None),
        ("", None),
        (None, None),
        ("-3", None),  # negative: unreadable, so the client backs off (neither "now" nor "never")
        ("inf", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header, seconds):
    assert parse_retry_after(header, now=NOW) == seconds


# ------------------------------------------------------------------------------------ retry table

POLICY = RetryPolicy(backoff_base_s=1.0, backoff_cap_s=60.0)


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH", "DELETE"])
def test_429_is_retried_for_every_method_without_an_attempt_limit(method):
    assert POLICY.after_status(method, 429, 1, 7.0) == 7.0
    assert POLICY.after_status(method, 429, 500, 3.0) == 3.0
    backoff = POLICY.after_status(method, 429, 3, None)  # no Retry-After: exponential backoff
    assert 2.0 <= backoff <= 4.0


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap():
    for attempt, (low, high) in {1: (0.5, 1.0), 2: (1.0, 2.0), 4: (4.0, 8.0), 10: (30.0, 60.0)}.items():
        waits = {POLICY.backoff(attempt) for _ in range(50)}
        assert all(low <= w <= high for w in waits), (attempt, waits)
        assert len(waits) > 1  # jittered


def test_503_and_504_are_retried_for_idempotent_methods_only():
    for status in (503, 504):
        assert POLICY.after_status("GET", status, 1, 2.0) == 2.0
        assert POLICY.after_status("PATCH", status, 1, 2.0) == 2.0
        assert POLICY.after_status("DELETE", status, 1, 2.0) == 2.0
        assert POLICY.after_status("POST", status, 1, 2.0) is None  # a create's outcome is unknown
        assert POLICY.after_status("GET", status, 12, 2.0) == 2.0
        assert POLICY.after_status("GET", status, 13, 2.0) is None


def test_500_and_502_are_retried_a_few_times_for_get_only():
    for status in (500, 502):
        assert [POLICY.after_status("GET", status, n, 1.0) for n in range(1, 6)] == [1.0, 1.0, 1.0, 1.0, None]
        assert POLICY.after_status("PATCH", status, 1, 1.0) is None
        assert POLICY.after_status("POST", status, 1, 1.0) is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 412])
def test_client_errors_are_final(status):
    assert POLICY.after_status("GET", status, 1, 1.0) is None


def test_connection_failures_before_sending_are_retried_for_every_method():
    for error in (httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("busy")):
        assert POLICY.after_exception("POST", error, 1) is not None
        assert POLICY.after_exception("GET", error, 8) is not None
        assert POLICY.after_exception("GET", error, 9) is None


def test_failures_after_sending_are_retried_for_idempotent_methods_only():
    for error in (httpx.ReadTimeout("slow"), httpx.ReadError("reset"), httpx.RemoteProtocolError("eof")):
        assert POLICY.after_exception("GET", error, 1) is not None
        assert POLICY.after_exception("PATCH", error, 6) is not None
        assert POLICY.after_exception("GET", error, 7) is None
        assert POLICY.after_exception("POST", error, 1) is None


def test_min_wait_floors_a_zero_retry_after():
    assert RetryPolicy(min_wait_s=0.5).after_status("GET", 429, 1, 0.0) == 0.5


# ------------------------------------------------------------------------- against the local Graph


@pytest.fixture
def graph_shape():
    from localgraph.generate import TenantShape

    return TenantShape(users=60, seed=3)


@pytest.fixture
async def client(graph) -> AsyncIterator[GraphClient]:
    connector = task_config(graph.info).connector("local")
    environ = {
        "LOCALGRAPH_CLIENT_SECRET": graph.info.client_secret,
        "CONNECTOR_CA_BUNDLE": graph.info.ca_file,
    }
    tokens = TokenProvider(build_credential(connector, environ=environ), connector.scope)
    verify = ssl.create_default_context(cafile=graph.info.ca_file)
    async with GraphClient(connector.graph_root, tokens, verify=verify) as built:
        yield built


async def test_client_refuses_a_foreign_host_and_plain_http_to_its_own(client, control):
    control.clear_requests()
    with pytest.raises(BadRequest) as foreign:
        await client.send("GET", "https://evil.example/v1.0/users")
    assert foreign.value.code == "ForeignHost"
    with pytest.raises(BadRequest) as plain:
        await client.send("GET", client.base_url.replace("https://", "http://") + "/users")
    assert plain.value.code == "ForeignHost"
    assert control.requests()["http_calls"] == 0
    assert client.stats.http_calls == 0
    # Its own host over HTTPS, absolute or relative, is fine.
    absolute = await client.get_json(f"{client.base_url}/users", params={"$top": "1", "$select": "id"})
    relative = await client.get_json("users", params={"$top": "1", "$select": "id"})
    assert absolute["value"] == relative["value"] and len(relative["value"]) == 1


async def test_page_loop_continues_through_empty_pages_that_carry_a_next_link(client, control):
    control.settings(filter_scan_per_page=5)
    users = control.objects("users")
    wanted = users[len(users) // 2]
    pages = [
        page
        async for page in client.pages(
            "users",
            params={"$filter": f"userPrincipalName eq '{wanted['userPrincipalName']}'", "$select": "id"},
        )
    ]
    assert [item["id"] for page in pages for item in page.items] == [wanted["id"]]
    empty_with_link = [p for p in pages if not p.items and p.next_link]
    assert len(empty_with_link) >= 5  # 60 users scanned 5 at a time: most pages hold nothing
    assert pages[-1].next_link is None
    assert len(pages) == control.requests()["by_path"]["GET /users"]


async def test_throttled_request_is_retried_after_retry_after(client, control):
    control.set_faults({"status": 429, "retry_after": 1, "path": "^/users$", "count": 2})
    data = await client.get_json("users", params={"$select": "id"})
    assert len(data["value"]) == 60
    assert client.stats.throttled == 2 and client.stats.retries == 2
    assert client.stats.waited_s == 2.0
    assert control.requests()["statuses"] == {"200": 1, "429": 2}


async def test_throttling_that_outlasts_the_deadline_fails_at_once(client, control):
    control.set_faults({"status": 429, "retry_after": 120, "path": "^/users$", "count": 1})
    client.deadline = time.monotonic() + 30
    with pytest.raises(Throttled) as raised:
        await client.get_json("users")
    assert raised.value.status == 429 and raised.value.code == "TooManyRequests"
    assert raised.value.request_id  # Graph's request-id is kept for support cases
    assert client.stats.retries == 0


async def test_503_on_a_get_is_retried_and_on_a_post_is_not(client, control):
    control.set_faults({"status": 503, "retry_after": 0, "path": "^/users$", "count": 1})
    assert len((await client.get_json("users", params={"$select": "id"}))["value"]) == 60
    control.set_faults({"status": 503, "retry_after": 0, "path": "^/users$", "method": "POST", "count": 1})
    with pytest.raises(ServiceUnavailable) as raised:
        await client.send("POST", "users", json_body={"displayName": "x"})
    assert raised.value.status == 503 and raised.value.code == "ServiceUnavailable"
    assert control.requests()["by_path"]["POST /users"] == 1  # sent once, never re-sent


async def test_batch_refuses_more_than_20_steps_and_duplicate_ids(client, control):
    control.clear_requests()
    with pytest.raises(ValueError, match="at most 20"):
        await client.batch(BatchStep(str(i), "/users?$top=1") for i in range(21))
    with pytest.raises(ValueError, match="unique"):
        await client.batch([BatchStep("a", "/users?$top=1"), BatchStep("A", "/groups?$top=1")])
    assert control.requests()["http_calls"] == 0


async def test_batch_retries_throttled_steps_and_correlates_answers_by_id(client, control):
    users = control.objects("users")[:20]
    steps = [BatchStep(f"step-{i}", f"/users/{u['id']}?$select=id,displayName") for i, u in enumerate(users)]
    control.set_faults({"status": 429, "retry_after": 1, "path": "^/users/", "count": 5})
    results = await client.batch(steps)
    assert set(results) == {s.id for s in steps}
    for step, user in zip(steps, users, strict=True):
        result = results[step.id]
        assert result.status == 200
        assert result.body["id"] == user["id"] and result.body["displayName"] == user["displayName"]
    assert client.stats.throttled == 5
    assert client.stats.batch_calls == 2 and client.stats.batch_steps == 25  # 20, then the 5 throttled
    assert client.stats.retries == 1 and client.stats.waited_s == 1.0  # one wait for the whole round
    summary = control.requests()
    assert summary["batched_by_path"]["GET /users/{id}"] == 25
    assert summary["statuses"]["429"] == 5


async def test_batch_of_reads_is_resent_when_the_envelope_gets_503(client, control):
    users = control.objects("users")[:3]
    control.set_faults({"status": 503, "retry_after": 0, "path": r"^/\$batch$", "count": 1})
    results = await client.batch(BatchStep(u["id"], f"/users/{u['id']}?$select=id") for u in users)
    assert {k: r.body["id"] for k, r in results.items()} == {u["id"]: u["id"] for u in users}
    assert control.requests()["by_path"]["POST /$batch"] == 2


async def test_a_401_renews_the_token_once(client, control):
    await client.get_json("users", params={"$top": "1"})
    # A token the client still thinks fresh but Graph rejects (revoked, signing key rolled): here one
    # whose signature is broken. One 401, the token is dropped, a new one is taken, the call succeeds.
    client.tokens._token = client.tokens._token._replace(token=client.tokens._token.token[:-4] + "AAAA")
    data = await client.get_json("users", params={"$top": "1"})
    assert len(data["value"]) == 1
    assert client.stats.by_status[401] == 1
    assert client.tokens.acquisitions == 2


async def test_logged_graph_errors_name_no_upn_but_the_history_keeps_the_message(client, caplog):
    """Graph's message can name the user ("Resource 'jo@…' does not exist"): the text logged for it (and the
    failure event) leaves UPN-like tokens out, as logged URLs do; str() keeps it for the run history."""
    import logging

    from shared.delivery.failures import log_failure
    from shared.graph.errors import NotFound

    upn = "nobody.here@contoso-test.example"
    with pytest.raises(NotFound) as missing:
        await client.get_json(f"users/{upn}")
    error = missing.value
    assert upn in error.message and upn in str(error)  # what the history shows administrators
    assert upn not in error.redacted() and "nobody" not in error.redacted()
    assert error.redacted().startswith("404 Request_ResourceNotFound: ")
    caplog.set_level(logging.ERROR, logger="shared.delivery.failures")
    log_failure("people", "r1", "failed", f"{type(error).__name__}: {error}")
    [event] = caplog.records
    assert upn not in event.getMessage() and upn not in event.error_text
    assert "Request_ResourceNotFound" in event.error_text


async def test_a_client_replaced_by_a_connector_edit_closes_once_its_last_caller_is_done(
    services, graph, monkeypatch
):
    import shared.graph.client

    monkeypatch.setattr(shared.graph.client, "RETIRE_GRACE_S", 0.2)
    connector = task_config(graph.info).connector("local")
    old = services.graph(connector)
    async with old.context():
        await old.get_json("users", params={"$top": "1"})
        edited = connector.model_copy(update={"id": "local-connector-edited"})
        new = services.graph(edited)
        assert new is not old and new.tokens is not old.tokens
        await asyncio.sleep(0.4)  # the grace has passed, but this caller still uses the old client
        assert not old.closed
        assert len((await old.get_json("users", params={"$top": "1"}))["value"]) == 1
    assert old.closed  # the last caller left after the grace
    assert len((await new.get_json("users", params={"$top": "1"}))["value"]) == 1
    # A replaced client nobody uses closes when the grace ends (a caller handed it may not be in yet).
    newer = services.graph(connector)
    assert newer is not new and not new.closed
    await asyncio.sleep(0.4)
    assert new.closed and not newer.closed


class ClosingCredential:
    """A real credential that records whether it was closed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.closed = False

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        assert not self.closed, "a closed credential was asked for a token"
        return self.inner.get_token(*scopes, **kwargs)

    def close(self) -> None:
        self.closed = True
        self.inner.close()


async def test_a_credential_rebuilt_after_a_401_closes_the_old_one(graph, control):
    connector = task_config(graph.info).connector("local")
    environ = {
        "LOCALGRAPH_CLIENT_SECRET": graph.info.client_secret,
        "CONNECTOR_CA_BUNDLE": graph.info.ca_file,
    }
    built: list[ClosingCredential] = []

    def credential() -> ClosingCredential:
        built.append(ClosingCredential(build_credential(connector, environ=environ)))
        return built[-1]

    tokens = TokenProvider(credential(), connector.scope, renew=credential)
    verify = ssl.create_default_context(cafile=graph.info.ca_file)
    async with GraphClient(connector.graph_root, tokens, verify=verify) as client:
        await client.get_json("users", params={"$top": "1"})
        tokens._token = tokens._token._replace(token=tokens._token.token[:-4] + "AAAA")  # Graph refuses it
        await client.get_json("users", params={"$top": "1"})
        assert client.stats.by_status[401] == 1
    assert [c.closed for c in built] == [True, False]
    await tokens.close()
    assert built[-1].closed


# ------------------------------------------------------------------ what no real server does: mocks


class StaticCredential:
    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken("static-token", int(time.time()) + 3600)


def mock_client(handler) -> GraphClient:
    tokens = TokenProvider(StaticCredential(), "https://graph.test/.default")
    return GraphClient("https://graph.test", tokens, transport=httpx.MockTransport(handler))


async def test_page_loop_raises_when_the_service_repeats_a_link():
    loop = "https://graph.test/v1.0/users?$skiptoken=again"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"value": [{"id": str(request.url)}], "@odata.nextLink": loop})

    seen = []
    async with mock_client(handler) as client:
        with pytest.raises(PagingError) as raised:
            async for page in client.pages("users"):
                seen.append(page)
    assert raised.value.code == "PagingLoop"
    assert len(seen) == 2  # the first page and the loop's first visit; the repeat is refused


async def test_page_loop_refuses_a_next_link_to_another_host_and_never_sends_the_token_there():
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(
            200,
            json={"value": [{"id": "1"}], "@odata.nextLink": "https://evil.example/v1.0/users?$skiptoken=x"},
        )

    async with mock_client(handler) as client:
        with pytest.raises(BadRequest) as raised:
            async for _ in client.pages("users"):
                pass
    assert raised.value.code == "ForeignHost"
    assert [r.url.host for r in sent] == ["graph.test"]


async def test_batch_answers_missing_a_step_fail_the_batch():
    def handler(request: httpx.Request) -> httpx.Response:
        steps = json.loads(request.content)["requests"]
        return httpx.Response(200, json={"responses": [{"id": steps[0]["id"], "status": 200, "body": {}}]})

    async with mock_client(handler) as client:
        with pytest.raises(ServiceUnavailable) as raised:
            await client.batch([BatchStep("1", "/users/a"), BatchStep("2", "/users/b")])
    assert raised.value.code == "BatchIncomplete"


async def test_an_untrusted_server_certificate_fails_at_once(graph):
    """TLS verification failures are not transient: no retry, a clear error naming the cause."""
    from localgraph.client import credential
    from shared.graph.auth import TokenProvider
    from shared.graph.client import GraphClient
    from shared.graph.errors import ServiceUnavailable

    tokens = TokenProvider(credential(graph.info), f"{graph.info.graph_url}/.default")
    async with GraphClient(graph.info.graph_url, tokens, verify=True) as client:  # the system store only
        with pytest.raises(ServiceUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get_json("/users")
        assert client.stats.retries == 0


async def test_concurrent_callers_sharing_one_client_keep_their_own_statistics_and_deadlines():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/throttled"):
            return httpx.Response(
                429, headers={"Retry-After": "120"}, json={"error": {"code": "TooManyRequests"}}
            )
        return httpx.Response(200, json={"value": []})

    async def reader(client: GraphClient, calls: int) -> RequestStats:
        async with client.context(deadline=time.monotonic() + 3600) as call:
            await asyncio.gather(*(client.get_json("users") for _ in range(calls)))  # child tasks count too
            return call.stats

    async def impatient(client: GraphClient) -> RequestStats:
        async with client.context(deadline=time.monotonic() + 5) as call:
            with pytest.raises(Throttled):
                await client.get_json("throttled")  # Retry-After outlasts this caller's deadline only
            return call.stats

    async with mock_client(handler) as client:
        first, second, third = await asyncio.gather(reader(client, 3), reader(client, 1), impatient(client))
    assert (first.http_calls, second.http_calls, third.http_calls) == (3, 1, 1)
    assert third.throttled == 1 and third.retries == 0 and first.throttled == 0
    assert client.stats.http_calls == 0  # nothing was made outside a context


async def test_a_token_acquisition_counts_for_the_caller_that_made_it_only():
    """A run's history says how many tokens *it* acquired, not how many the shared client has since the
    process started (another run's renewals included)."""
    tokens = TokenProvider(StaticCredential(), "https://graph.test/.default")
    handler = lambda request: httpx.Response(200, json={"value": []})  # noqa: E731
    async with GraphClient("https://graph.test", tokens, transport=httpx.MockTransport(handler)) as client:
        async with client.context() as first:
            await client.get_json("users")  # acquires the token
        async with client.context() as second:
            await client.get_json("users")  # the token is still fresh
            tokens.invalidate(await tokens.token())
            await client.get_json("users")  # acquires a new one
    assert tokens.acquisitions == 2
    assert (first.stats.token_acquisitions, second.stats.token_acquisitions) == (1, 1)
    assert first.stats.as_dict()["token_acquisitions"] == 1


@pytest.mark.parametrize(
    ("method", "status", "action"),
    [
        ("GET", 429, Action.RETRY),
        ("POST", 429, Action.RETRY),
        ("GET", 503, Action.RETRY),
        ("POST", 503, Action.LOOKUP),  # the server may have acted: look the object up, never re-send
        ("GET", 404, Action.NONE),
        ("GET", 400, Action.FIX),
        ("GET", 403, Action.FIX),
    ],
)
async def test_the_retry_table_decides_the_action_callers_see(method, status, action):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, headers={"Retry-After": "0"}, json={"error": {"code": "X", "message": "m"}}
        )

    async with mock_client(handler) as client:
        client.deadline = time.monotonic() - 1  # no time left: the first answer is the last
        with pytest.raises(GraphError) as raised:
            await client.send(method, "users")
    assert raised.value.action is action
    assert classify(raised.value) is action


def test_storage_and_identity_errors_are_classified_by_the_same_table():
    from azure.core.exceptions import HttpResponseError, ServiceRequestError

    def storage_error(status: int) -> HttpResponseError:
        error = HttpResponseError(message="storage said no")
        error.status_code = status
        return error

    assert classify(ServiceRequestError("unreachable")) is Action.RETRY
    assert classify(storage_error(503)) is Action.RETRY and classify(storage_error(409)) is Action.FIX
    assert transient(storage_error(500)) and not transient(storage_error(412))
    assert classify(ValueError("a bug")) is Action.FIX


async def test_the_next_page_is_requested_before_the_caller_is_done_with_the_current_one():
    """Pages are a chain of round trips: while the caller works on a page, the next one is on its way."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        number = int(request.url.params.get("$skiptoken", "0"))
        body: dict = {"value": [{"id": str(number)}]}
        if number < 2:
            body["@odata.nextLink"] = f"https://graph.test/v1.0/users?$skiptoken={number + 1}"
        return httpx.Response(200, json=body)

    requested_while_held = []
    async with mock_client(handler) as client:
        ids = []
        async for page in client.pages("users"):
            await asyncio.sleep(0.05)  # the caller's work on this page (staging it, a stop check)
            requested_while_held.append(len(sent))
            ids += [item["id"] for item in page.items]
    assert ids == ["0", "1", "2"]
    assert requested_while_held == [2, 3, 3]  # pages 1 and 2 were requested while 0 and 1 were held
    assert len(sent) == 3  # and nothing beyond the last page


async def test_a_caller_that_stops_early_abandons_the_page_read_ahead_quietly():
    def handler(request: httpx.Request) -> httpx.Response:
        if "$skiptoken" in str(request.url):
            return httpx.Response(
                404, json={"error": {"code": "Request_ResourceNotFound", "message": "gone"}}
            )
        return httpx.Response(
            200,
            json={"value": [{"id": "1"}], "@odata.nextLink": "https://graph.test/v1.0/users?$skiptoken=1"},
        )

    loop = asyncio.get_running_loop()
    unhandled: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        async with mock_client(handler) as client:
            async with contextlib.aclosing(client.pages("users")) as pages:
                async for page in pages:
                    assert page.items == [{"id": "1"}]
                    break
            await asyncio.sleep(0.05)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert unhandled == []  # the read-ahead's 404 was nobody's: no "exception was never retrieved"
