"""Clients for a running local Graph: the control API, and an authenticated Graph HTTP client.

Used by the tests, the benchmark and the demo. The Graph client gets its token from the real
azure-identity ``ClientSecretCredential``, through the local identity endpoints.
"""

from __future__ import annotations

from typing import Any

import httpx
from azure.identity import ClientSecretCredential

from localgraph.server import ConnectionInfo


class ControlClient:
    """``/_control`` over HTTPS (see :mod:`localgraph.control` for what each call does)."""

    def __init__(self, info: ConnectionInfo, timeout: float = 120.0) -> None:
        self.info = info
        self._http = httpx.Client(base_url=info.control_url, verify=info.tls_context(), timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"control {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def tenant_info(self) -> dict[str, Any]:
        return self._call("GET", "/info")

    def requests(self) -> dict[str, Any]:
        return self._call("GET", "/requests")

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def settings(self, **changes: Any) -> dict[str, Any]:
        return self._call("PATCH", "/settings", json=changes) if changes else self._call("GET", "/settings")

    def set_faults(self, *rules: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "/faults", json={"rules": list(rules)})

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def objects(self, collection: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/objects/{collection}")["value"]

    def get(self, collection: str, object_id: str) -> dict[str, Any]:
        return self._call("GET", f"/objects/{collection}/{object_id}")

    def create(self, collection: str, props: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/objects/{collection}", json=props)

    def update(self, collection: str, object_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/objects/{collection}/{object_id}", json=changes)

    def delete(self, collection: str, object_id: str, *, hard: bool = False) -> None:
        self._call("DELETE", f"/objects/{collection}/{object_id}", params={"hard": str(hard).lower()})

    def restore(self, collection: str, object_id: str) -> dict[str, Any]:
        return self._call("POST", f"/objects/{collection}/{object_id}/restore")

    def members(self, group_id: str, add: list[str] = (), remove: list[str] = ()) -> list[str]:
        return self._call(
            "POST", f"/groups/{group_id}/members", json={"add": list(add), "remove": list(remove)}
        )["members"]

    def set_manager(self, user_id: str, manager_id: str | None) -> None:
        self._call("PUT", f"/users/{user_id}/manager", json={"id": manager_id})

    def churn(self, fraction: float, seed: int = 1) -> dict[str, Any]:
        return self._call("POST", "/churn", json={"fraction": fraction, "seed": seed})

    def invalidate_delta_tokens(self, mode: str = "syncStateNotFound") -> dict[str, Any]:
        return self._call("POST", "/delta/invalidate", json={"mode": mode})

    def add_app(self, roles: list[str], display_name: str = "Extra app") -> dict[str, Any]:
        return self._call("POST", "/apps", json={"roles": roles, "display_name": display_name})

    def revoke_tokens(self) -> int:
        """Make Graph refuse every access token issued so far; returns how many."""
        return self._call("POST", "/tokens/revoke")["revoked"]

    def set_vault_secret(self, name: str, value: str) -> str:
        """Store a Key Vault secret (``{info.key_vault_url}/secrets/{name}``); returns its id."""
        return self._call("PUT", f"/vault/secrets/{name}", json={"value": value})["id"]

    def refuse_vault_writes(self, after: int | None = 0) -> None:
        """Let ``after`` more Set Secret calls through, then answer Key Vault's 403 (``None``: writes allowed)."""
        self._call("PUT", "/vault/writes", json={"refuse_after": after})

    def close(self) -> None:
        self._http.close()


def credential(info: ConnectionInfo, client_id: str | None = None, secret: str | None = None):
    return ClientSecretCredential(
        info.tenant_id,
        client_id or info.client_id,
        secret or info.client_secret,
        authority=info.authority_url,
        disable_instance_discovery=True,
        connection_verify=info.ca_file,
    )


def graph_client(
    info: ConnectionInfo, *, client_id: str | None = None, secret: str | None = None
) -> httpx.Client:
    """An httpx client for ``info.graph_base_url`` with a bearer token from ClientSecretCredential."""
    with credential(info, client_id, secret) as source:  # closed: no idle connection left to the server
        token = source.get_token(f"{info.graph_url}/.default").token
    return httpx.Client(
        base_url=info.graph_base_url,
        verify=info.tls_context(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=60.0,
    )
