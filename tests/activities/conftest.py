"""Fixtures for the activities: a configuration with event tasks stored through the config store, the
Function App's activity handlers (called with real ``azure.functions.HttpRequest`` objects), and a caller."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

import functions.activities
from shared.activities.api import ActivityApi
from shared.config import parse_config
from tests.support import connector_for

DEFAULT_PASSWORD = "Welcome-2026!Graph"


def extension_name(control) -> str:
    for user in control.objects("users"):
        for key in user:
            if key.startswith("extension_") and key.endswith("_costCenter"):
                return key
    raise AssertionError("the generated tenant has no costCenter directory extension")


USER_MAPPINGS = [
    {"local": "login", "external": "userPrincipalName"},
    {"local": "name", "external": "displayName"},
    {"local": "nickname", "external": "mailNickname"},
    {"local": "title", "external": "jobTitle"},
    {"local": "department", "external": "department"},
    {"local": "company", "external": "companyName"},
    {"local": "enabled", "external": "accountEnabled"},
    {"local": "ext1", "external": "onPremisesExtensionAttributes.extensionAttribute1"},
    {"local": "hired", "external": "employeeHireDate", "format": "datetime"},
    {"local": "object_id", "external": "id"},
]
GROUP_MAPPINGS = [
    {"local": "group_name", "external": "displayName"},
    {"local": "group_nickname", "external": "mailNickname"},
    {"local": "mail_enabled", "external": "mailEnabled"},
    {"local": "security_enabled", "external": "securityEnabled"},
    {"local": "group_description", "external": "description"},
    {"local": "group_id", "external": "id"},
]


def activity_config(info, control) -> dict[str, Any]:
    users = [*USER_MAPPINGS, {"local": "cost_center", "external": extension_name(control)}]
    return {
        "connectors": [connector_for(info)],
        "tasks": [
            {
                "usage": "event",
                "name": "people",
                "connector": "local",
                "mappings_type": "identity_and_access",
                "users": {"mappings": users},
                "groups": {"mappings": GROUP_MAPPINGS},
                "password": {"source": "default", "default_password": {"app_setting": "DEFAULT_USER_PASSWORD"}},
                "datetime_format": "%d.%m.%Y %H:%M",
                "photo_max_bytes": 20000,
            },
            {
                "usage": "event",
                "name": "hires",
                "connector": "local",
                "mappings_type": "identity",
                "users": {"mappings": users},
                "password": {"source": "workflow"},
            },
            {
                "usage": "event",
                "name": "apps",
                "connector": "local",
                "mappings_type": "generic",
                "objects": {
                    "object_class": "applications",
                    "mappings": [
                        {"local": "app_name", "external": "displayName"},
                        {"local": "app_notes", "external": "notes"},
                    ],
                },
                "base_query": "users",
            },
            {
                "usage": "event",
                "name": "contacts",
                "connector": "local",
                "mappings_type": "generic",
                "objects": {
                    "object_class": "contacts",
                    "mappings": [{"local": "contact_name", "external": "displayName"}],
                },
            },
            {"usage": "event", "name": "off", "connector": "local", "mappings_type": "identity", "enabled": False,
             "users": {"mappings": USER_MAPPINGS}},
            {"name": "nightly", "connector": "local", "mode": "full", "mappings_type": "identity",
             "users": {"mappings": [{"external": "displayName", "local": "name"}], "target_template": "account",
                       "target_folder": "accounts"}},
        ],
    }  # fmt: skip


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    n = environ["CONFIG_TABLE"].removeprefix("config")
    return {
        **environ,
        "DEFAULT_USER_PASSWORD": DEFAULT_PASSWORD,
        "ACTIVITY_IDEMPOTENCY_TABLE": f"idempotency{n}",
        "ACTIVITY_USAGE_TABLE": f"usage{n}",
    }


@pytest.fixture
async def stored(graph, control, services):
    config = parse_config(activity_config(graph.info, control))
    await services.config_store.save(config)
    yield config
    await services.aclose()


@pytest.fixture
def api(services, stored) -> ActivityApi:
    return ActivityApi(services)


@pytest.fixture(scope="module")
def handlers() -> dict[str, Callable]:
    """The Function App's activity functions, as the host indexes them, by function name."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(functions.activities.bp)
    return {f.get_function_name(): f.get_user_function() for f in app.get_functions()}


class Caller:
    """Calls the handler of an activity with a real ``func.HttpRequest``; answers (status, json, headers)."""

    def __init__(self, handlers: dict[str, Callable]) -> None:
        self.handlers = handlers

    async def __call__(
        self, activity: str, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        function_name = "activity_" + activity.replace(".", "_").replace("-", "_")
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = func.HttpRequest(
            method="POST",
            url=f"https://connector.example/api/v1/activities/{activity.replace('.', '/')}",
            headers={"Content-Type": "application/json", **(headers or {})},
            params={},
            route_params={},
            body=raw,
        )
        response: func.HttpResponse = await self.handlers[function_name](request)
        content = response.get_body()
        return response.status_code, json.loads(content) if content else None, dict(response.headers)


@pytest.fixture
def call(handlers, services, stored, monkeypatch) -> Caller:
    """The handlers use the process's Services; here the test's (Azurite and the local Graph)."""
    monkeypatch.setattr(functions.activities, "services", lambda: services)
    return Caller(handlers)
