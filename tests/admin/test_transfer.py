"""Export and import between two environments (two Azurite instances): secret references as they are, secret
values encrypted under a password into the target's Key Vault; a wrong password, a tampered file and another
file version are each refused with nothing changed; a dry run changes nothing; a matching connector merges."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from azure.identity import ManagedIdentityCredential

from devtools.azurite import Azurite
from shared.admin.errors import Invalid, Refused
from shared.admin.service import AdminService
from shared.admin.transfer import _body, export, import_file
from shared.secrets import AzureKeyVaultReader
from shared.services import Services
from shared.settings import Settings
from tests.support import task_config


@pytest.fixture
def target(graph, environ, monkeypatch):
    """A second environment: its own Azurite, and a Key Vault reader/writer with the app's managed identity."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", graph.info.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", graph.info.identity_header)
    with Azurite() as other:
        target_environ = {**environ, "AzureWebJobsStorage": other.connection_string}
        services = Services(Settings.from_environ(target_environ), environ=target_environ)
        services.storage.ensure()
        services.key_vault = AzureKeyVaultReader(
            ManagedIdentityCredential(
                client_id=graph.info.managed_identity_client_id, connection_verify=graph.info.ca_file
            ),
            verify_challenge_resource=False,  # the local vault's host is not under vault.azure.net
            connection_verify=graph.info.ca_file,
        )
        yield AdminService(services)


async def _snapshot(admin: AdminService) -> list[tuple[str, str, str]]:
    return [(d.kind, d.id, d.etag) for d in await admin.store.all()]


async def test_round_trip_with_secret_values_into_the_target_key_vault(admin, target, graph):
    connector = (await admin.definitions("connector"))[0]
    document = await export(admin, [connector.id], password="correct horse", include_secrets=True)
    assert "seal" in document and graph.info.client_secret not in json.dumps(document)
    text = json.dumps(document)

    plan = await import_file(target, text, password="correct horse", key_vault_url=graph.info.key_vault_url)
    assert not plan.applied and await target.store.all() == []  # the dry run changed nothing
    assert {(c.kind, c.name, c.action) for c in plan.changes} == {
        ("connector", "local", "create"),
        ("task", "people", "create"),
    }

    plan = await import_file(
        target, text, password="correct horse", dry_run=False, key_vault_url=graph.info.key_vault_url
    )
    assert plan.applied and plan.secrets == ["local-secret"]
    imported = {d.name: d for d in await target.store.all()}
    assert imported["local"].id == connector.id  # the stable id travels
    reference = imported["local"].data["credential"]["secret"]
    assert reference == {"key_vault": f"{graph.info.key_vault_url}/secrets/local-secret"}
    # The secret value landed in the target's Key Vault: the imported connector reaches Graph with it.
    assert target.services.key_vault.get_secret(reference["key_vault"]) == graph.info.client_secret
    result = await target.test_connection(imported["local"].id)
    assert result["token"]["ok"] and result["read"]["ok"], result
    await target.services.aclose()


async def test_refusals_change_nothing(admin, target, graph):
    connector = (await admin.definitions("connector"))[0]
    document = await export(admin, [connector.id], password="pw-1234567")
    before = await _snapshot(target)

    with pytest.raises(Refused, match="wrong export password"):
        await import_file(target, json.dumps(document), password="not it", dry_run=False)
    tampered = copy.deepcopy(document)
    tampered["tasks"][0]["mode"] = "incremental"
    with pytest.raises(Refused, match="changed after it was exported"):
        await import_file(target, json.dumps(tampered), password="pw-1234567", dry_run=False)
    newer = {**document, "version": 2}
    with pytest.raises(Refused, match="version 2"):
        await import_file(target, json.dumps(newer), password="pw-1234567", dry_run=False)
    with pytest.raises(Refused, match="protected by an export password"):
        await import_file(target, json.dumps(document), dry_run=False)
    plain = await export(admin, [connector.id])
    plain["connectors"][0]["tenant_id"] = "evil.onmicrosoft.com"
    with pytest.raises(Refused, match="digest does not match"):
        await import_file(target, json.dumps(plain), dry_run=False)
    assert await _snapshot(target) == before


