"""The MCP endpoint is built by the first /mcp request (apps/mcp/http.py, mcp_router).

Daphne starts without importing the MCP SDK (about 45 % of importing memoryweb.asgi):
the first /mcp request builds the endpoint off the loop, once, while the requests that
arrive meanwhile wait for that one build; a build that fails answers 503 JSON and the
next request tries again. Other paths never touch it. In-process, with stand-ins for the
endpoint (the real one is exercised over Daphne in tests/mcp/test_http.py).
"""

from __future__ import annotations

import asyncio
import json
import time

from apps.mcp import http


async def _post(app, path: str = "/mcp") -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "POST", "headers": []}, receive, send)
    return sent


class _Answering:
    """A stand-in endpoint: counts its builds (slowly, as importing the SDK is) and
    answers 200."""

    builds: list[int] = []

    def __init__(self) -> None:
        time.sleep(0.05)
        self.builds.append(1)

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"mcp"})


async def _django(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_concurrent_first_requests_build_the_endpoint_once(monkeypatch):
    monkeypatch.setattr(_Answering, "builds", [])
    monkeypatch.setattr(http, "McpEndpoint", _Answering)
    app = http.mcp_router(_django)

    async def burst() -> list[list[dict]]:
        return await asyncio.gather(*(_post(app) for _ in range(8)))

    answers = asyncio.run(burst())
    assert [sent[0]["status"] for sent in answers] == [200] * 8
    assert asyncio.run(_post(app))[0]["status"] == 200
    assert _Answering.builds == [1]


def test_other_paths_never_build_it(monkeypatch):
    monkeypatch.setattr(_Answering, "builds", [])
    monkeypatch.setattr(http, "McpEndpoint", _Answering)
    app = http.mcp_router(_django)
    assert asyncio.run(_post(app, "/api/v1/recall"))[0]["status"] == 204
    assert asyncio.run(_post(app, "/mcpx"))[0]["status"] == 204
    assert _Answering.builds == []


def test_a_failed_build_answers_503_json_and_the_next_request_tries_again(monkeypatch):
    tries: list[int] = []

    class Broken:
        def __init__(self) -> None:
            tries.append(1)
            raise ImportError("No module named 'mcp'")

    monkeypatch.setattr(http, "McpEndpoint", Broken)
    app = http.mcp_router(_django)
    sent = asyncio.run(_post(app))
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["error"]["code"] == "mcp_unavailable"
    assert asyncio.run(_post(app))[0]["status"] == 503
    assert tries == [1, 1]

    monkeypatch.setattr(_Answering, "builds", [])
    monkeypatch.setattr(http, "McpEndpoint", _Answering)
    assert asyncio.run(_post(app))[0]["status"] == 200
    assert _Answering.builds == [1]
