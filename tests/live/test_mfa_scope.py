"""The scoped MFA rule on the live WebSocket (issue 16, item 4b): a password-only session
of a person who is reader in alpha and admin in beta keeps its alpha rights on the socket;
beta's dormant admin role is refused there."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from apps.core.roles import Role
from tests.helpers.websocket import TIMEOUT, ask, closed_with, connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("close_sync_thread_connections")]


async def _session(username: str, roles: dict) -> list[tuple[bytes, bytes]]:
    from django.conf import settings as django_settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from apps.tenancy.members import set_role

    def login() -> str:
        user = get_user_model().objects.create_user(username, password="pw")
        for namespace, role in roles.items():
            set_role(namespace, user, role)
        client = Client()
        client.force_login(user)
        return client.cookies[django_settings.SESSION_COOKIE_NAME].value

    cookie = await sync_to_async(login)()
    return [(b"cookie", f"sessionid={cookie}".encode()), (b"origin", b"http://testserver"),
            (b"host", b"testserver")]  # a browser sends both; the origin check compares them


async def test_a_reader_elsewhere_keeps_the_socket_while_the_admin_role_sleeps(settings, alpha,
                                                                               beta):
    settings.MEMORYWEB_REQUIRE_MFA = True
    socket = await connect(headers=await _session("areader", {alpha: Role.READER,
                                                              beta: Role.ADMIN}))
    ready = await socket.receive_json_from(timeout=TIMEOUT)
    assert ready["type"] == "ready" and ready["principal"] == "user:areader"
    watching = await ask(socket, {"type": "events", "id": "e1"})
    assert watching["namespaces"] == 1  # alpha only: beta's role is dormant
    await socket.send_json_to({"type": "recall", "id": "r1", "query": "x", "namespace": "alpha",
                              "mode": "lexical"})
    reply = await socket.receive_json_from(timeout=TIMEOUT)
    while reply["type"] == "recall.partial":
        reply = await socket.receive_json_from(timeout=TIMEOUT)
    assert reply["type"] == "recall.results", reply
    assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "done", "id": "r1"}
    refused = await ask(socket, {"type": "recall", "id": "r2", "query": "x", "namespace": "beta",
                                 "mode": "lexical"})
    assert refused["type"] == "error" and "two-factor" in refused["error"]["message"], refused
    await socket.disconnect()


async def test_a_password_only_admin_with_no_other_role_is_still_closed(settings, alpha):
    settings.MEMORYWEB_REQUIRE_MFA = True
    socket = await connect(headers=await _session("tess", {alpha: Role.ADMIN}))
    assert await closed_with(socket) == 4403
