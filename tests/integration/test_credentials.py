"""Every kind of connector credential, end to end through the real azure-identity (and Key Vault) clients:
client secret (the other tests), certificate, managed identity, and a secret held in Key Vault."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.identity import ManagedIdentityCredential

from localgraph.generate import TenantShape
from shared.config import parse_config
from shared.extract.runner import run_task
from shared.secrets import AzureKeyVaultReader
from shared.storage.queues import RunRequest
from tests.support import USER_MAPPINGS, expected_users, read_records


@pytest.fixture
def graph_shape():
    return TenantShape(users=40, groups=10, memberships=150, seed=31)


def identity_task(info, credential: dict, client_id: str | None = None):
    connector = {**info.connector("local", "UNUSED"), "credential": credential}
    if client_id is not None:
        connector["client_id"] = client_id
    return parse_config({
        "connectors": [connector],
        "tasks": [{
            "name": "people", "connector": "local", "mode": "full", "mappings_type": "identity",
            "users": {"mappings": USER_MAPPINGS, "target_template": "a", "target_folder": "f",
                      "task_id_attribute": "task"},
        }],
    })  # fmt: skip


@pytest.fixture
def managed_identity(graph, monkeypatch):
    """The Functions platform's managed identity endpoint, as the host sets it up."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", graph.info.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", graph.info.identity_header)
    return graph.info.managed_identity_client_id


async def test_certificate_credential_reads_the_tenant(graph, control, services):
    services.environ["GRAPH_CERTIFICATE"] = Path(graph.info.client_certificate).read_text()
    config = identity_task(
        graph.info, {"type": "certificate", "certificate": {"app_setting": "GRAPH_CERTIFICATE"}}
    )
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.status == "succeeded", record.error
    assert await read_records(services, record.files["users"]) == expected_users(control)


async def test_certificate_not_registered_fails_with_the_platforms_code(graph, services, tmp_path):
    from localgraph.tls import issue, make_ca

    stranger = issue(make_ca(), "someone-else", server=False)
    services.environ["GRAPH_CERTIFICATE"] = (stranger.key_pem + stranger.cert_pem).decode()
    config = identity_task(
        graph.info, {"type": "certificate", "certificate": {"app_setting": "GRAPH_CERTIFICATE"}}
    )
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.status == "failed" and "AADSTS700027" in record.error
    assert "PRIVATE KEY" not in record.error


async def test_managed_identity_reads_the_tenant(graph, control, services, managed_identity):
    config = identity_task(graph.info, {"type": "managed_identity", "client_id": managed_identity})
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.status == "succeeded", record.error
    assert await read_records(services, record.files["users"]) == expected_users(control)


async def test_client_secret_from_key_vault(graph, control, services, managed_identity):
    info = graph.info
    control.set_vault_secret("graph-connector-secret", info.client_secret)
    services.key_vault = AzureKeyVaultReader(
        ManagedIdentityCredential(client_id=managed_identity, connection_verify=info.ca_file),
        verify_challenge_resource=False,  # the local vault's host is not under vault.azure.net
        connection_verify=info.ca_file,
    )
    secret = {"key_vault": f"{info.key_vault_url}/secrets/graph-connector-secret"}
    config = identity_task(info, {"type": "client_secret", "secret": secret})
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.status == "succeeded", record.error
    assert await read_records(services, record.files["users"]) == expected_users(control)


async def test_missing_key_vault_secret_fails_naming_the_reference(graph, services, managed_identity):
    info = graph.info
    services.key_vault = AzureKeyVaultReader(
        ManagedIdentityCredential(client_id=managed_identity, connection_verify=info.ca_file),
        verify_challenge_resource=False,
        connection_verify=info.ca_file,
    )
    uri = f"{info.key_vault_url}/secrets/not-there"
    config = identity_task(info, {"type": "client_secret", "secret": {"key_vault": uri}})
    record = (await run_task(services, RunRequest(task="people"), config=config)).record
    assert record.status == "failed"
    assert uri in record.error and "SecretError" in record.error
