"""Where a generic REST call may go: the connector's own Graph host, nothing else.

How the URL is made (after the ``$code$`` templates are filled in, each value percent-encoded):

- An **absolute** URL (it starts with ``https://``) is used as it is, if its scheme is ``https`` and its host
  and port are exactly the connector's Graph host and port (``https://graph.microsoft.com/beta/...`` is
  fine for a connector on the global cloud).
- Anything else is a **suffix**, joined as *connector Graph URL* + *task base query* + *node URL*: the
  connector's Graph root with ``/v1.0``, then the event task's ``base_query`` (a path), then the node's URL,
  with exactly one ``/`` between two non-empty parts: slashes at the end of a left part and at the start of a
  right part are dropped, and empty parts are skipped. A node URL that starts with ``?`` is appended without
  a slash (``base_query`` ``users`` + ``?$top=5`` -> ``.../v1.0/users?$top=5``). A trailing slash of the node
  URL is kept.

Refused before any request is sent, with the reason:

- another scheme, host or port, or the same host and port spelled otherwise (``:443``, ``:0443``); user
  information (``https://graph.microsoft.com@evil.example``); a suffix that starts with ``//`` or holds
  ``://`` (protocol-relative or embedded URLs);
- backslashes, whitespace, control characters, non-ASCII characters (percent-encode them), fragments;
- in the path: empty segments (``//``), ``.`` and ``..`` segments, encoded ``/``, ``\\``, ``?`` or ``%``
  (``%2F``, ``%5C``, ``%3F``, ``%25``: double encoding) or NUL, also after decoding. An encoded ``#`` (``%23``)
  is allowed: Graph needs it in guest users' UPNs (``..._contoso.com%23EXT%23@...``), and once decoded by
  Graph it is part of a name, never a fragment;
- IP literals and every other spelling of a host (``0x7f.1``, ``[::1]``, decimal addresses) simply do not
  equal the configured host, unless the connector itself is configured with that literal (the local Graph).

Graph answers are never followed to another place: the HTTP client does not follow redirects, and a 3xx
answer is returned to the workflow as it is, with its ``Location``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import httpx

API_VERSION = "v1.0"
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?![0-9])")
_ENCODED_FORBIDDEN_IN_PATH = re.compile(r"%(2[fF]|5[cC]|3[fF]|25|00)")


class AddressRefused(ValueError):
    """The URL may not be called; the message says why."""


def join(graph_root: str, base_query: str, node_url: str) -> str:
    """The URL to call for ``node_url`` (see the module's rules); checked with :func:`check`."""
    root = graph_root.rstrip("/")
    if node_url.lower().startswith("https://") or node_url.lower().startswith("http://"):
        url = node_url
    else:
        if _SCHEME.match(node_url):
            raise AddressRefused("a full URL must start with https:// and name the connector's Graph host")
        if node_url.startswith("//") or node_url.startswith("/\\") or "://" in node_url:
            raise AddressRefused(
                "a relative URL must not start with '//' or contain '://' (it could name another host); "
                "give a path such as users/{id} or a full https:// URL on the connector's Graph host"
            )
        url = f"{root}/{API_VERSION}"
        base = base_query.strip("/")
        if base:
            url = f"{url}/{base}"
        if node_url.startswith("?"):
            url = f"{url}{node_url}"
        elif node_url.lstrip("/"):
            url = f"{url}/{node_url.lstrip('/')}"
    check(url, graph_root)
    return url


def check(url: str, graph_root: str) -> None:
    """Raise :class:`AddressRefused` unless ``url`` is an https URL on ``graph_root``'s host and port."""
    if "\\" in url:
        raise AddressRefused("backslashes are not allowed in the URL")
    if not _PRINTABLE_ASCII.fullmatch(url):
        raise AddressRefused(
            "the URL may hold only printable ASCII characters: percent-encode spaces (%20), '$' in "
            "literal text (%24) and non-ASCII characters; line breaks and control characters are refused"
        )
    if "#" in url:
        raise AddressRefused("fragments ('#') are not allowed in the URL")
    expected = urlsplit(graph_root)
    expected_host = (expected.hostname or "").lower()
    expected_port = expected.port or 443
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        raise AddressRefused(f"the URL cannot be parsed: {exc}") from None
    if parts.scheme.lower() != "https":
        raise AddressRefused(f"only https is allowed, not {parts.scheme or 'a URL without scheme'}")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise AddressRefused("user information ('@' before the host) is not allowed in the URL")
    host = (parts.hostname or "").lower()
    if host != expected_host or port != expected_port:
        raise AddressRefused(
            f"only the connector's Graph host {expected.netloc} may be called, not {parts.netloc}"
        )
    # The same host and port spelled otherwise (":443", ":0443"): the Graph client compares the spelling.
    if parts.netloc.lower() != expected.netloc.lower():
        raise AddressRefused(f"write the Graph host as {expected.netloc}, not {parts.netloc}")
    # A second, independent parser must agree (differences between parsers are how guards are bypassed).
    try:
        other = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise AddressRefused(f"the URL cannot be parsed: {exc}") from None
    if other.host.lower() != expected_host or (other.port or 443) != expected_port or other.userinfo:
        raise AddressRefused(f"only the connector's Graph host {expected.netloc} may be called")
    _check_path(parts.path)
    decoded_query = unquote(unquote(parts.query))
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded_query):
        raise AddressRefused("encoded control characters are not allowed in the query string")


def _check_path(path: str) -> None:
    if not path.startswith("/"):
        raise AddressRefused("the URL needs a path on the Graph host")
    if _ENCODED_FORBIDDEN_IN_PATH.search(path):
        raise AddressRefused(
            "encoded '/', '\\', '?', '%' or NUL (%2F, %5C, %3F, %25, %00) are not allowed in the path"
        )
    decoded = unquote(path)
    if "\\" in decoded or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded):
        raise AddressRefused("the path must not hold backslashes or control characters, encoded or not")
    segments = decoded.split("/")[1:]
    if any(segment == "" for segment in segments[:-1]):
        raise AddressRefused("empty path segments ('//') are not allowed")
    if any(segment in (".", "..") for segment in segments):
        raise AddressRefused("'.' and '..' path segments are not allowed")
