"""The server's admin socket (apps/server/control.py) marks its process as the one
serving; the client side (apps/ops/control_client.py, below apps.server in the layers)
reads that flag instead of importing the server, and sends no live event to itself."""

from __future__ import annotations

import pytest

from apps.ops import control_client
from apps.server import control


@pytest.fixture
def unclaimed(monkeypatch):
    monkeypatch.setattr(control_client, "_serving", False)
    monkeypatch.setattr(control, "_control_lock", None)
    yield
    if control._control_lock is not None:
        control._control_lock.close()


def test_claiming_the_socket_marks_the_process_as_serving(unclaimed, tmp_path, settings,
                                                          monkeypatch):
    path = tmp_path / "control.sock"
    settings.CHROMA_URL, settings.MEMORYWEB_CONTROL_SOCKET = "", str(path)
    assert not control_client.serving() and not control.serving()
    assert control._claim_socket(path)
    assert control_client.serving() and control.serving()

    def connect(self):
        raise AssertionError("the server sent to its own socket")

    monkeypatch.setattr(control_client.ControlClient, "_connect", connect)
    assert control_client.send_live_event("live.ns.1", {"type": "live.event"}) is False
