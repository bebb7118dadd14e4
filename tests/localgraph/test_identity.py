"""The identity platform's client-credentials flow and Graph's token checks [docs/graph-behaviour.md sections 6 and 9].

Tokens come from the real azure-identity credentials (``ClientSecretCredential``, ``CertificateCredential``)
through the local HTTPS authority, or from raw token requests where the wire format itself is under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import httpx
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential
from cryptography.hazmat.primitives import serialization

from localgraph import tls
from localgraph.client import credential
from localgraph.server import LocalGraph

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def token_url(graph: LocalGraph, tenant: str | None = None) -> str:
    return f"{graph.info.authority_url}/{tenant or graph.info.tenant_id}/oauth2/v2.0/token"


def post_token(graph: LocalGraph, form: dict[str, str], tenant: str | None = None) -> httpx.Response:
    return httpx.post(token_url(graph, tenant), data=form, verify=graph.info.tls_context())


def secret_form(graph: LocalGraph, **overrides: str) -> dict[str, str]:
    form = {
        "client_id": graph.info.client_id,
        "client_secret": graph.info.client_secret,
        "scope": f"{graph.info.graph_url}/.default",
        "grant_type": "client_credentials",
    }
    form.update(overrides)
    return form


def call_graph(graph: LocalGraph, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(
        f"{graph.info.graph_base_url}/users?$top=1", headers=headers, verify=graph.info.tls_context()
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def secret_credential(graph: LocalGraph, client_id: str | None = None, secret: str | None = None):
    return credential(graph.info, client_id, secret)


def certificate_credential(graph: LocalGraph, certificate_path: str):
    info = graph.info
    return CertificateCredential(
        info.tenant_id,
        info.client_id,
        certificate_path=certificate_path,
        authority=info.authority_url,
        disable_instance_discovery=True,
        connection_verify=info.ca_file,
    )


def client_assertion(graph: LocalGraph, **claims) -> str:
    """A client assertion as MSAL builds it, signed with the registered client certificate's key."""
    cert = graph.tls.client.cert
    der = cert.public_bytes(serialization.Encoding.DER)
    x5t = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")
    now = int(time.time())
    payload = {
        "aud": token_url(graph),
        "iss": graph.info.client_id,
        "sub": graph.info.client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
    }
    payload.update(claims)
    return jwt.encode(payload, graph.tls.client.key, algorithm="RS256", headers={"x5t": x5t})


def assertion_form(graph: LocalGraph, assertion: str) -> dict[str, str]:
    return {
        "client_id": graph.info.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": f"{graph.info.graph_url}/.default",
        "grant_type": "client_credentials",
    }


