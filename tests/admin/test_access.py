"""Who gets in: administrators only. App Service authentication's principal header is trusted only where the
platform says authentication is on; a caller without the app role gets 403; development mode refuses to start
on an Azure host; the Functions routes carry the auth levels that make the host demand the admin key."""

from __future__ import annotations

import base64
import json

import azure.functions as func
import httpx
import pytest

from shared.admin.access import ADMIN_ROLE, Access, DevelopmentInAzure
from shared.admin.app import build_app


def principal(*roles: str, name: str = "ada@contoso.com") -> str:
    claims = [{"typ": "name", "val": name}] + [{"typ": "roles", "val": role} for role in roles]
    body = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(body).encode()).decode()


async def _get(services, environ, headers, mode="app_service"):
    app = build_app(services, mode=mode, environ=environ, root="/api/manage")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test") as http:
        return await http.get("/api/manage/v1/overview", headers=headers)


async def test_forged_principal_refused_without_app_service_authentication(stored):
    answer = await _get(stored, {}, {"X-MS-CLIENT-PRINCIPAL": principal(ADMIN_ROLE)})
    assert answer.status_code == 401
    assert "cannot be trusted" in answer.json()["detail"]


async def test_signed_in_caller_without_the_role_gets_403_and_with_it_gets_in(stored):
    environ = {"WEBSITE_AUTH_ENABLED": "True"}
    without = await _get(stored, environ, {"X-MS-CLIENT-PRINCIPAL": principal("Reader")})
    assert without.status_code == 403 and ADMIN_ROLE in without.json()["detail"]
    nobody = await _get(stored, environ, {})
    assert nobody.status_code == 401
    garbled = await _get(stored, environ, {"X-MS-CLIENT-PRINCIPAL": "not base64!"})
    assert garbled.status_code == 401
    admin = await _get(stored, environ, {"X-MS-CLIENT-PRINCIPAL": principal(ADMIN_ROLE)})
    assert admin.status_code == 200 and admin.json()["value"][0]["name"] == "local"


async def test_a_page_sends_a_browser_that_has_not_signed_in_to_the_sign_in_and_back(stored):
    """App Service authentication lets anonymous requests through (it is not required globally, so function
    keys keep working): the page redirects to its Entra sign-in, the API answers 401."""
    app = build_app(stored, mode="app_service", environ={"WEBSITE_AUTH_ENABLED": "True"}, root="/api/manage")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test") as http:
        page = await http.get("/api/manage/?status=failed")
        api = await http.get("/api/manage/v1/overview")
        signed_in = await http.get("/api/manage/", headers={"X-MS-CLIENT-PRINCIPAL": principal(ADMIN_ROLE)})
        unprotected = build_app(stored, mode="app_service", environ={}, root="/api/manage")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=unprotected), base_url="http://app.test"
        ) as other:
            off = await other.get("/api/manage/")
    assert page.status_code == 302
    assert page.headers["location"] == (
        "/.auth/login/aad?post_login_redirect_uri=%2Fapi%2Fmanage%2F%3Fstatus%3Dfailed"
    )
    assert api.status_code == 401 and "location" not in api.headers
    assert signed_in.status_code == 200
    assert off.status_code == 401  # authentication off: no sign-in to send anyone to


async def test_post_from_another_origin_is_refused(stored):
    app = build_app(stored, mode="development", environ={}, root="/api/manage")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test") as http:
        answer = await http.post("/api/manage/transfer/export", headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403


@pytest.mark.parametrize("marker", ["WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME"])
def test_development_mode_refuses_to_start_in_azure(marker):
    with pytest.raises(DevelopmentInAzure, match=marker):
        Access("development", {marker: "x"})


def _indexed():
    import importlib

    import function_app

    app = importlib.reload(function_app).app
    return {f.get_function_name(): f for f in app.get_functions()}


def test_routes_and_auth_levels_as_the_host_indexes_them():
    functions = _indexed()
    key = json.loads(functions["management_api"].get_raw_bindings()[0])
    page = json.loads(functions["management_page"].get_raw_bindings()[0])
    # ADMIN: the host answers 401 without the master key before the app runs (no key, no admin API).
    assert key["authLevel"] == "ADMIN" and key["route"] == "mgmt/{*path}"
    assert page["authLevel"] == "ANONYMOUS" and page["route"] == "manage/{*path}"
    assert not any(name.startswith("admin") for name in functions)  # the host reserves admin routes


async def test_function_handler_serves_the_app_through_the_asgi_adapter(stored, environ, monkeypatch):
    import functions.runtime

    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    functions.runtime.services.cache_clear()
    import functions.admin

    functions.admin._middleware.cache_clear()
    handler = _indexed()["management_api"].get_user_function()
    request = func.HttpRequest(
        "GET",
        "http://localhost/api/mgmt/v1/connectors",
        headers={},
        body=b"",
        route_params={"path": "v1/connectors"},
    )
    response = await handler(request, None)
    assert response.status_code == 200, response.get_body()
    assert [c["name"] for c in json.loads(response.get_body())["value"]] == ["local"]
    functions.runtime.services.cache_clear()
    functions.admin._middleware.cache_clear()
