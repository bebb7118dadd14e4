"""The Microsoft identity platform's client-credentials flow, as azure-identity (MSAL) uses it.

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: MSAL's tenant discovery document.
- ``POST /{tenant}/oauth2/v2.0/token``: ``grant_type=client_credentials`` with a client secret or a
  certificate-signed client assertion (signature checked against the registered certificate, audience,
  issuer, subject, validity window). Errors use the platform's body (``error``, ``error_description``
  starting with the AADSTS code, ``error_codes``, ``trace_id``, ``correlation_id``, ``timestamp``).
- Access tokens are RS256 JWTs that expire (configurable lifetime); :meth:`TokenService.authenticate`
  checks them on every Graph call and answers Graph's 401 ``InvalidAuthenticationToken`` otherwise.
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from localgraph.errors import GraphError
from localgraph.routing import Caller
from localgraph.tenant import AppRegistration, Tenant

GRAPH_RESOURCE = "https://graph.microsoft.com"
# Other Microsoft resources every tenant has: the token endpoint issues tokens for them (as Entra does), and
# Graph refuses them (401), which is how a client that asked for the wrong scope finds out.
OTHER_RESOURCES = frozenset(
    {"https://management.azure.com", "https://vault.azure.net", "https://storage.azure.com"}
)
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW_S = 300


class TokenError(Exception):
    """An identity-platform error response."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(f"{error}: AADSTS{aadsts}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description

    def body(self) -> dict[str, Any]:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.aadsts}: {self.description}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}",
            "error_codes": [self.aadsts],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.aadsts}",
        }


def register_certificate(app: AppRegistration, cert: x509.Certificate) -> None:
    from cryptography.hazmat.primitives import hashes

    thumbprint = cert.fingerprint(hashes.SHA1())
    app.cert_thumbprints_sha1.append(thumbprint)
    app.cert_public_keys[thumbprint] = cert.public_key()
    app.cert_public_keys[cert.fingerprint(hashes.SHA256())] = cert.public_key()


