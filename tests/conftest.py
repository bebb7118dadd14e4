"""Fixtures shared by every test: a local Graph per test (small, generated, fresh state)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localgraph.client import ControlClient, graph_client
from localgraph.context import GraphSettings
from localgraph.generate import TenantShape
from localgraph.server import LocalGraph


def assert_error(response, status: int, code: str, message: str | None = None) -> dict:
    """A Graph error answer: status, code, Graph's envelope with innerError, and (if given) the message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    if message is not None:
        assert error["message"] == message
    return error


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory):
    """One test CA and certificates for the whole session (key generation is the slow part)."""
    return tmp_path_factory.mktemp("localgraph-tls")


@pytest.fixture
def graph_shape() -> TenantShape:
    """Override in a test module to change the tenant."""
    return TenantShape(users=60, seed=3)


@pytest.fixture
def graph_settings() -> GraphSettings:
    """Override in a test module to change the server's behaviour."""
    return GraphSettings()


@pytest.fixture
def graph(tls_dir, graph_shape: TenantShape, graph_settings: GraphSettings) -> Iterator[LocalGraph]:
    server = LocalGraph(graph_shape, graph_settings, state_dir=tls_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def control(graph: LocalGraph) -> Iterator[ControlClient]:
    client = ControlClient(graph.info)
    yield client
    client.close()


@pytest.fixture
def http(graph: LocalGraph):
    """An httpx client for the Graph root with a real token (ClientSecretCredential)."""
    with graph_client(graph.info) as client:
        yield client


# ------------------------------------------------------------------------------------------------------
# The connector's side: Azurite, per-test storage names, a configuration pointing at the local Graph.

import itertools  # noqa: E402
from typing import Any  # noqa: E402

from devtools.azurite import Azurite  # noqa: E402
from shared.config import Config, parse_config  # noqa: E402
from shared.services import Services  # noqa: E402
from shared.settings import Settings  # noqa: E402

_names = itertools.count(1)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as emulator:
        yield emulator


@pytest.fixture
def storage_environ(azurite: Azurite) -> dict[str, str]:
    """App settings for a test: Azurite, and storage names no other test uses."""
    n = next(_names)
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "EXTRACTS_CONTAINER": f"extracts-{n}",
        "LEASES_CONTAINER": f"leases-{n}",
        "RUNS_QUEUE": f"runs-{n}",
        "CONFIG_TABLE": f"config{n}",
        "HISTORY_TABLE": f"history{n}",
        "STATE_TABLE": f"state{n}",
        "LEASE_SECONDS": "15",
    }


@pytest.fixture
def environ(graph: LocalGraph, storage_environ: dict[str, str]) -> dict[str, str]:
    return {
        **storage_environ,
        "LOCALGRAPH_CLIENT_SECRET": graph.info.client_secret,
        "CONNECTOR_CA_BUNDLE": graph.info.ca_file,
    }


@pytest.fixture
def services(environ: dict[str, str]) -> Services:
    built = Services(Settings.from_environ(environ), environ=environ)
    built.storage.ensure()
    return built


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
    import json

    from shared.storage.blobs import read_lines

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
