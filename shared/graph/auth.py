"""Credentials for a connector, and the bearer token the Graph client sends.

azure-identity does the identity-platform work (client secret, certificate assertion, managed identity;
global and national clouds through the connector's login URL). :class:`TokenProvider` keeps one token per
client, renews it before it expires (a quarter of its lifetime, at most five minutes, ahead) and on a 401,
and runs the credential's blocking calls in a worker thread so the event loop never stalls.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
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
    if isinstance(credential, ClientSecretCredentialConfig):
        secret = resolve_secret(credential.secret, environ=environ, key_vault=key_vault)
        return ClientSecretCredential(connector.tenant_id, connector.client_id, secret, **common)
    if isinstance(credential, CertificateCredentialConfig):
        material = resolve_secret(credential.certificate, environ=environ, key_vault=key_vault)
        password = (
            resolve_secret(credential.password, environ=environ, key_vault=key_vault)
            if credential.password is not None
            else None
        )
        return CertificateCredential(
            connector.tenant_id,
            connector.client_id,
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


class TokenProvider:
    """The bearer token for one connector's Graph calls.

    ``renew`` builds a new credential. After a 401 the token is dropped and, when ``renew`` is given, so is
    the credential: MSAL would otherwise hand back the same cached token until its own clock says it
    expired, and a token Graph refused early (revoked, signing key rolled over) would be refused again.
    Building the credential anew also reads its secret again, so a rotated secret is picked up.
    """

    def __init__(
        self,
        credential: TokenCredential,
        scope: str,
        *,
        renew: Callable[[], TokenCredential] | None = None,
        max_margin_s: float = 300.0,
    ) -> None:
        self._credential = credential
        self._renew = renew
        self._stale_credential = False
        self._scope = scope
        self._max_margin_s = max_margin_s
        self._token: AccessToken | None = None
        self._acquired_at = 0.0
        self._lock = asyncio.Lock()
        self.acquisitions = 0

    def _fresh(self, token: AccessToken | None) -> bool:
        if token is None:
            return False
        now = time.time()
        lifetime = max(1.0, token.expires_on - self._acquired_at)
        margin = min(self._max_margin_s, lifetime / 4)
        return now < token.expires_on - margin

    async def token(self) -> str:
        if self._fresh(self._token):
            return self._token.token
        async with self._lock:
            if not self._fresh(self._token):
                try:
                    if self._stale_credential and self._renew is not None:
                        self._credential = await asyncio.to_thread(self._renew)
                    self._stale_credential = False
                    acquired_at = time.time()
                    self._token = await asyncio.to_thread(self._credential.get_token, self._scope)
                    self._acquired_at = acquired_at
                    self.acquisitions += 1
                except ClientAuthenticationError as exc:
                    raise AuthenticationFailed(
                        f"the identity platform refused the credential: {first_line(exc.message)}",
                        code="CredentialRejected",
                    ) from None
            return self._token.token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (Graph answered 401 to it): the next call acquires a new one."""
        if self._token is not None and self._token.token == token:
            self._token = None
            self._stale_credential = True


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""
