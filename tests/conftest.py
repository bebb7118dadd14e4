"""Fixtures shared by every test: a local Graph per test (small, generated, fresh state)."""

from __future__ import annotations

from collections.abc import Iterator

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
