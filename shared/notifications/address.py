"""Where Graph sends notifications: ``https://{host}/api/notifications/graph?code={function key}``.

The host is the Function App's own (``WEBSITE_HOSTNAME``, set by the platform in Azure) or, for local runs,
``NOTIFICATION_HOST`` (e.g. a tunnel's host name). The key is a function (or host) key the HTTP trigger
accepts at auth level FUNCTION, in the ``code`` query parameter as Azure Functions allows; Graph sends the
URL's query string back on every call [docs/graph-behaviour.md section 12].
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from shared.settings import Settings

ROUTE = "notifications/graph"  # the HTTP trigger's route (functions/notifications.py)
ROUTE_PREFIX = "api"  # host.json's default extensions.http.routePrefix


class NoPublicHost(RuntimeError):
    """No notification URL to give Graph: neither NOTIFICATION_HOST nor WEBSITE_HOSTNAME is set, or the key is
    an unresolved Key Vault reference."""


# App Service leaves an app setting's Key Vault reference as it is written when it cannot resolve it (the
# secret is missing, or the identity may not read it):
# https://learn.microsoft.com/azure/app-service/app-service-key-vault-references
KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


def notification_url(settings: Settings, environ: Mapping[str, str]) -> str:
    host = (settings.notification_host or environ.get("WEBSITE_HOSTNAME") or "").strip()
    if not host:
        raise NoPublicHost(
            "change notifications need the app's public host name: set NOTIFICATION_HOST (local runs); in "
            "Azure the platform sets WEBSITE_HOSTNAME"
        )
    if "://" in host:  # tolerated: a URL instead of a host name; Graph accepts https only
        parts = urlsplit(host)
        if parts.scheme != "https":
            raise NoPublicHost("NOTIFICATION_HOST must be a host name (Graph calls https only)")
        host = parts.netloc
    url = f"https://{host.rstrip('/')}/{ROUTE_PREFIX}/{ROUTE}"
    if (settings.notification_key or "").startswith(KEY_VAULT_REFERENCE):
        raise NoPublicHost(
            "NOTIFICATION_FUNCTION_KEY is an unresolved Key Vault reference: store the secret it names and let the "
            "app fetch it again (README, Deploy, step 5); Graph's calls would carry the reference, not a key"
        )
    if settings.notification_key:
        url += f"?code={quote(settings.notification_key, safe='')}"
    return url


def fingerprint(url: str) -> str:
    """A short digest of the URL (it carries the key): stored to notice a new host or key, never the URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def redacted(url: str) -> str:
    """The URL without its query (the key), for logs."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
