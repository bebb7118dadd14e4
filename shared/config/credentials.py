"""How a connector authenticates: the credential kinds, as configuration (secrets are references).

Building the azure-identity credential from these is :mod:`shared.credentials`' job.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.config.fields import ConfigModel, Guid
from shared.secrets import SecretRef


class ClientSecretCredentialConfig(ConfigModel):
    """Authenticate as the app registration with a client secret."""

    type: Literal["client_secret"]
    secret: SecretRef

    def __repr__(self) -> str:
        return f"ClientSecretCredentialConfig(secret={self.secret!r})"

    __str__ = __repr__


class CertificateCredentialConfig(ConfigModel):
    """Authenticate as the app registration with a certificate."""

    type: Literal["certificate"]
    certificate: SecretRef = Field(
        description="PEM text holding the private key and certificate, or base64 of a PKCS#12 file."
    )
    password: SecretRef | None = Field(default=None, description="Password of the private key or PKCS#12.")
    send_certificate_chain: bool = Field(
        default=False, description="Send the x5c header (subject name / issuer authentication)."
    )

    def __repr__(self) -> str:
        return (
            f"CertificateCredentialConfig(certificate={self.certificate!r}, password={self.password!r}, "
            f"send_certificate_chain={self.send_certificate_chain!r})"
        )

    __str__ = __repr__


class ManagedIdentityCredentialConfig(ConfigModel):
    """Authenticate as the Function App's managed identity; no secret at all."""

    type: Literal["managed_identity"]
    client_id: Guid | None = Field(
        default=None, description="Client id of a user-assigned identity; null for the system-assigned one."
    )

    def __repr__(self) -> str:
        return f"ManagedIdentityCredentialConfig(client_id={self.client_id!r})"

    __str__ = __repr__


CredentialConfig = Annotated[
    ClientSecretCredentialConfig | CertificateCredentialConfig | ManagedIdentityCredentialConfig,
    Field(discriminator="type"),
]
CREDENTIAL_TYPES = ("client_secret", "certificate", "managed_identity")
