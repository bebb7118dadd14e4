"""Secret references: resolution from app settings and Key Vault, and keeping values out of text."""

from __future__ import annotations

import json
import pickle
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from shared import secrets as secrets_module
from shared.config import ConfigError, load_config, parse_config
from shared.secrets import (
    AzureKeyVaultReader,
    KeyVaultReader,
    KeyVaultSecretId,
    SecretError,
    SecretRef,
    parse_key_vault_secret_uri,
    resolve_secret,
)

SECRET_VALUE = "Zx8Q~s3cr3t.VALUE-never-printed"
VAULT_URI = "https://contoso-kv.vault.azure.net/secrets/graph-client-secret"
VERSION = "0123456789abcdef0123456789abcdef"


class FakeKeyVault:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.requested: list[str] = []

    def get_secret(self, uri: str) -> str:
        self.requested.append(uri)
        return self.values[uri]


class FailingKeyVault:
    def get_secret(self, uri: str) -> str:
        raise PermissionError("(Forbidden) caller does not have secrets get permission")


# ---------------------------------------------------------------------------------- app settings


def test_app_setting_reference_resolves_to_the_setting_value() -> None:
    ref = SecretRef(app_setting="GRAPH_SECRET")

    assert resolve_secret(ref, environ={"GRAPH_SECRET": SECRET_VALUE}) == SECRET_VALUE


def test_app_settings_are_read_from_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRAPH_SECRET_FROM_ENV", SECRET_VALUE)

    assert resolve_secret(SecretRef(app_setting="GRAPH_SECRET_FROM_ENV")) == SECRET_VALUE


def test_missing_app_setting_is_an_error_naming_the_setting() -> None:
    with pytest.raises(SecretError) as caught:
        resolve_secret(SecretRef(app_setting="GRAPH_SECRET"), environ={})

    assert str(caught.value) == "app setting GRAPH_SECRET is not set"
    assert caught.value.reference == "GRAPH_SECRET"


def test_secret_error_survives_pickling() -> None:
    error = SecretError("app setting GRAPH_SECRET is not set", reference="GRAPH_SECRET")

    copy = pickle.loads(pickle.dumps(error))

    assert (str(copy), copy.reference) == (str(error), error.reference)


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_app_setting_is_an_error(value: str) -> None:
    with pytest.raises(SecretError, match="app setting GRAPH_SECRET is empty"):
        resolve_secret(SecretRef(app_setting="GRAPH_SECRET"), environ={"GRAPH_SECRET": value})


def test_unresolved_key_vault_reference_in_an_app_setting_is_an_error() -> None:
    unresolved = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/s/)"

    with pytest.raises(SecretError) as caught:
        resolve_secret(SecretRef(app_setting="GRAPH_SECRET"), environ={"GRAPH_SECRET": unresolved})

    assert "could not resolve" in str(caught.value)
    assert unresolved not in str(caught.value)


# ------------------------------------------------------------------------------------- Key Vault


def test_key_vault_reference_is_read_through_the_reader() -> None:
    vault = FakeKeyVault({VAULT_URI: SECRET_VALUE})

    assert resolve_secret(SecretRef(key_vault=VAULT_URI), key_vault=vault) == SECRET_VALUE
    assert vault.requested == [VAULT_URI]


def test_key_vault_reference_without_a_reader_is_an_error() -> None:
    with pytest.raises(SecretError, match="needs a Key Vault reader"):
        resolve_secret(SecretRef(key_vault=VAULT_URI))


def test_key_vault_failure_becomes_a_secret_error_naming_the_uri() -> None:
    with pytest.raises(SecretError) as caught:
        resolve_secret(SecretRef(key_vault=VAULT_URI), key_vault=FailingKeyVault())

    assert VAULT_URI in str(caught.value)
    assert "PermissionError" in str(caught.value)
    assert isinstance(caught.value.__cause__, PermissionError)


def test_empty_key_vault_secret_is_an_error() -> None:
    with pytest.raises(SecretError, match="is empty"):
        resolve_secret(SecretRef(key_vault=VAULT_URI), key_vault=FakeKeyVault({VAULT_URI: ""}))


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (VAULT_URI, KeyVaultSecretId("https://contoso-kv.vault.azure.net", "graph-client-secret", None)),
        (
            f"https://kv.vault.azure.cn/secrets/cert/{VERSION}",
            KeyVaultSecretId("https://kv.vault.azure.cn", "cert", VERSION),
        ),
        ("https://10.0.0.4:8443/secrets/cert/", KeyVaultSecretId("https://10.0.0.4:8443", "cert", None)),
    ],
)
def test_key_vault_uri_splits_into_vault_name_and_version(uri: str, expected: KeyVaultSecretId) -> None:
    assert parse_key_vault_secret_uri(uri) == expected


def test_non_secret_key_vault_uri_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Key Vault secret URI"):
        parse_key_vault_secret_uri("https://kv.vault.azure.net/keys/k")


