"""Credentials for a connector, and the bearer token the Graph client sends.

azure-identity does the identity-platform work (client secret, certificate assertion, managed identity;
global and national clouds through the connector's login URL). :class:`TokenProvider` keeps one token per
client, renews it before it expires (a quarter of its lifetime, at most five minutes, ahead) and on a 401,
and runs the credential's blocking calls in a worker thread so the event loop never stalls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError

from shared.graph.errors import AuthenticationFailed


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
        return (await self.fetch())[0]

    async def fetch(self) -> tuple[str, bool]:
        """The token, and whether this call acquired it (for the caller's statistics: one acquisition is
        counted once, by the caller that made it, not by those that waited for it)."""
        current = self._token
        if current is not None and self._fresh(current):
            return current.token, False
        acquired = False
        async with self._lock:
            if not self._fresh(self._token):
                try:
                    if self._stale_credential and self._renew is not None:
                        old, self._credential = self._credential, await asyncio.to_thread(self._renew)
                        if old is not self._credential:  # a renew that hands back the same one keeps it
                            # Only this lock's holder calls the credential: nobody uses the old one now.
                            await asyncio.to_thread(_close, old)
                    self._stale_credential = False
                    acquired_at = time.time()
                    current = await asyncio.to_thread(self._credential.get_token, self._scope)
                    self._token = current
                    self._acquired_at = acquired_at
                    self.acquisitions += 1
                    acquired = True
                except ClientAuthenticationError as exc:
                    raise AuthenticationFailed(
                        f"the identity platform refused the credential: {first_line(exc.message)}",
                        code="CredentialRejected",
                    ) from None
            assert self._token is not None
            return self._token.token, acquired

    async def close(self) -> None:
        """Close the credential (its HTTP session to the identity platform), once no call can use it: after
        the client using this provider was closed (``GraphClient.retire``)."""
        async with self._lock:
            await asyncio.to_thread(_close, self._credential)

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (Graph answered 401 to it): the next call acquires a new one."""
        if self._token is not None and self._token.token == token:
            self._token = None
            self._stale_credential = True


def _close(credential: TokenCredential) -> None:
    """Close an azure-identity credential (its transport session); credentials without ``close`` hold none."""
    close = getattr(credential, "close", None)
    if callable(close):
        close()


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""