def assert_identity_error(response: httpx.Response, status: int, error: str, aadsts: int) -> None:
    """The identity platform's error body [docs/graph-behaviour.md section 9]."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [aadsts]
    description = body["error_description"]
    assert description.startswith(f"AADSTS{aadsts}:")
    lines = description.split("\r\n")
    assert lines[1].startswith("Trace ID: ")
    assert lines[2].startswith("Correlation ID: ")
    assert lines[3].startswith("Timestamp: ")
    assert lines[1].removeprefix("Trace ID: ") == body["trace_id"]
    assert lines[2].removeprefix("Correlation ID: ") == body["correlation_id"]
    assert body["error_uri"] == f"https://login.microsoftonline.com/error?code={aadsts}"
    assert body["timestamp"]


def assert_invalid_token(response: httpx.Response, message: str | None = None) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    if message is not None:
        assert error["message"] == message
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


# ------------------------------------------------------------------------------------------- discovery


def test_openid_configuration_names_the_token_endpoint_issuer_and_authorization_endpoint(graph):
    info = graph.info
    response = httpx.get(
        f"{info.authority_url}/{info.tenant_id}/v2.0/.well-known/openid-configuration",
        verify=info.tls_context(),
    )
    assert response.status_code == 200
    document = response.json()
    assert document["token_endpoint"] == f"{info.authority_url}/{info.tenant_id}/oauth2/v2.0/token"
    assert document["issuer"] == f"{info.authority_url}/{info.tenant_id}/v2.0"
    assert (
        document["authorization_endpoint"] == f"{info.authority_url}/{info.tenant_id}/oauth2/v2.0/authorize"
    )
    assert document["token_endpoint"].startswith("https://")


def test_openid_configuration_is_served_for_the_tenant_domain_and_refused_for_an_unknown_tenant(graph):
    info = graph.info
    by_domain = httpx.get(
        f"{info.authority_url}/{info.tenant_domain}/v2.0/.well-known/openid-configuration",
        verify=info.tls_context(),
    )
    assert by_domain.status_code == 200
    assert (
        by_domain.json()["token_endpoint"] == f"{info.authority_url}/{info.tenant_domain}/oauth2/v2.0/token"
    )
    unknown = httpx.get(
        f"{info.authority_url}/{uuid.uuid4()}/v2.0/.well-known/openid-configuration",
        verify=info.tls_context(),
    )
    assert unknown.status_code == 400
    assert unknown.json()["error_codes"] == [90002]


# ------------------------------------------------------------------------------------------ credentials


def test_client_secret_credential_obtains_a_token_graph_accepts(graph):
    with secret_credential(graph) as credential:
        token = credential.get_token(f"{graph.info.graph_url}/.default")
    assert token.expires_on > time.time()
    assert call_graph(graph, bearer(token.token)).status_code == 200


def test_client_secret_credential_accepts_the_public_graph_scope(graph):
    with secret_credential(graph) as credential:
        token = credential.get_token("https://graph.microsoft.com/.default")
    assert call_graph(graph, bearer(token.token)).status_code == 200


def test_certificate_credential_obtains_a_token_graph_accepts(graph):
    with certificate_credential(graph, graph.info.client_certificate) as credential:
        token = credential.get_token(f"{graph.info.graph_url}/.default")
    assert call_graph(graph, bearer(token.token)).status_code == 200


def test_token_response_has_the_configured_lifetime(graph, control):
    control.settings(token_lifetime_s=1234)
    response = post_token(graph, secret_form(graph))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1234
    assert body["ext_expires_in"] == 1234
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 1234
    assert claims["tid"] == graph.info.tenant_id
    assert claims["appid"] == graph.info.client_id


# --------------------------------------------------------------------------------------- refused clients


def test_wrong_client_secret_is_refused_by_the_credential(graph):
    with (
        secret_credential(graph, secret="not-the-secret") as credential,
        pytest.raises(ClientAuthenticationError) as raised,
    ):
        credential.get_token(f"{graph.info.graph_url}/.default")
    assert "AADSTS7000215" in str(raised.value)


def test_wrong_client_secret_is_401_invalid_client_7000215(graph):
    response = post_token(graph, secret_form(graph, client_secret="not-the-secret"))
    assert_identity_error(response, 401, "invalid_client", 7000215)
    assert "Invalid client secret provided." in response.json()["error_description"]


def test_unknown_client_id_is_refused_with_700016(graph):
    response = post_token(graph, secret_form(graph, client_id=str(uuid.uuid4())))
    assert_identity_error(response, 400, "unauthorized_client", 700016)
    with (
        secret_credential(graph, client_id=str(uuid.uuid4())) as credential,
        pytest.raises(ClientAuthenticationError) as raised,
    ):
        credential.get_token(f"{graph.info.graph_url}/.default")
    assert "AADSTS700016" in str(raised.value)


def test_token_request_for_an_unknown_tenant_is_refused_with_90002(graph):
    response = post_token(graph, secret_form(graph), tenant=str(uuid.uuid4()))
    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_certificate_not_registered_on_the_app_is_refused_with_700027(graph, tmp_path):
    ca = tls.make_ca()
    stranger = tls.issue(ca, "not-registered", server=False)
    pem = tmp_path / "stranger.pem"
    pem.write_bytes(stranger.key_pem + stranger.cert_pem)
    with (
        certificate_credential(graph, str(pem)) as credential,
        pytest.raises(ClientAuthenticationError) as raised,
    ):
        credential.get_token(f"{graph.info.graph_url}/.default")
    assert "AADSTS700027" in str(raised.value)


def test_hand_built_client_assertion_is_accepted(graph):
    response = post_token(graph, assertion_form(graph, client_assertion(graph)))
    assert response.status_code == 200, response.text
    assert call_graph(graph, bearer(response.json()["access_token"])).status_code == 200


def test_client_assertion_for_another_audience_is_refused(graph):
    assertion = client_assertion(graph, aud="https://login.microsoftonline.com/common/oauth2/v2.0/token")
    response = post_token(graph, assertion_form(graph, assertion))
    assert_identity_error(response, 401, "invalid_client", 50027)


def test_expired_client_assertion_is_refused_with_700024(graph):
    long_ago = int(time.time()) - 3600
    assertion = client_assertion(graph, nbf=long_ago - 600, iat=long_ago - 600, exp=long_ago)
    response = post_token(graph, assertion_form(graph, assertion))
    assert_identity_error(response, 401, "invalid_client", 700024)


def test_client_assertion_signed_with_another_key_is_refused(graph):
    """The x5t names the registered certificate, but another key signed the assertion."""
    cert = graph.tls.client.cert
    x5t = base64.urlsafe_b64encode(hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest())
    now = int(time.time())
    claims = {
        "aud": token_url(graph),
        "iss": graph.info.client_id,
        "sub": graph.info.client_id,
        "exp": now + 600,
    }
    forged = jwt.encode(
        claims, graph.tls.server.key, algorithm="RS256", headers={"x5t": x5t.decode().rstrip("=")}
    )
    response = post_token(graph, assertion_form(graph, forged))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_scope_without_default_suffix_is_invalid_scope(graph):
    response = post_token(graph, secret_form(graph, scope="https://graph.microsoft.com/User.Read.All"))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_scope"
    assert body["error_description"].startswith(f"AADSTS{body['error_codes'][0]}:")
    with secret_credential(graph) as credential, pytest.raises(ClientAuthenticationError):
        credential.get_token("https://graph.microsoft.com/User.Read.All")


def test_token_request_without_any_client_credential_is_refused(graph):
    form = secret_form(graph)
    del form["client_secret"]
    response = post_token(graph, form)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_failed_token_requests_are_counted(graph, control):
    post_token(graph, secret_form(graph, client_secret="wrong"))
    post_token(graph, secret_form(graph))
    summary = control.requests()
    assert summary["token_requests"] == 2
    assert summary["token_failures"] == 1


# ------------------------------------------------------------------------------------- Graph's checks


def test_graph_call_without_a_token_is_401_access_token_is_empty(graph):
    response = call_graph(graph, {})
    assert_invalid_token(response, "Access token is empty.")
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
        'client_id="00000003-0000-0000-c000-000000000000"'
    )


def test_graph_call_with_an_empty_bearer_is_401_access_token_is_empty(graph):
    assert_invalid_token(call_graph(graph, {"Authorization": "Bearer"}), "Access token is empty.")


def test_graph_call_with_a_garbage_token_is_401(graph):
    assert_invalid_token(
        call_graph(graph, bearer("not-a-jwt")), "CompactToken parsing failed with error code: 80049217"
    )


def test_graph_call_with_a_tampered_token_is_401(graph):
    token = post_token(graph, secret_form(graph)).json()["access_token"]
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["roles"] = [*claims["roles"], "RoleManagement.ReadWrite.Directory"]
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert_invalid_token(call_graph(graph, bearer(f"{header}.{forged_payload}.{signature}")))


def test_graph_call_with_an_expired_token_is_401_access_token_has_expired(graph, control):
    control.settings(token_lifetime_s=1)
    response = post_token(graph, secret_form(graph))
    assert response.json()["expires_in"] == 1
    token = response.json()["access_token"]
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    assert_invalid_token(call_graph(graph, bearer(token)), "Access token has expired.")


def test_token_for_another_resource_is_refused_by_graph(graph):
    with secret_credential(graph) as credential:
        token = credential.get_token("https://management.azure.com/.default")
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["aud"] == "https://management.azure.com"
    assert_invalid_token(
        call_graph(graph, bearer(token.token)), "Access token validation failure. Invalid audience."
    )


def test_token_for_another_tenant_is_refused_by_graph(graph):
    now = int(time.time())
    claims = {"aud": graph.info.graph_url, "tid": str(uuid.uuid4()), "appid": graph.info.client_id,
              "iat": now, "nbf": now, "exp": now + 600, "roles": ["User.Read.All"]}  # fmt: skip
    token = jwt.encode(
        claims, graph.tls.server.key, algorithm="RS256", headers={"kid": graph.ctx.identity.kid}
    )
    assert_invalid_token(call_graph(graph, bearer(token)))


def test_unauthenticated_calls_are_logged_as_401(graph, control):
    call_graph(graph, {})
    assert control.requests()["statuses"] == {"401": 1}
