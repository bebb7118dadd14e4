"""Azure platform endpoints a connector meets besides Graph, for tests and the demo.

- **Managed identity (App Service / Functions):** ``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...``
  with the ``X-IDENTITY-HEADER`` secret, answering ``{"access_token", "expires_on", "resource", "token_type",
  "client_id"}`` as the platform's local token service does. azure-identity's ``ManagedIdentityCredential`` uses
  it when ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set. The identity is an app of the tenant with the
  same application permissions as the connector's app registration (its client id is in the connection info).
- **Key Vault secrets:** ``GET /secrets/{name}[/{version}]?api-version=...``: a request without a token gets
  Key Vault's 401 bearer challenge (``authorization`` = the tenant's authority, ``resource`` =
  ``https://vault.azure.net``); with a valid token for that resource, the secret bundle
  (``value``, ``id``, ``attributes``). Secrets are set through the control API, or with Key Vault's own
  ``PUT /secrets/{name}`` (Set Secret, same token rules) as ``SecretClient.set_secret`` sends it. Key Vault clients must be told
  not to insist that the vault's host is under ``vault.azure.net`` (``verify_challenge_resource=False``).
  ``DELETE /secrets/{name}`` soft-deletes (``GET``/``DELETE /deletedsecrets/{name}``: read, purge); setting a
  deleted name answers 409 ``ObjectIsDeletedButRecoverable`` as a vault with soft delete does.
  ``PUT /_control/vault/writes {"refuse_after": N}`` lets N more Set Secret calls through, then answers each with
  Key Vault's 403 ``ForbiddenByRbac`` (an identity without a role that may set secrets); ``null`` lifts it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

VAULT_RESOURCE = "https://vault.azure.net"


def _vault_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def _forbidden(name: str) -> JSONResponse:
    """Key Vault's answer to a caller without a data-plane role for the action (RBAC vaults):
    https://learn.microsoft.com/azure/key-vault/general/rbac-guide#troubleshooting"""
    message = (
        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or "
        "role definitions were changed recently, please observe propagation time.\r\n"
        "Action: 'Microsoft.KeyVault/vaults/secrets/setSecret/action'\r\n"
        f"Resource: '/secrets/{name}'\r\nAssignment: (not found)\r\n"
    )
    return JSONResponse(
        {"error": {"code": "Forbidden", "message": message, "innererror": {"code": "ForbiddenByRbac"}}}, 403
    )


