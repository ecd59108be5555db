"""/ws/v1/live in-process: Channels' WebsocketCommunicator against the ASGI application,
for the WebSocket tests of tests/live/ (no server process)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from memoryweb.asgi import application

if TYPE_CHECKING:
    from apps.core.roles import Role

#: Seconds a test waits for a message that must come.
TIMEOUT = 5


async def connect(caller=None, headers=None) -> WebsocketCommunicator:
    """A connected socket; with a ``caller`` (tests/conftest.py), authenticated by its key
    in the header and past the ``ready`` message."""
    headers = list(headers or [])
    if caller is not None:
        headers.append((b"authorization", f"Bearer {caller.raw}".encode()))
    socket = WebsocketCommunicator(application, "/ws/v1/live", headers=headers)
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    if caller is not None:
        ready = await socket.receive_json_from(timeout=TIMEOUT)
        assert ready["type"] == "ready" and ready["principal"] == f"key:{caller.key.prefix}"
    return socket


async def ask(socket, message: dict) -> dict:
    """Send one message, return the next one received."""
    await socket.send_json_to(message)
    return await socket.receive_json_from(timeout=TIMEOUT)


async def closed_with(socket) -> int:
    """The close code, skipping any messages before it."""
    output = await socket.receive_output(timeout=TIMEOUT)
    while output["type"] != "websocket.close":
        output = await socket.receive_output(timeout=TIMEOUT)
    return output["code"]


async def rest(caller, method: str, path: str, body=None):
    """A REST call of ``caller`` from async code (the test client is synchronous)."""
    send = getattr(caller, method)
    return await sync_to_async(lambda: send(path, body) if body is not None else send(path))()


async def session_headers(username: str, alpha, role: Role | None, origin: bytes | None):
    """The headers of a browser logged in as a new user ``username`` (with ``role`` in
    ``alpha``, if any): the session cookie, the Host and, if given, the Origin."""
    from django.conf import settings as django_settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from apps.tenancy.members import set_role

    def login() -> str:
        user = get_user_model().objects.create_user(username, password="pw")
        if role is not None:
            set_role(alpha, user, role)
        client = Client()
        client.force_login(user)
        return client.cookies[django_settings.SESSION_COOKIE_NAME].value

    cookie = await sync_to_async(login)()
    # A browser sends the Host it connects to; the origin check compares the two.
    headers = [(b"cookie", f"sessionid={cookie}".encode()), (b"host", b"testserver")]
    return headers + ([(b"origin", origin)] if origin else [])
