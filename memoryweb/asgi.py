"""ASGI entry point served by Daphne: HTTP through Django, WebSocket through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memoryweb.settings")

from apps.core.asgi import get_asgi_application, recording_main_loop

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs Django set up)

from apps.live.routing import websocket_application  # noqa: E402
from apps.mcp.http import mcp_router  # noqa: E402

application = recording_main_loop(ProtocolTypeRouter({"http": mcp_router(django_asgi_app),
                                                      "websocket": websocket_application()}))