def routes(ctx) -> list[Route]:
    writes: dict[str, int | None] = {"refuse_after": None}  # the control switch: Set Secret calls left
    deleted: dict[str, dict[str, Any]] = {}  # soft-deleted secrets: name -> secret and deletion date

    async def identity_token(request: Request) -> Response:
        if request.headers.get("x-identity-header") != ctx.identity_header:
            return JSONResponse(
                {"statusCode": 401, "message": "The X-IDENTITY-HEADER header is missing or wrong."}, 401
            )
        resource = request.query_params.get("resource", "").removesuffix("/.default").rstrip("/")
        client_id = request.query_params.get("client_id")
        app = ctx.tenant.apps.get(ctx.managed_identity_client_id)
        if app is None or (client_id and client_id.lower() != app.client_id):
            return JSONResponse(
                {"statusCode": 400, "message": f"No identity with client_id {client_id}."}, 400
            )
        if not resource:
            return JSONResponse({"statusCode": 400, "message": "The resource parameter is required."}, 400)
        ctx.log.token_requests += 1
        token, lifetime = ctx.identity.mint(app, resource)
        return JSONResponse(
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + lifetime),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": app.client_id,
            }
        )

    async def secret(request: Request) -> Response:
        refused = _unauthorized(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        if request.method == "DELETE":
            # Delete Secret: https://learn.microsoft.com/rest/api/keyvault/secrets/delete-secret/delete-secret
            if name not in ctx.vault_secrets:
                return _vault_error(
                    404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
                )
            deleted[name] = {"secret": ctx.vault_secrets.pop(name), "deleted": int(time.time())}
            return JSONResponse(_deleted_bundle(name))
        if request.method == "PUT":
            if name in deleted:
                return JSONResponse(
                    {
                        "error": {
                            "code": "Conflict",
                            "message": f"Secret {name} is currently in a deleted but recoverable state, and its "
                            "name cannot be reused; in this state, the secret can only be recovered or purged.",
                            "innererror": {"code": "ObjectIsDeletedButRecoverable"},
                        }
                    },
                    409,
                )
            left = writes["refuse_after"]
            if left is not None:
                if left <= 0:
                    return _forbidden(name)
                writes["refuse_after"] = left - 1
        return await _read_or_set(request, name)

    def _deleted_bundle(name: str) -> dict[str, Any]:
        item = deleted[name]
        return {
            "recoveryId": f"{ctx.origin}/deletedsecrets/{name}",
            "deletedDate": item["deleted"],
            "scheduledPurgeDate": item["deleted"] + 90 * 86400,
            "id": f"{ctx.origin}/secrets/{name}/{item['secret']['version']}",
            "attributes": {"enabled": True, "recoveryLevel": "Recoverable+Purgeable"},
        }

    async def deleted_secret(request: Request) -> Response:
        refused = _unauthorized(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        if name not in deleted:
            return _vault_error(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        if request.method == "DELETE":  # Purge Deleted Secret: 204
            del deleted[name]
            return Response(status_code=204)
        return JSONResponse(_deleted_bundle(name))

    async def vault_writes(request: Request) -> Response:
        value = (await request.json()).get("refuse_after")
        writes["refuse_after"] = None if value is None else int(value)
        return JSONResponse(dict(writes))

    def _unauthorized(request: Request) -> Response | None:
        authorization = request.headers.get("authorization", "")
        challenge = {
            "WWW-Authenticate": f'Bearer authorization="{ctx.origin}/{ctx.tenant.tenant_id}", '
            f'resource="{VAULT_RESOURCE}"'
        }
        if not authorization.lower().startswith("bearer "):
            return _vault_error(
                401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", challenge
            )
        claims = ctx.identity.claims(authorization[7:].strip())
        if claims is None or claims.get("aud") != VAULT_RESOURCE:
            return _vault_error(
                401, "Unauthorized", "AKV10022: Invalid audience or expired token.", challenge
            )
        return None

    async def _read_or_set(request: Request, name: str) -> Response:
        if request.method == "PUT":
            # Set Secret: https://learn.microsoft.com/rest/api/keyvault/secrets/set-secret/set-secret
            data = await request.json()
            if not isinstance(data, dict) or not isinstance(data.get("value"), str):
                return _vault_error(400, "BadParameter", "The parameter value is required.")
            ctx.vault_secrets[name] = {
                "value": data["value"],
                "version": uuid.uuid4().hex,
                "created": int(time.time()),
            }
        stored = ctx.vault_secrets.get(name)
        version = request.path_params.get("version")
        if stored is None or (version and version != stored["version"]):
            return _vault_error(
                404, "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
            )
        body: dict[str, Any] = {
            "value": stored["value"],
            "id": f"{ctx.origin}/secrets/{name}/{stored['version']}",
            "attributes": {
                "enabled": True,
                "created": stored["created"],
                "updated": stored["created"],
                "recoveryLevel": "Recoverable+Purgeable",
            },
            "tags": {},
        }
        return JSONResponse(body)

    async def set_secret(request: Request) -> Response:
        data = await request.json()
        name = request.path_params["name"]
        ctx.vault_secrets[name] = {
            "value": str(data["value"]),
            "version": uuid.uuid4().hex,
            "created": int(time.time()),
        }
        return JSONResponse({"id": f"{ctx.origin}/secrets/{name}/{ctx.vault_secrets[name]['version']}"})

    return [
        Route("/msi/token", identity_token),
        Route("/secrets/{name}", secret, methods=["GET", "PUT", "DELETE"]),
        Route("/secrets/{name}/{version}", secret),
        Route("/deletedsecrets/{name}", deleted_secret, methods=["GET", "DELETE"]),
        Route("/_control/vault/secrets/{name}", set_secret, methods=["PUT"]),
        Route("/_control/vault/writes", vault_writes, methods=["PUT"]),
    ]
