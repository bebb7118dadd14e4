"""Secret references in the configuration, and reading the secrets they point to.

The configuration never holds a secret: it holds a :class:`SecretRef`, either the name of an app setting
(environment variable; in Azure its value may itself be a Key Vault reference
``@Microsoft.KeyVault(SecretUri=...)`` that the Functions platform resolves) or the URI of a Key Vault secret
that the connector reads at run time with its own identity.

Secret values are never logged and never appear in exception text or reprs; errors name the reference only.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, Protocol, runtime_checkable

from azure.keyvault.secrets import SecretClient
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

APP_SETTING_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""An app setting (environment variable) name."""

_HOST = r"([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
KEY_VAULT_SECRET_URI_PATTERN = rf"^https://{_HOST}/secrets/[0-9A-Za-z-]{{1,127}}(/[0-9A-Fa-f]{{32}})?/?$"
"""``https://<vault host>/secrets/<name>[/<version>]``: any https host (public clouds' vault suffixes,
private endpoints, emulators); the name is 1-127 letters, digits or dashes, the version 32 hex digits."""

INLINE_SECRET_MESSAGE = (
    'secrets must be references, never inline values: write {"app_setting": "SETTING_NAME"} or '
    '{"key_vault": "https://<vault>.vault.azure.net/secrets/<name>"}'
)

_UNRESOLVED_KEY_VAULT_REFERENCE = re.compile(r"^\s*@Microsoft\.KeyVault\(", re.IGNORECASE)


class SecretError(Exception):
    """A referenced secret could not be read. The message names the reference, never a value."""

    def __init__(self, message: str, *, reference: str) -> None:
        super().__init__(message)
        self.reference = reference

    def __reduce__(self) -> tuple[Any, ...]:
        return _secret_error, (str(self), self.reference)


def _secret_error(message: str, reference: str) -> SecretError:
    return SecretError(message, reference=reference)


class SecretRef(BaseModel):
    """Where a secret lives: exactly one of an app setting name or a Key Vault secret URI."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        hide_input_in_errors=True,
        title="SecretRef",
        json_schema_extra={
            "description": (
                "A reference to a secret, never the secret itself: exactly one of app_setting or key_vault."
            ),
            "oneOf": [{"required": ["app_setting"]}, {"required": ["key_vault"]}],
        },
    )

    app_setting: Annotated[str, StringConstraints(pattern=APP_SETTING_NAME_PATTERN)] | None = Field(
        default=None,
        description=(
            "Name of the app setting (environment variable) holding the secret; in Azure its value may be a "
            "Key Vault reference @Microsoft.KeyVault(SecretUri=...) resolved by the Functions platform."
        ),
    )
    key_vault: (
        Annotated[
            str,
            StringConstraints(pattern=KEY_VAULT_SECRET_URI_PATTERN),
            AfterValidator(lambda uri: uri.rstrip("/")),
        ]
        | None
    ) = Field(
        default=None,
        description=(
            "Key Vault secret URI https://<vault>.vault.azure.net/secrets/<name>[/<version>], read with the "
            "connector's identity (other clouds' vault hosts and private endpoints are accepted)."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_inline_values(cls, data: Any) -> Any:
        # Anything but an object here is most likely the secret itself: refuse it without repeating it.
        if isinstance(data, Mapping | SecretRef):
            return data
        raise PydanticCustomError("inline_secret", INLINE_SECRET_MESSAGE)

    @model_validator(mode="after")
    def _exactly_one_location(self) -> SecretRef:
        if (self.app_setting is None) == (self.key_vault is None):
            raise PydanticCustomError("secret_ref", "give exactly one of app_setting or key_vault")
        return self

    def __repr__(self) -> str:
        if self.app_setting is not None:
            return f"SecretRef(app_setting={self.app_setting!r})"
        return f"SecretRef(key_vault={self.key_vault!r})"

    def __str__(self) -> str:
        if self.app_setting is not None:
            return f"app setting {self.app_setting}"
        return f"Key Vault secret {self.key_vault}"


class KeyVaultSecretId(NamedTuple):
    """The parts of a Key Vault secret URI, as SecretClient wants them."""

    vault_url: str
    name: str
    version: str | None


def parse_key_vault_secret_uri(uri: str) -> KeyVaultSecretId:
    """Split ``https://<vault>/secrets/<name>[/<version>]``; ValueError for anything else."""
    if not re.fullmatch(KEY_VAULT_SECRET_URI_PATTERN, uri):
        raise ValueError("not a Key Vault secret URI: expected https://<vault>/secrets/<name>[/<version>]")
    vault_url, _, rest = uri.rstrip("/").partition("/secrets/")
    name, _, version = rest.partition("/")
    return KeyVaultSecretId(vault_url, name, version or None)


@runtime_checkable
class KeyVaultReader(Protocol):
    """Reads the current value of a Key Vault secret given its URI."""

    def get_secret(self, uri: str) -> str: ...


class AzureKeyVaultReader:
    """A :class:`KeyVaultReader` over ``azure-keyvault-secrets``, with one SecretClient per vault.

    ``client_options`` are passed to every SecretClient (for example ``verify_challenge_resource=False`` for a
    local emulator whose host is not a Key Vault domain).
    """

    def __init__(self, credential: TokenCredential, **client_options: Any) -> None:
        self._credential = credential
        self._client_options = client_options
        self._clients: dict[str, SecretClient] = {}
        self._lock = threading.Lock()

    def get_secret(self, uri: str) -> str:
        secret_id = parse_key_vault_secret_uri(uri)
        secret = self.client_for(secret_id.vault_url).get_secret(secret_id.name, secret_id.version)
        if not secret.value:
            raise SecretError(f"Key Vault secret {uri} has no value", reference=uri)
        return secret.value

    def client_for(self, vault_url: str) -> SecretClient:
        """The cached SecretClient for ``vault_url`` (created on first use)."""
        with self._lock:
            client = self._clients.get(vault_url)
            if client is None:
                client = SecretClient(vault_url, self._credential, **self._client_options)
                self._clients[vault_url] = client
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> AzureKeyVaultReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AzureKeyVaultReader(vaults={sorted(self._clients)!r})"


def resolve_secret(
    ref: SecretRef,
    *,
    environ: Mapping[str, str] = os.environ,
    key_vault: KeyVaultReader | None = None,
) -> str:
    """The value ``ref`` points to. Raises SecretError, naming the reference only, when it cannot be read."""
    if ref.app_setting is not None:
        return _read_app_setting(ref.app_setting, environ)
    assert ref.key_vault is not None  # SecretRef guarantees exactly one location
    if key_vault is None:
        raise SecretError(f"{ref} needs a Key Vault reader, and none was given", reference=ref.key_vault)
    try:
        value = key_vault.get_secret(ref.key_vault)
    except SecretError:
        raise
    except Exception as exc:
        raise SecretError(
            f"could not read {ref}: {type(exc).__name__}: {_first_line(exc)}", reference=ref.key_vault
        ) from exc
    if not value:
        raise SecretError(f"{ref} is empty", reference=ref.key_vault)
    return value


def _read_app_setting(name: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name)
    if value is None:
        raise SecretError(f"app setting {name} is not set", reference=name)
    if not value.strip():
        raise SecretError(f"app setting {name} is empty", reference=name)
    if _UNRESOLVED_KEY_VAULT_REFERENCE.match(value):
        # The platform leaves the reference text in place when it cannot resolve it.
        raise SecretError(
            f"app setting {name} holds a Key Vault reference the Functions platform could not resolve "
            "(check the reference syntax and that the app's identity may get secrets from the vault)",
            reference=name,
        )
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"
