"""Fixtures for the admin tests: the stored demo-like configuration and an HTTP client on the admin app."""

from __future__ import annotations

import httpx
import pytest

from shared.admin.app import build_app
from shared.admin.service import AdminService
from tests.support import task_config


@pytest.fixture
async def stored(graph, services):
    """A connector to the local Graph and one scheduled task, stored as the CLI's config import does."""
    await services.config_store.save(task_config(graph.info))
    return services


@pytest.fixture
def admin(stored) -> AdminService:
    return AdminService(stored)


@pytest.fixture
async def client(stored, environ):
    app = build_app(stored, mode="development", environ={}, root="/api/admin")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test/api/admin") as http:
        yield http
    await stored.aclose()
