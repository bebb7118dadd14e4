"""Credential expiry against the local Graph: a client secret's endDateTime read from the app registration
(Application.Read.All), a certificate's notAfter read from the certificate itself, and a connector without
the permission reported in the log, not as a failure."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12

from shared import telemetry
from shared.config import parse_config
from shared.credential_expiry import certificate_expiry, check_credentials

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _register_connector_app(control, client_id: str, secret: str) -> None:
    """The connector's app registration as a directory object, with its secret and an older one."""
    control.create(
        "applications",
        {
            "appId": client_id,
            "displayName": "Entra Graph Connector (local)",
            "passwordCredentials": [
                {
                    "keyId": "0f9c7a52-7a4b-4f3e-9b1d-2c3d4e5f6a7b",
                    "displayName": "in use",
                    "hint": secret[:3],
                    "startDateTime": "2026-06-01T00:00:00Z",
                    "endDateTime": "2026-12-20T00:00:00Z",
                    "secretText": None,
                    "customKeyIdentifier": None,
                },
                {
                    "keyId": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
                    "displayName": "retired",
                    "hint": "zz~",
                    "startDateTime": "2025-01-01T00:00:00Z",
                    "endDateTime": "2026-01-01T00:00:00Z",
                    "secretText": None,
                    "customKeyIdentifier": None,
                },
            ],
        },
    )


async def test_client_secret_expiry_is_read_from_the_app_registration(
    graph, control, services, environ, caplog
):
    _register_connector_app(control, graph.info.client_id, graph.info.client_secret)
    config = parse_config(
        {"connectors": [graph.info.connector("local", "LOCALGRAPH_CLIENT_SECRET")], "tasks": []}
    )
    control.clear_requests()
    with caplog.at_level(logging.INFO, logger=telemetry.__name__):
        found = await check_credentials(services, config, now=NOW)
    await services.aclose()
    # The secret in use (its hint matches), not the retired one.
    assert [(f.connector, f.credential_kind, f.key_id, f.expires_on) for f in found] == [
        ("local", "client_secret", "0f9c7a52-7a4b-4f3e-9b1d-2c3d4e5f6a7b", datetime(2026, 12, 20, tzinfo=UTC))
    ]
    paths = control.requests()["by_path"]
    assert paths == {"GET /applications": 1}  # one call, with $filter on appId
    [event] = [
        r
        for r in caplog.records
        if getattr(r, telemetry.EVENT_ATTRIBUTE, None) == telemetry.CREDENTIAL_EXPIRY
    ]
    assert event.connector == "local" and event.days_remaining == pytest.approx(19.5)
    assert event.levelno == logging.WARNING  # within 30 days
    assert (
        graph.info.client_secret not in caplog.text and graph.info.client_secret[:3] not in event.getMessage()
    )


async def test_a_throttled_lookup_is_retried_within_the_checks_deadline(graph, control, services, environ):
    _register_connector_app(control, graph.info.client_id, graph.info.client_secret)
    config = parse_config(
        {"connectors": [graph.info.connector("local", "LOCALGRAPH_CLIENT_SECRET")], "tasks": []}
    )
    control.set_faults({"status": 429, "retry_after": 1, "path": "^/applications", "count": 1})
    try:
        found = await check_credentials(services, config, now=NOW)
    finally:
        control.clear_faults()
        await services.aclose()
    assert [f.key_id for f in found] == ["0f9c7a52-7a4b-4f3e-9b1d-2c3d4e5f6a7b"]


async def test_without_application_read_all_the_check_says_so(graph, control, services, environ, caplog):
    _register_connector_app(control, graph.info.client_id, graph.info.client_secret)
    weak = control.add_app(roles=["User.Read.All"])
    environ["WEAK_SECRET"] = weak["client_secret"]
    connector = {**graph.info.connector("weak", "WEAK_SECRET"), "client_id": weak["client_id"]}
    config = parse_config({"connectors": [connector], "tasks": []})
    with caplog.at_level(logging.WARNING):
        found = await check_credentials(services, config, now=NOW)
    await services.aclose()
    assert found == []
    assert "grant Application.Read.All" in caplog.text
    assert weak["client_secret"] not in caplog.text


def _pkcs12(pem_file: str) -> tuple[str, x509.Certificate]:
    text = Path(pem_file).read_bytes()
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(text, password=None)
    certificate = x509.load_pem_x509_certificates(text)[0]
    data = pkcs12.serialize_key_and_certificates(b"connector", key, certificate, None, NoEncryption())  # type: ignore[arg-type]
    return base64.b64encode(data).decode(), certificate


async def test_certificate_expiry_is_read_from_the_certificate(graph, services, environ):
    pem = Path(graph.info.client_certificate).read_text()
    environ["LOCAL_CERT"] = pem
    connector = {
        **graph.info.connector("cert", "unused"),
        "credential": {"type": "certificate", "certificate": {"app_setting": "LOCAL_CERT"}},
    }
    config = parse_config({"connectors": [connector], "tasks": []})
    found = await check_credentials(services, config, now=NOW)
    certificate = x509.load_pem_x509_certificates(pem.encode())[0]
    assert [(f.credential_kind, f.key_id, f.expires_on) for f in found] == [
        ("certificate", certificate.fingerprint(hashes.SHA1()).hex().upper(), certificate.not_valid_after_utc)
    ]
    # The same certificate as base64 PKCS#12 gives the same answer.
    encoded, _ = _pkcs12(graph.info.client_certificate)
    assert certificate_expiry(encoded) == (found[0].key_id, found[0].expires_on)


def test_an_unreadable_certificate_is_a_clear_error():
    with pytest.raises(ValueError, match="neither PEM text nor base64 PKCS#12"):
        certificate_expiry("not a certificate")
