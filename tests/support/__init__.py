"""Helpers the tests share: assertions, configurations for the local Graph, expected records.

Fixtures live in ``tests/conftest.py``; plain functions and constants live here, so test modules import
them like any module (``from tests.support import task_config``) instead of importing ``conftest``.
"""

from __future__ import annotations

import json
from typing import Any

from localgraph.client import ControlClient
from shared.config import Config, parse_config
from shared.services import Services
from shared.storage.blobs import read_lines


def assert_error(response, status: int, code: str, message: str | None = None) -> dict:
    """A Graph error answer: status, code, Graph's envelope with innerError, and (if given) the message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    if message is not None:
        assert error["message"] == message
    return error


def connector_for(info, **overrides: Any) -> dict[str, Any]:
    return {**info.connector("local", "LOCALGRAPH_CLIENT_SECRET"), **overrides}


USER_MAPPINGS = [
    {"external": "userPrincipalName", "local": "login"},
    {"external": "displayName", "local": "name"},
    {"external": "jobTitle", "local": "title"},
    {"external": "department", "local": "department"},
    {"external": "accountEnabled", "local": "enabled"},
    {"external": "onPremisesExtensionAttributes.extensionAttribute1", "local": "ext1"},
]
GROUP_MAPPINGS = [
    {"external": "displayName", "local": "name"},
    {"external": "description", "local": "description"},
    {"external": "members", "local": "members"},
]


def task_config(
    info,
    *,
    mode: str = "full",
    name: str = "people",
    users: dict | None = None,
    groups: dict | None = None,
    mappings_type: str = "identity_and_access",
) -> Config:
    task: dict[str, Any] = {"name": name, "connector": "local", "mode": mode, "mappings_type": mappings_type}
    if mappings_type in ("identity_and_access", "identity"):
        task["users"] = {
            "mappings": USER_MAPPINGS,
            "target_template": "account",
            "target_folder": "accounts",
            "task_id_attribute": "task",
            **(users or {}),
        }
    if mappings_type in ("identity_and_access", "access"):
        task["groups"] = {
            "mappings": GROUP_MAPPINGS,
            "target_template": "entitlement",
            "target_folder": "entitlements",
            **(groups or {}),
        }
    return parse_config({"connectors": [connector_for(info)], "tasks": [task]})


async def read_records(services: Services, blob: str) -> dict[str, dict[str, Any]]:
    """A committed output file as {object id: attributes}; fails on a duplicate id."""
    records: dict[str, dict[str, Any]] = {}
    async for line in read_lines(services.extracts, blob):
        record = json.loads(line)
        assert record["id"] not in records, f"duplicate record {record['id']}"
        records[record["id"]] = record["attributes"]
    return records


def expected_users(control: ControlClient, task: str = "people") -> dict[str, dict[str, Any]]:
    """What a full read of every user must produce with USER_MAPPINGS, from the tenant itself."""
    return {
        u["id"]: {
            "login": u.get("userPrincipalName"),
            "name": u.get("displayName"),
            "title": u.get("jobTitle"),
            "department": u.get("department"),
            "enabled": u.get("accountEnabled"),
            "ext1": (u.get("onPremisesExtensionAttributes") or {}).get("extensionAttribute1"),
            "task": task,
        }
        for u in control.objects("users")
    }


def expected_groups(control: ControlClient) -> dict[str, dict[str, Any]]:
    return {
        g["id"]: {
            "name": g.get("displayName"),
            "description": g.get("description"),
            "members": sorted(g["members"]),
        }
        for g in control.objects("groups")
    }
