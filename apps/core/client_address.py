"""Which address a request came from, for per-address limits: one rule everywhere.

``X-Forwarded-For`` is a header anyone can send. Trusting it lets a client buy a fresh
budget per request, or spend another address's budget (lock someone else out). So the
peer address (``REMOTE_ADDR``) is the client, unless ``MEMORYWEB_TRUSTED_PROXIES`` says
how many reverse proxies stand in front of the server: then each of them appended the
address it saw, and the N-th entry from the right is what the outermost trusted proxy
saw. Entries further left came from the client and are ignored.

Used by the token endpoint's limit (``apps.compat.memoryoss.TokenThrottle``), the login
limits (allauth, through ``apps.dashboard.accounts.AccountAdapter``). DRF's
``NUM_PROXIES`` is set from the same setting for any future DRF throttle keyed by address,
but DRF's rule is looser on a chain shorter than N (it then believes the leftmost entry,
which the client chose): a per-address limit must call :func:`client_address` instead.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _address(text: str) -> str | None:
    """``text`` as a bare IP address (a port or IPv6 brackets dropped), or None."""
    text = text.strip()
    candidates = [text]
    if text.startswith("[") and "]" in text:  # [v6]:port
        candidates.append(text[1:text.index("]")])
    elif text.count(":") == 1:  # v4:port
        candidates.append(text.split(":", 1)[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def client_address(request: HttpRequest) -> str:
    """The client's address per ``MEMORYWEB_TRUSTED_PROXIES`` (read at call time).

    A forwarded chain shorter than the configured number of proxies, or an entry that is
    not an address, cannot be trusted: the peer address is used instead.
    """
    peer = request.META.get("REMOTE_ADDR") or ""
    proxies = settings.MEMORYWEB_TRUSTED_PROXIES
    if proxies <= 0:
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop for hop in forwarded.split(",") if hop.strip()]
    if len(hops) < proxies:
        return peer
    return _address(hops[-proxies]) or peer
