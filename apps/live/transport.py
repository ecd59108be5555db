"""WebSocket transport settings MemoryWeb needs from Daphne that its command line lacks.

Daphne caps a WebSocket message at ``--websocket_max_message_size`` (1 MiB by default),
enforced by autobahn. Autobahn's server default is to *drop the TCP connection* when a
limit or the protocol is violated (``failByDrop``), so a client that sent a 3 MiB frame
saw 1006 (abnormal closure) and no reason at all. With ``failByDrop`` off, autobahn
sends the close frame RFC 6455 defines for the case (1009 "message too big", 1002
protocol error, 1007 invalid UTF-8) and then closes.

Daphne builds its factory inside ``Server.run``, after importing the ASGI application,
and offers no hook or flag for this option; so the application's import sets it on
Daphne's factory class (idempotent; nothing happens under another server).
"""

from __future__ import annotations

import sys


def close_failed_connections_with_a_code() -> None:
    """Make Daphne's WebSocket factory fail connections with a close frame, not a drop.

    Only when Daphne is the server (its CLI has imported ``daphne.server``, which installs
    Twisted's asyncio reactor): importing Twisted elsewhere must not pick a reactor."""
    if "daphne.server" not in sys.modules:
        return
    from autobahn.twisted.websocket import WebSocketServerFactory
    from daphne.ws_protocol import WebSocketFactory
    if getattr(WebSocketFactory, "_memoryweb_close_codes", False):
        return

    def reset_protocol_options(self) -> None:
        WebSocketServerFactory.resetProtocolOptions(self)
        self.failByDrop = False

    WebSocketFactory.resetProtocolOptions = reset_protocol_options
    WebSocketFactory._memoryweb_close_codes = True
