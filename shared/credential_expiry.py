"""When the Graph credentials the connectors use expire, reported as telemetry (and alerted on in Azure).

- **Certificate** credentials: the connector holds the certificate, so its ``notAfter`` is read from it
  (PEM or base64 PKCS#12, as the credential itself reads it); no Graph call is needed.
- **Client secret** credentials: a secret carries no date, so the app registration's
  ``passwordCredentials`` are read from Graph (``endDateTime``), which needs the application permission
  ``Application.Read.All`` (https://learn.microsoft.com/graph/api/application-get). The secret in use is the
  one whose ``hint`` (Graph keeps the first three characters of each secret) matches; when none or several
  match, every secret that has not expired yet is reported. Without the permission (403) the check says so
  in the log and reports nothing for that connector.
- **Managed identity**: nothing expires that the customer renews.

The app registration is found with ``GET /applications?$filter=appId eq '{id}'`` (the ``$filter`` form works
everywhere the ``/applications(appId='{id}')`` alternate key does). No secret is logged; a secret is named by
its ``keyId``, a certificate by its SHA-1 thumbprint.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12

from shared import telemetry
from shared.config import CertificateCredentialConfig, ClientSecretCredentialConfig, Config, Connector
from shared.graph.errors import Forbidden, GraphError
from shared.odata.expressions import literal
from shared.secrets import SecretError, resolve_secret
from shared.services import Services

log = logging.getLogger(__name__)

CHECK_DEADLINE_S = 60.0


@dataclass(frozen=True)
class CredentialExpiry:
    connector: str
    credential_kind: str  # "certificate" | "client_secret"
    key_id: str  # certificate SHA-1 thumbprint (hex) or the secret's keyId
    expires_on: datetime


def certificate_expiry(material: str, password: str | None = None) -> tuple[str, datetime]:
    """The SHA-1 thumbprint and ``notAfter`` of the certificate in ``material`` (PEM text, or base64 PKCS#12)."""
    certificate: x509.Certificate | None
    if "-----BEGIN" in material:
        certificate = x509.load_pem_x509_certificates(material.encode())[0]
    else:
        try:
            data = base64.b64decode(material.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the certificate secret is neither PEM text nor base64 PKCS#12") from None
        _, certificate, _ = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
        if certificate is None:
            raise ValueError("the PKCS#12 data holds no certificate")
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex().upper()  # the thumbprint Entra ID shows
    return thumbprint, certificate.not_valid_after_utc


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


async def _secret_expiries(
    services: Services, connector: Connector, secret: str, now: datetime
) -> list[CredentialExpiry]:
    client = services.graph(connector)
    async with client.context(deadline=time.monotonic() + CHECK_DEADLINE_S):
        body = await client.get_json(
            "applications",
            params={
                "$filter": f"appId eq {literal(connector.client_id)}",
                "$select": "appId,passwordCredentials",
            },
        )
    applications = body.get("value", [])
    if not applications:
        log.warning(
            "connector %s: no app registration with appId %s is visible", connector.name, connector.client_id
        )
        return []
    credentials = applications[0].get("passwordCredentials") or []
    dated = [c for c in credentials if c.get("endDateTime") and c.get("keyId")]
    matching = [c for c in dated if c.get("hint") and secret.startswith(c["hint"])]
    chosen = matching if len(matching) == 1 else [c for c in dated if _parse_time(c["endDateTime"]) > now]
    return [
        CredentialExpiry(connector.name, "client_secret", c["keyId"], _parse_time(c["endDateTime"]))
        for c in chosen
    ]


async def connector_expiries(
    services: Services, connector: Connector, now: datetime
) -> list[CredentialExpiry]:
    """The expiry dates of the credentials ``connector`` uses that can be read."""
    credential = connector.credential
    key_vault = services.key_vault if "key_vault" in connector.model_dump_json() else None
    if isinstance(credential, CertificateCredentialConfig):
        material = resolve_secret(credential.certificate, environ=services.environ, key_vault=key_vault)
        password = (
            resolve_secret(credential.password, environ=services.environ, key_vault=key_vault)
            if credential.password is not None
            else None
        )
        thumbprint, not_after = certificate_expiry(material, password)
        return [CredentialExpiry(connector.name, "certificate", thumbprint, not_after)]
    if isinstance(credential, ClientSecretCredentialConfig):
        secret = resolve_secret(credential.secret, environ=services.environ, key_vault=key_vault)
        try:
            return await _secret_expiries(services, connector, secret, now)
        except Forbidden as exc:
            log.warning(
                "connector %s: cannot read its app registration's secrets (grant Application.Read.All to "
                "see when they expire): %s",
                connector.name,
                exc,
            )
            return []
    return []


async def check_credentials(
    services: Services, config: Config | None = None, *, now: datetime | None = None
) -> list[CredentialExpiry]:
    """Report the expiry of every connector's credentials (telemetry event ``credential.expiry`` and metric
    ``connector.credential.days_remaining``); a connector whose check fails is logged and skipped."""
    now = now or datetime.now(UTC)
    config = config or await services.config_store.load()
    found: list[CredentialExpiry] = []
    for connector in config.connectors:
        with telemetry.operation("credential-check", connector=connector.name):
            try:
                expiries = await connector_expiries(services, connector, now)
            except (GraphError, SecretError, ValueError, OSError) as exc:
                text = exc.redacted() if isinstance(exc, GraphError) else exc
                log.warning("connector %s: credential expiry not read: %s", connector.name, text)
                continue
        for expiry in expiries:
            telemetry.record_credential_expiry(
                expiry.connector, expiry.credential_kind, expiry.key_id, expiry.expires_on, now=now
            )
        found.extend(expiries)
    return found