class TokenService:
    def __init__(self, tenant: Tenant, signing_key: rsa.RSAPrivateKey, lifetime) -> None:
        self.tenant = tenant
        self._key = signing_key
        self._public = signing_key.public_key()
        self._lifetime = lifetime  # callable returning the current lifetime in seconds
        self._issued: list[str] = []  # token ids (uti) issued and not revoked
        self._revoked: set[str] = set()
        self.kid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")

    # ----------------------------------------------------------------------------------------------
    def known_tenant(self, tenant: str) -> bool:
        wanted = tenant.lower()
        return wanted == self.tenant.tenant_id or wanted in (d.lower() for d in self.tenant.verified_domains)

    def openid_configuration(self, origin: str, tenant: str) -> dict[str, Any]:
        if not self.known_tenant(tenant) and tenant.lower() not in ("common", "organizations"):
            raise TokenError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        tid = self.tenant.tenant_id
        return {
            "token_endpoint": f"{origin}/{tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{origin}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{origin}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{origin}/oidc/userinfo",
            "authorization_endpoint": f"{origin}/{tenant}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{origin}/{tenant}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{origin}/{tenant}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self._public.public_numbers()

        def b64(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        return {
            "keys": [{"kty": "RSA", "use": "sig", "kid": self.kid, "n": b64(numbers.n), "e": b64(numbers.e)}]
        }

    # ----------------------------------------------------------------------------------------------
    def issue(
        self, tenant: str, form_body: bytes, token_endpoint: str, graph_origins: set[str]
    ) -> dict[str, Any]:
        """Handle a token request; returns the success body or raises :class:`TokenError`."""
        if not self.known_tenant(tenant):
            raise TokenError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud.",
            )
        form = dict(parse_qsl(form_body.decode("utf-8", "replace"), keep_blank_values=True))
        grant = form.get("grant_type")
        if grant != "client_credentials":
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id = (form.get("client_id") or "").lower()
        app = self.tenant.apps.get(client_id)
        if app is None:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant.domain}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant.",
            )
        scope = form.get("scope", "")
        resource = self._resource(scope, graph_origins)
        if "client_assertion" in form:
            self._check_assertion(app, form, token_endpoint)
        elif "client_secret" in form:
            if form["client_secret"] not in app.secrets:
                raise TokenError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the "
                    "client secret value, not the client secret ID, for a secret added to app "
                    f"'{app.client_id}'.",
                )
        else:
            raise TokenError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        token, lifetime = self.mint(app, resource)
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }

    def mint(self, app: AppRegistration, resource: str) -> tuple[str, int]:
        """An app-only access token for ``resource``: (JWT, lifetime in seconds)."""
        lifetime = int(self._lifetime())
        now = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "appid": app.client_id,
            "app_displayname": app.display_name,
            "idtyp": "app",
            "oid": app.client_id,
            "roles": sorted(app.roles),
            "sub": app.client_id,
            "tid": self.tenant.tenant_id,
            "uti": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
            "ver": "1.0",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})
        self._issued.append(claims["uti"])
        return token, lifetime

    def revoke_all(self) -> int:
        """Refuse every token issued so far (as after a signing-key rollover or an admin's revocation)."""
        self._revoked.update(self._issued)
        count = len(self._issued)
        self._issued.clear()
        return count

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this service issued and that has not expired, else None."""
        try:
            return jwt.decode(token, self._public, algorithms=["RS256"], options={"verify_aud": False})
        except jwt.PyJWTError:
            return None

    def _resource(self, scope: str, graph_origins: set[str]) -> str:
        scopes = scope.split()
        if len(scopes) == 1 and scopes[0].endswith("/.default"):
            resource = scopes[0][: -len("/.default")].rstrip("/")
            if resource in graph_origins or resource == GRAPH_RESOURCE or resource in OTHER_RESOURCES:
                return resource
            # An application of the tenant exposing an API under this application ID URI (Entra issues app-only
            # tokens for it: https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
            if any(
                resource in (app.props.get("identifierUris") or ()) for app in self.tenant.live("application")
            ):
                return resource
            raise TokenError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.tenant.domain}.",
            )
        raise TokenError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
            "value with /.default suffixed to the resource identifier (application ID URI).",
        )

    def _check_assertion(self, app: AppRegistration, form: dict[str, str], token_endpoint: str) -> None:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise TokenError(400, "invalid_request", 50027, "Invalid client_assertion_type.")
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise TokenError(
                401, "invalid_client", 50027, f"JWT token is invalid or malformed. {exc}"
            ) from None
        key = None
        for name in ("x5t#S256", "x5t"):
            if name in header:
                try:
                    thumbprint = base64.urlsafe_b64decode(header[name] + "=" * (-len(header[name]) % 4))
                except ValueError:
                    thumbprint = b""
                key = app.cert_public_keys.get(thumbprint)
                if key is not None:
                    break
        if key is None:
            raise TokenError(
                401,
                "invalid_client",
                700027,
                f"The certificate with identifier used to sign the client assertion is not registered on "
                f"application. [Reason - The key was not found., Thumbprint of key used by client: "
                f"'{header.get('x5t', header.get('x5t#S256', ''))}']",
            )
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256", "PS256"],
                audience=token_endpoint,
                options={"require": ["exp", "aud", "iss", "sub"]},
                leeway=CLOCK_SKEW_S,
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(
                401, "invalid_client", 700024, "Client assertion is not within its valid time range."
            ) from None
        except jwt.InvalidAudienceError:
            raise TokenError(
                401,
                "invalid_client",
                50027,
                f"Invalid JWT token. Token audience is not valid; expected '{token_endpoint}'.",
            ) from None
        except jwt.InvalidSignatureError:
            raise TokenError(
                401, "invalid_client", 700027, "Client assertion failed signature validation."
            ) from None
        except jwt.PyJWTError as exc:
            raise TokenError(
                401, "invalid_client", 50027, f"JWT token is invalid or malformed. {exc}"
            ) from None
        if claims.get("iss", "").lower() != app.client_id or claims.get("sub", "").lower() != app.client_id:
            raise TokenError(
                401, "invalid_client", 700023, "Client assertion audience claim does not match Realm issuer."
            )

    # ----------------------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None, graph_origins: set[str]) -> Caller:
        """Check a Graph call's bearer token; raise Graph's 401 if it is missing, invalid or expired."""
        challenge = {
            "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
            'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
        }
        if (
            not authorization
            or not authorization.lower().startswith("bearer ")
            or not authorization[7:].strip()
        ):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", headers=challenge)
        token = authorization[7:].strip()
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=["RS256"],
                options={"verify_aud": False, "require": ["exp", "aud", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token has expired.", headers=challenge
            ) from None
        except jwt.InvalidSignatureError:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure.", headers=challenge
            ) from None
        except jwt.DecodeError:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "CompactToken parsing failed with error code: 80049217",
                headers=challenge,
            ) from None
        except jwt.PyJWTError:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure.", headers=challenge
            ) from None
        if claims.get("uti") in self._revoked:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure.", headers=challenge
            )
        if claims["aud"] not in graph_origins and claims["aud"] != GRAPH_RESOURCE:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
                headers=challenge,
            )
        if claims["tid"] != self.tenant.tenant_id:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure.", headers=challenge
            )
        return Caller(client_id=claims.get("appid", ""), roles=frozenset(claims.get("roles", ())))
