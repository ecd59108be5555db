"""An encrypted namespace whose key is gone answers a named refusal at the WebSocket and
MCP doors too (issue 23, docs/encryption.md "Fail closed, at every door"), not a crash or
a closed socket without a word."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from mcp.server.mcpserver.exceptions import ToolError

from apps.core import namespace_keys
from apps.core.roles import Role
from apps.mcp.backends import ServiceBackend
from apps.tenancy.principal import Principal
from apps.tenancy.services import authenticate_key, create_namespace
from tests.helpers.callers import make_caller
from tests.helpers.websocket import ask, connect

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("close_sync_thread_connections")]


def _shredded_vault():
    vault = create_namespace("vault", encrypted=True)
    caller = make_caller(Role.AGENT, vault, "agent-v")
    assert caller.post("/api/v1/memories", {"content": "Dana's locker code is 4417"}
                       ).status_code == 201
    namespace_keys.shred(vault.pk)
    namespace_keys.forget_all()
    return caller


def test_the_mcp_tools_name_the_missing_key():
    caller = _shredded_vault()
    backend = ServiceBackend(Principal.for_key(authenticate_key(caller.raw)))
    with pytest.raises(ToolError, match=r"key_unavailable: .*destroyed"):
        backend.list_recent(5)
    with pytest.raises(ToolError, match="key_unavailable"):
        backend.store({"content": "a new note"})


@pytest.mark.asyncio
async def test_the_websocket_answers_an_error_naming_the_missing_key():
    caller = await sync_to_async(_shredded_vault)()
    socket = await connect(caller)
    answer = await ask(socket, {"type": "recall", "id": "r1", "query": "locker code",
                                "mode": "lexical"})
    assert answer["type"] == "error" and answer["id"] == "r1", answer
    assert answer["error"]["code"] == "key_unavailable"
    assert "4417" not in str(answer)
    await socket.disconnect()
