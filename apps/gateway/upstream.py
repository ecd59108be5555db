"""The upstream APIs the gateway forwards to: where they are, with which credential, over
one shared ``httpx.AsyncClient`` per process.

One client (one connection pool) serves every request and stream of the process on the
server's event loop: no thread per request or stream. It is made on first use, for the
running loop (a test's new loop gets its own). Timeouts are read per request from
``MEMORYWEB_GATEWAY_TIMEOUT`` (connect, and each read: a model may think for minutes).

Credentials: the server's key is read from ``MEMORYWEB_GATEWAY_<PROVIDER>_KEY_FILE`` at
each request (a rotated file needs no restart) and never logged, kept in settings or
stored. A client may bring its own upstream key in ``X-Upstream-Authorization``: it then
replaces the server's for that request only and is never stored or logged either.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.conf import settings

UPSTREAM_AUTH_HEADER = "x-upstream-authorization"

#: Request headers never forwarded: hop-by-hop ones, the ones the client's MemoryWeb key
#: travels in, the gateway's own, and what httpx sets itself.
_NOT_FORWARDED = {
    "host", "content-length", "connection", "keep-alive", "proxy-authorization",
    "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "cookie",
    "authorization", "x-api-key", UPSTREAM_AUTH_HEADER, "x-memory-mode", "x-memory-after",
    "x-memory-namespace", "x-memory-session", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-real-ip",
}
#: Response headers never relayed (hop-by-hop; the server frames the body itself).
_NOT_RELAYED = {"connection", "keep-alive", "transfer-encoding", "trailer", "upgrade",
                "proxy-authenticate", "server", "date"}


@dataclass(frozen=True)
class Provider:
    """One upstream API family."""

    name: str  # openai | anthropic
    url_setting: str
    key_file_setting: str

    @property
    def base_url(self) -> str:
        return getattr(settings, self.url_setting).rstrip("/")

    def server_key(self) -> str:
        """The server's key for this upstream ("" when none is configured). Read from its
        file now; an unreadable file is an OSError for the caller to turn into a 503."""
        path = getattr(settings, self.key_file_setting)
        return Path(path).read_text().strip() if path else ""

    def auth_headers(self, own: str | None) -> dict[str, str]:
        """The upstream's credential header: the client's own (``X-Upstream-Authorization``)
        or the server's key."""
        if own:
            if self.name == "anthropic" and not own.lower().startswith("bearer "):
                return {"x-api-key": own}
            return {"authorization": own if own.lower().startswith("bearer ") else
                    f"Bearer {own}"}
        return self.key_headers(self.server_key())

    def key_headers(self, key: str) -> dict[str, str]:
        """A key from a file as this API sends it ({} for no key)."""
        if not key:
            return {}
        return {"x-api-key": key} if self.name == "anthropic" else {
            "authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Target:
    """Where one request goes and with which credential."""

    base_url: str
    auth: dict[str, str]
    #: The namespace's own URL (its ``gateway.upstreams``), not the server's.
    overridden: bool = False
    #: The client's own upstream key (``X-Upstream-Authorization``) is the credential.
    own: bool = False


def target(provider: Provider, namespace: object, own: str | None) -> Target:
    """The upstream for a request in ``namespace`` (None: the server's).

    The URL is the namespace's own if it names one, else the server's. The credential, in
    order: the client's own key; the namespace's key file (in ``MEMORYWEB_GATEWAY_KEY_DIR``);
    the server's key — but never to a namespace's own URL, which would hand the server's
    account to wherever a setting points. An unreadable key file is an OSError for the
    caller to turn into a 503.
    """
    from .namespace_setting import override

    part = override(namespace, provider.name) if namespace is not None else {}
    url = (part.get("url") or "").rstrip("/")
    base = url or provider.base_url
    if own:
        return Target(base, provider.auth_headers(own), bool(url), own=True)
    if part.get("key_file"):
        path = Path(settings.MEMORYWEB_GATEWAY_KEY_DIR or "/nonexistent") / part["key_file"]
        return Target(base, provider.key_headers(path.read_text().strip()), bool(url))
    if url:
        return Target(base, {}, True)
    return Target(base, provider.auth_headers(None))


OPENAI = Provider("openai", "MEMORYWEB_GATEWAY_OPENAI_URL", "MEMORYWEB_GATEWAY_OPENAI_KEY_FILE")
ANTHROPIC = Provider("anthropic", "MEMORYWEB_GATEWAY_ANTHROPIC_URL",
                     "MEMORYWEB_GATEWAY_ANTHROPIC_KEY_FILE")

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def client() -> httpx.AsyncClient:
    """The process's shared client for the running loop."""
    loop = asyncio.get_running_loop()
    shared = _clients.get(loop)
    if shared is None:
        for old in [old for old in _clients if old.is_closed()]:
            del _clients[old]
        shared = _clients[loop] = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            follow_redirects=False, trust_env=False)
    return shared


def timeout() -> httpx.Timeout:
    seconds = settings.MEMORYWEB_GATEWAY_TIMEOUT
    return httpx.Timeout(seconds, connect=min(seconds, 30.0))


#: Headers that choose which account of the credential pays and whose data is read: only a
#: client that brought its own key may send them (the server's key may reach several).
ACCOUNT_HEADERS = {"openai-organization", "openai-project"}


def forwarded_headers(headers: list[tuple[bytes, bytes]], *, own_key: bool = False
                      ) -> dict[str, str]:
    """The client's request headers that go on to the upstream (latin-1, as received)."""
    kept: dict[str, str] = {}
    for name, value in headers:
        key = name.decode("latin-1").lower()
        if key not in _NOT_FORWARDED and (own_key or key not in ACCOUNT_HEADERS):
            text = value.decode("latin-1")
            kept[key] = f"{kept[key]}, {text}" if key in kept else text
    # The answer is relayed as the upstream encoded it: a client that asked for no
    # compression (curl without --compressed) must not get gzip that httpx asked for.
    kept.setdefault("accept-encoding", "identity")
    return kept


def relayed_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers that go back to the client, unchanged."""
    return [(name, value) for name, value in response.headers.raw
            if name.decode("latin-1").lower() not in _NOT_RELAYED]