class FakeSecretClient:
    created: ClassVar[list[FakeSecretClient]] = []

    def __init__(self, vault_url: str, credential: Any, **options: Any) -> None:
        self.vault_url = vault_url
        self.credential = credential
        self.options = options
        self.requests: list[tuple[str, str | None]] = []
        self.closed = False
        FakeSecretClient.created.append(self)

    def get_secret(self, name: str, version: str | None = None) -> Any:
        self.requests.append((name, version))
        return type("KeyVaultSecret", (), {"value": f"value of {name}"})()

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_secret_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeSecretClient]:
    FakeSecretClient.created = []
    monkeypatch.setattr(secrets_module, "SecretClient", FakeSecretClient)
    return FakeSecretClient


def test_azure_key_vault_reader_keeps_one_client_per_vault(
    fake_secret_client: type[FakeSecretClient],
) -> None:
    credential = object()
    reader = AzureKeyVaultReader(credential, verify_challenge_resource=False)

    assert reader.get_secret("https://a.vault.azure.net/secrets/one") == "value of one"
    assert reader.get_secret(f"https://a.vault.azure.net/secrets/two/{VERSION}") == "value of two"
    assert reader.get_secret("https://b.vault.azure.net/secrets/three") == "value of three"

    first, second = fake_secret_client.created
    assert (first.vault_url, second.vault_url) == ("https://a.vault.azure.net", "https://b.vault.azure.net")
    assert first.requests == [("one", None), ("two", VERSION)]
    assert first.credential is credential
    assert first.options == {"verify_challenge_resource": False}


def test_azure_key_vault_reader_closes_its_clients(fake_secret_client: type[FakeSecretClient]) -> None:
    with AzureKeyVaultReader(object()) as reader:
        reader.get_secret(VAULT_URI)

    assert [client.closed for client in fake_secret_client.created] == [True]


def test_azure_key_vault_reader_is_a_key_vault_reader() -> None:
    assert isinstance(AzureKeyVaultReader(object()), KeyVaultReader)


# ------------------------------------------------------------------------------ keeping secrets out


def test_secret_reference_repr_and_str_show_only_the_reference() -> None:
    assert repr(SecretRef(app_setting="GRAPH_SECRET")) == "SecretRef(app_setting='GRAPH_SECRET')"
    assert str(SecretRef(app_setting="GRAPH_SECRET")) == "app setting GRAPH_SECRET"
    assert repr(SecretRef(key_vault=VAULT_URI)) == f"SecretRef(key_vault='{VAULT_URI}')"
    assert str(SecretRef(key_vault=VAULT_URI)) == f"Key Vault secret {VAULT_URI}"


def test_inline_secret_in_a_secret_reference_is_not_echoed_by_pydantic() -> None:
    with pytest.raises(ValidationError) as caught:
        SecretRef.model_validate(SECRET_VALUE)

    assert "never inline values" in str(caught.value)
    assert SECRET_VALUE not in str(caught.value)


def config_with_secrets() -> dict[str, Any]:
    return {
        "connectors": [
            {
                "name": "contoso",
                "tenant_id": "contoso.onmicrosoft.com",
                "client_id": "3f2c1a9e-8b7d-4c6e-9f01-2a3b4c5d6e7f",
                "credential": {"type": "client_secret", "secret": {"app_setting": "GRAPH_SECRET"}},
            },
            {
                "name": "fabrikam",
                "tenant_id": "fabrikam.com",
                "client_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
                "credential": {
                    "type": "certificate",
                    "certificate": {"key_vault": VAULT_URI},
                    "password": {"app_setting": "CERT_PASSWORD"},
                },
            },
        ],
        "tasks": [],
    }


def test_resolved_secrets_never_appear_in_config_or_error_text() -> None:
    environ = {"GRAPH_SECRET": SECRET_VALUE, "CERT_PASSWORD": SECRET_VALUE + "-pw"}
    vault = FakeKeyVault({VAULT_URI: SECRET_VALUE + "-cert"})
    config = parse_config(config_with_secrets())
    contoso, fabrikam = config.connectors

    resolved = [
        resolve_secret(contoso.credential.secret, environ=environ),
        resolve_secret(fabrikam.credential.certificate, key_vault=vault),
        resolve_secret(fabrikam.credential.password, environ=environ),
    ]
    with pytest.raises(SecretError) as secret_error:
        resolve_secret(contoso.credential.secret, environ={"GRAPH_SECRET": ""})
    invalid = config_with_secrets()
    invalid["connectors"][0]["credential"]["secret"] = SECRET_VALUE
    with pytest.raises(ConfigError) as config_error:
        load_config(json.dumps(invalid))

    texts = [
        repr(config),
        str(config),
        repr(contoso),
        str(fabrikam.credential),
        repr(fabrikam.credential),
        config.model_dump_json(),
        str(secret_error.value),
        repr(secret_error.value),
        str(config_error.value),
        repr(config_error.value),
        repr(config_error.value.errors),
    ]
    assert resolved == [SECRET_VALUE, SECRET_VALUE + "-cert", SECRET_VALUE + "-pw"]
    for text in texts:
        assert SECRET_VALUE not in text
