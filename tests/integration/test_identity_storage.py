"""Identity-based storage connections, the only path a deployment without shared keys has:
``AzureWebJobsStorage__blobServiceUri`` (and queue, table) with the Function App's managed identity.

Azurite serves HTTPS with a certificate from the local Graph's test CA and accepts OAuth bearer tokens; the
managed identity is the local Graph's App Service identity endpoint, through the real
``ManagedIdentityCredential``. No connection string and no account key reach the connector.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.storage.blob import BlobServiceClient

from devtools.azurite import Azurite
from localgraph.generate import TenantShape
from shared.extract.runner import run_task
from shared.runs import RunRequest
from shared.services import Services
from shared.settings import Settings
from tests.support import expected_users, read_records, task_config


@pytest.fixture
def graph_shape():
    return TenantShape(users=40, groups=6, memberships=120, seed=13)


@pytest.fixture
def oauth_azurite(graph, tls_dir, monkeypatch) -> Iterator[Azurite]:
    # The platform's managed identity (App Service protocol) and a trust store holding the test CA.
    monkeypatch.setenv("IDENTITY_ENDPOINT", graph.info.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", graph.info.identity_header)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", graph.info.ca_file)
    with Azurite(
        cert_file=tls_dir / "server.pem", key_file=tls_dir / "server-key.pem", oauth=True
    ) as azurite:
        yield azurite


async def test_a_run_over_identity_based_storage_connections(graph, control, oauth_azurite):
    environ = {
        "AzureWebJobsStorage__blobServiceUri": oauth_azurite.service_uri("blob"),
        "AzureWebJobsStorage__queueServiceUri": oauth_azurite.service_uri("queue"),
        "AzureWebJobsStorage__tableServiceUri": oauth_azurite.service_uri("table"),
        "AzureWebJobsStorage__clientId": graph.info.managed_identity_client_id,
        "LOCALGRAPH_CLIENT_SECRET": graph.info.client_secret,
        "CONNECTOR_CA_BUNDLE": graph.info.ca_file,
    }
    settings = Settings.from_environ(environ)
    assert settings.storage_connection is None  # identity-based: no connection string, no key
    services = Services(settings, environ=environ)
    control.clear_requests()
    services.storage.ensure()  # containers, tables, queues: storage calls only, no Graph call yet
    assert control.requests()["token_requests"] >= 1  # a token from the managed identity, for storage
    record = (await run_task(services, RunRequest(task="people"), config=task_config(graph.info))).record
    assert record.status == "succeeded", record.error
    assert await read_records(services, record.files["users"]) == expected_users(control)
    assert (await services.history.get("people", record.run_id)).status == "succeeded"
    await services.queue.enqueue(RunRequest(task="people"))

    # The same endpoint refuses a caller without a token: the bearer token is what let the run in.
    anonymous = BlobServiceClient(oauth_azurite.service_uri("blob"))
    with pytest.raises((ClientAuthenticationError, HttpResponseError)):
        list(anonymous.list_containers())
