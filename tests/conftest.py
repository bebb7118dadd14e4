"""Fixtures shared by every test: a local Graph per test (small, generated, fresh state), Azurite.

Plain helpers (assertions, configurations, expected records) are in ``tests.support``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from localgraph.client import ControlClient, graph_client
from localgraph.context import GraphSettings
from localgraph.generate import TenantShape
from localgraph.server import LocalGraph


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

from devtools.azurite import Azurite  # noqa: E402
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
async def services(environ: dict[str, str]) -> AsyncIterator[Services]:
    """The process's services for one test; the pooled Graph clients it opened on the test's loop are closed
    at teardown, so no test leaves connections open."""
    built = Services(Settings.from_environ(environ), environ=environ)
    built.storage.ensure()
    yield built
    await built.aclose()
