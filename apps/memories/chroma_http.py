"""The Chroma server client with a timeout (scaled mode, ``CHROMA_URL``).

chromadb's HTTP client (1.5) builds its ``httpx.Client`` with ``timeout=None``: a Chroma
server that accepts a connection and never answers holds the calling thread for ever.
Every request thread of the server is one of ``MEMORYWEB_HTTP_THREADS``; eight recalls
stuck on a hung Chroma stalled the whole server, REST and the gateway alike
(docs/performance.md, "the memory core failing"). With a timeout, a hung Chroma is an
error after ``MEMORYWEB_CHROMA_TIMEOUT`` seconds: recall answers 503 (the gateway fails
open) and the thread is free again.

chromadb has no timeout setting and accepts no API class of ours (it checks its
``chroma_api_impl`` against its own list), so the timeout is set on the ``httpx.Client``
the client built (``client._server._session``, chromadb's own names).
``tests/memories/test_chroma_timeout.py`` pins it: a chromadb upgrade that renames them
fails that test, and meanwhile the server logs an error at start instead of hanging later.
"""

from __future__ import annotations

import logging

import httpx
from django.conf import settings

log = logging.getLogger(__name__)


def http_client(host: str, port: int, ssl: bool):
    """A client of the Chroma server at ``host:port`` whose every request is bounded by
    ``MEMORYWEB_CHROMA_TIMEOUT``."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    seconds = float(settings.MEMORYWEB_CHROMA_TIMEOUT)
    timeout = httpx.Timeout(seconds, connect=min(seconds, 10.0))
    # chromadb talks to the server while it builds the client, before its session can be
    # given the timeout: a heartbeat first, with the timeout, so a hung server is an error
    # here rather than a thread stuck in the constructor.
    scheme = "https" if ssl else "http"
    httpx.get(f"{scheme}://{host}:{port}/api/v2/heartbeat", timeout=timeout,
              trust_env=False).raise_for_status()
    client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=ChromaSettings(
        anonymized_telemetry=False, allow_reset=False))
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = timeout
    else:
        log.error("the Chroma client has no httpx session where chromadb 1.5 keeps it: "
                  "requests to the Chroma server have no timeout (MEMORYWEB_CHROMA_TIMEOUT)")
    return client
