"""Loading batches into the platform's web API: one POST per batch, ``Idempotency-Key`` = the batch id.

Retries follow the connector's one retry table (:mod:`shared.retry`, the same as Graph calls): 429 always,
after ``Retry-After`` or backoff; 503/504 and transport failures after which the server may have acted are
retried as for an idempotent method, because a POST carrying an ``Idempotency-Key`` is safe to repeat (the
receiver answers a repeated key with its first outcome: IETF draft "The Idempotency-Key HTTP Header
Field"); other answers are final. Waits stop at the run's deadline.

Authentication: a bearer token from Entra ID for the endpoint's scope, obtained with the task's
connector credential (azure-identity, renewed before expiry and once after a 401), or an API key read from
its secret reference for each load (a rotated key is picked up).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx

from shared.config import Connector
from shared.config.delivery import ApiKeyAuth, LoadEndpoint
from shared.credentials import build_credential
from shared.delivery.batches import Batch
from shared.graph.auth import TokenProvider
from shared.retry import Action, RetryPolicy, classify, parse_retry_after
from shared.secrets import KeyVaultReader, resolve_secret

log = logging.getLogger(__name__)

_tokens: dict[tuple[str, str], TokenProvider] = {}  # (connector definition, scope) -> provider, per process


class LoadError(Exception):
    """The receiver refused a batch, or could not be reached before the deadline."""

    def __init__(self, message: str, *, status: int = 0, action: Action = Action.FIX) -> None:
        super().__init__(message)
        self.status = status
        self.action = action


def token_provider(
    connector: Connector, scope: str, *, environ: Mapping[str, str], key_vault: KeyVaultReader | None
) -> TokenProvider:
    """One provider per connector definition and scope in this process (tokens are shared by runs)."""
    signature = (connector.model_dump_json(), scope)
    provider = _tokens.get(signature)
    if provider is None:

        def credential():
            return build_credential(connector, environ=environ, key_vault=key_vault)

        provider = TokenProvider(credential(), scope, renew=credential)
        _tokens[signature] = provider
    return provider


class Receiver:
    """The platform's web API for one task's load."""

    def __init__(
        self,
        endpoint: LoadEndpoint,
        *,
        tokens: TokenProvider | None = None,
        api_key: str | None = None,
        verify: Any = True,
        policy: RetryPolicy | None = None,
        deadline: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.tokens = tokens
        self.api_key = api_key
        self.policy = policy or RetryPolicy()
        self.deadline = deadline
        self.requests = 0
        self.retries = 0
        self._http = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(endpoint.timeout_s, connect=30.0),
            headers={"User-Agent": "entra-graph-connector/0.1", "Accept": "application/json"},
        )

    @classmethod
    def for_task(
        cls,
        endpoint: LoadEndpoint,
        connector: Connector,
        *,
        environ: Mapping[str, str],
        key_vault: KeyVaultReader | None,
        verify: Any,
        policy: RetryPolicy,
        deadline: float | None,
    ) -> Receiver:
        if isinstance(endpoint.auth, ApiKeyAuth):
            key = resolve_secret(endpoint.auth.key, environ=environ, key_vault=key_vault)
            return cls(endpoint, api_key=key, verify=verify, policy=policy, deadline=deadline)
        tokens = token_provider(connector, endpoint.auth.scope, environ=environ, key_vault=key_vault)
        return cls(endpoint, tokens=tokens, verify=verify, policy=policy, deadline=deadline)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Receiver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _auth(self, headers: dict[str, str]) -> str | None:
        if self.tokens is not None:
            token = await self.tokens.token()
            headers["Authorization"] = f"Bearer {token}"
            return token
        if self.api_key is not None and isinstance(self.endpoint.auth, ApiKeyAuth):
            headers[self.endpoint.auth.header] = self.api_key
        return None

    async def _wait(self, seconds: float, error: LoadError) -> None:
        if self.deadline is not None and time.monotonic() + seconds > self.deadline:
            raise error
        self.retries += 1
        await asyncio.sleep(seconds)

    async def send(self, batch: Batch, *, run_id: str) -> None:
        """Deliver one batch; returns once the receiver accepted it (2xx), raises :class:`LoadError`."""
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": batch.id,
                "X-Connector-Run": run_id,
                "X-Batch-Sequence": str(batch.sequence),
            }
            token = await self._auth(headers)
            self.requests += 1
            try:
                response = await self._http.post(self.endpoint.url, content=batch.body, headers=headers)
            except httpx.TransportError as exc:
                decision = self.policy.decide_exception("PUT", exc, attempt)
                error = LoadError(f"batch {batch.id}: {type(exc).__name__}: {exc}", action=classify(exc))
                if decision.wait_s is None:
                    raise error from exc
                log.warning("delivery endpoint unreachable, retrying in %.1fs", decision.wait_s)
                await self._wait(decision.wait_s, error)
                continue
            status = response.status_code
            if 200 <= status < 300:
                return
            if status == 401 and token is not None and not renewed and self.tokens is not None:
                self.tokens.invalidate(token)  # once: a refused token is replaced by a new one
                renewed = True
                continue
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            decision = self.policy.decide_status("PUT", status, attempt, retry_after)
            error = LoadError(
                f"batch {batch.id}: the receiver answered {status}: {_excerpt(response, (self.api_key, token))}",
                status=status,
                action=decision.action,
            )
            if decision.wait_s is None:
                raise error
            log.info("delivery endpoint answered %s, retrying in %.1fs", status, decision.wait_s)
            await self._wait(decision.wait_s, error)


def _excerpt(response: httpx.Response, secrets: tuple[str | None, ...] = ()) -> str:
    """The start of an answer's text for the run's error, without the credential we sent (a receiver may
    repeat it: "refused key ..."), which would otherwise reach the history, logs and failure record."""
    text = response.text.strip().replace("\n", " ")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:300] + ("…" if len(text) > 300 else "") if text else response.reason_phrase
