"""The protocol's JSON schema (apps/live/schema.json, shown in docs/live.md) holds for
every message of a session that uses every message type."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from memoryweb.asgi import application
from tests.helpers.websocket import TIMEOUT, rest

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("close_sync_thread_connections")]
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "apps/live/schema.json").read_text())


def _validator(part: str):
    return jsonschema.Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{part}"})


async def test_every_message_of_a_session_follows_the_schema(agent, stored):
    client, server = _validator("client"), _validator("server")
    await sync_to_async(stored)("The on-call phone is in the drawer.")
    socket = WebsocketCommunicator(application, "/ws/v1/live")
    await socket.connect(timeout=TIMEOUT)
    received = []
    script = [
        ({"type": "auth", "key": agent.raw, "id": "a"}, 1),
        ({"type": "ping", "id": "p"}, 1),
        ({"type": "recall", "id": "r", "query": "where is the on-call phone", "k": 2}, 3),
        ({"type": "ingest", "id": "i", "content": "Stored over the socket."}, 1),
        ({"type": "subscribe", "id": "s", "query": "on-call phone location", "min_score": 0.3}, 1),
        ({"type": "events", "id": "e"}, 1),
        ({"type": "fly", "id": "x"}, 1),  # not in the schema: answered with an error
    ]
    for message, replies in script:
        if message["type"] != "fly":
            client.validate(message)
        else:
            assert not client.is_valid(message)
        await socket.send_json_to(message)
        for _ in range(replies):
            received.append(await socket.receive_json_from(timeout=TIMEOUT))
    await rest(agent, "post", "/api/v1/memories", {"content": "The on-call phone moved to "
                                                              "the front desk."})
    received += [await socket.receive_json_from(timeout=TIMEOUT) for _ in range(2)]  # event, match
    client.validate({"type": "unsubscribe", "id": "u", "subscription": "s"})
    await socket.send_json_to({"type": "unsubscribe", "id": "u", "subscription": "s"})
    received.append(await socket.receive_json_from(timeout=TIMEOUT))
    kinds = {message["type"] for message in received}
    assert kinds == {"ready", "pong", "recall.partial", "recall.results", "done", "ingested",
                     "subscribed", "watching", "error", "event", "match", "unsubscribed"}
    for message in received:
        server.validate(message)
    await socket.disconnect()
