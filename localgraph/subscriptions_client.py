"""A client for ``/_control/subscriptions`` (see :mod:`localgraph.subscriptions`), for tests and the benchmark."""

from __future__ import annotations

from typing import Any

import httpx

from localgraph.server import ConnectionInfo


class SubscriptionControl:
    def __init__(self, info: ConnectionInfo, timeout: float = 60.0) -> None:
        self._http = httpx.Client(base_url=info.control_url, verify=info.tls_context(), timeout=timeout)

    def _call(self, method: str, path: str = "", **kwargs: Any) -> Any:
        response = self._http.request(method, f"/subscriptions{path}", **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(
                f"control {method} subscriptions{path}: {response.status_code} {response.text}"
            )
        return response.json()

    def subscriptions(self) -> list[dict[str, Any]]:
        """Every live subscription (all apps), with ``reauthorizationRequired``."""
        return self._call("GET")["value"]

    def endpoints(self) -> dict[str, str]:
        """Graph's judgement of each notification endpoint: normal | slow | dropped."""
        return self._call("GET")["endpoints"]

    def settings(self, **changes: Any) -> dict[str, Any]:
        return self._call("PATCH", "/settings", json=changes) if changes else self._call("GET", "/settings")

    def deliveries(self) -> list[dict[str, Any]]:
        return self._call("GET", "/deliveries")["value"]

    def clear_deliveries(self) -> None:
        self._call("DELETE", "/deliveries")

    def remove(self, subscription_id: str) -> None:
        """Graph drops the subscription (renewal answers 404)."""
        self._call("DELETE", f"/{subscription_id}")

    def expire(self, subscription_id: str) -> None:
        self._call("POST", f"/{subscription_id}/expire")

    def require_reauthorization(self, subscription_id: str) -> None:
        """Send ``reauthorizationRequired`` to the lifecycle URL; delivery pauses until the app acts."""
        self._call("POST", f"/{subscription_id}/reauthorization-required")

    def close(self) -> None:
        self._http.close()