async def test_same_tenant_and_client_merges_into_the_existing_connector(admin, target, graph):
    # The target already has the tenant's connector under another name.
    await target.services.config_store.save(task_config(graph.info, name="existing-task"))
    existing = (await target.definitions("connector"))[0]
    renamed = {**existing.data, "name": "prod-tenant"}
    await target.update("connector", existing.id, renamed, existing.etag)
    document = await export(admin, [(await admin.definitions("connector"))[0].id])
    plan = await import_file(target, json.dumps(document), dry_run=False)
    assert ("connector", "prod-tenant", "merge") in {(c.kind, c.name, c.action) for c in plan.changes}
    tasks = {d.name: d.data["connector"] for d in await target.definitions("task")}
    assert tasks == {"existing-task": "prod-tenant", "people": "prod-tenant"}
    assert [c.name for c in await target.definitions("connector")] == ["prod-tenant"]


async def test_import_that_would_leave_an_invalid_configuration_is_refused_whole(admin, target):
    connector = (await admin.definitions("connector"))[0]
    document = await export(admin, [connector.id])
    document["tasks"][0]["mode"] = "sometimes"
    document["digest"] = "sha256:" + hashlib.sha256(_body(document)).hexdigest()  # a consistent file
    with pytest.raises(Invalid, match="mode"):
        await import_file(target, json.dumps(document), dry_run=False)
    assert await target.store.all() == []


async def test_a_key_vault_that_refuses_the_apps_identity_imports_nothing_and_keeps_no_secret(
    admin, target, graph, control
):
    """403 from Key Vault (the identity lacks a role that may set secrets): a clear problem naming the secret
    and the role, no definition stored, and the secrets the import had already written are removed."""
    from azure.core.exceptions import ResourceNotFoundError

    from shared.admin.errors import VaultRefused
    from tests.support import connector_for

    other = control.add_app(["User.Read.All"])
    admin.services.environ["OTHER_SECRET"] = other["client_secret"]
    await admin.create(
        "connector",
        connector_for(
            graph.info,
            name="other",
            client_id=other["client_id"],
            credential={"type": "client_secret", "secret": {"app_setting": "OTHER_SECRET"}},
        ),
    )
    ids = [c.id for c in await admin.definitions("connector")]
    text = json.dumps(await export(admin, ids, password="correct horse", include_secrets=True))
    vault = graph.info.key_vault_url
    reader = target.services.key_vault

    async def attempt() -> VaultRefused:
        with pytest.raises(VaultRefused) as refused:
            await import_file(target, text, password="correct horse", dry_run=False, key_vault_url=vault)
        assert refused.value.status == 403
        assert await target.store.all() == []
        for name in ("local-secret", "other-secret"):
            with pytest.raises(ResourceNotFoundError):
                reader.get_secret(f"{vault}/secrets/{name}")
        return refused.value

    try:
        control.refuse_vault_writes(after=0)  # no write at all
        first = await attempt()
        assert "'local-secret'" in first.detail and "Key Vault Secrets Officer" in first.detail
        assert "ForbiddenByRbac" in first.detail and "nothing was imported" in first.detail
        control.refuse_vault_writes(after=1)  # the first secret lands, the second is refused
        second = await attempt()
        assert "'other-secret'" in second.detail and "were removed" in second.detail
    finally:
        control.refuse_vault_writes(None)
    # With the role granted, the same import goes through (the removed name can be used again).
    plan = await import_file(target, text, password="correct horse", dry_run=False, key_vault_url=vault)
    assert plan.applied and sorted(plan.secrets) == ["local-secret", "other-secret"]
    assert reader.get_secret(f"{vault}/secrets/other-secret") == other["client_secret"]
    await target.services.aclose()
