"""Credentials from configuration: the azure-identity credential a connector's definition describes.

azure-identity does the identity-platform work (client secret, certificate assertion, managed identity;
global and national clouds through the connector's login URL). Secrets are read here, from their references,
when a credential is built (and again when it is rebuilt after Graph refused a token, so a rotated secret is
picked up). This module sits between the configuration and the Graph client, so neither imports the other.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import TokenCredential
from azure.identity import CertificateCredential, ClientSecretCredential, ManagedIdentityCredential

from shared.config import (
    CertificateCredentialConfig,
    ClientSecretCredentialConfig,
    Connector,
    ManagedIdentityCredentialConfig,
)
from shared.graph.errors import AuthenticationFailed
from shared.secrets import KeyVaultReader, resolve_secret

CA_BUNDLE_SETTING = "CONNECTOR_CA_BUNDLE"
"""App setting: a PEM file of CAs to trust for the login and Graph hosts instead of the system store
(a TLS-inspecting proxy, or the local Graph in tests and the demo). Unset in normal deployments."""


def ca_bundle(environ: Mapping[str, str] = os.environ) -> str | None:
    value = environ.get(CA_BUNDLE_SETTING, "").strip()
    return value or None


def build_credential(
    connector: Connector,
    *,
    environ: Mapping[str, str] = os.environ,
    key_vault: KeyVaultReader | None = None,
) -> TokenCredential:
    """The azure-identity credential for a connector, with its secrets resolved from their references."""
    options: dict[str, Any] = {}
    bundle = ca_bundle(environ)
    if bundle:
        options["connection_verify"] = bundle
    credential = connector.credential
    common = {
        "authority": connector.authority,
        "disable_instance_discovery": connector.disable_instance_discovery,
        **options,
    }
    app_id = connector.client_id or ""  # required for app credentials (the configuration checks it)
    if isinstance(credential, ClientSecretCredentialConfig):
        secret = resolve_secret(credential.secret, environ=environ, key_vault=key_vault)
        return ClientSecretCredential(connector.tenant_id, app_id, secret, **common)
    if isinstance(credential, CertificateCredentialConfig):
        material = resolve_secret(credential.certificate, environ=environ, key_vault=key_vault)
        password = (
            resolve_secret(credential.password, environ=environ, key_vault=key_vault)
            if credential.password is not None
            else None
        )
        return CertificateCredential(
            connector.tenant_id,
            app_id,
            certificate_data=certificate_bytes(material),
            password=password,
            send_certificate_chain=credential.send_certificate_chain,
            **common,
        )
    if isinstance(credential, ManagedIdentityCredentialConfig):
        return ManagedIdentityCredential(client_id=credential.client_id, **options)
    raise TypeError(f"unknown credential type {type(credential).__name__}")


def certificate_bytes(material: str) -> bytes:
    """PEM text (private key and certificate) as is; anything else is taken as base64 PKCS#12."""
    if "-----BEGIN" in material:
        return material.encode()
    try:
        return base64.b64decode(material.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationFailed(
            "the certificate secret is neither PEM text nor base64 PKCS#12", code="InvalidCertificate"
        ) from None
