"""ASGI entry point served by Daphne: HTTP through Django, WebSocket through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memoryweb.settings")

import django

from apps.core.conf import prepare_data_dir

# The data directory and the generated secret key exist before Django starts (settings
# create nothing at import); then bad settings stop the start with every problem named,
# before any background thread begins (Daphne runs no system checks of its own).
prepare_data_dir()
django.setup(set_prefix=False)

from apps.core.checks import refuse_to_start  # noqa: E402

refuse_to_start()

from apps.core.asgi import recording_main_loop, with_lean_api  # noqa: E402
from apps.core.backpressure import pace_http_responses  # noqa: E402

# Under Daphne, ``send`` of a response body waits while the client is not reading (a
# relayed gateway stream or a streamed export holds one chunk, not the whole answer).
pace_http_responses()
from apps.server.asgi import get_asgi_application  # noqa: E402

# API calls with a key take the lean middleware chain; the rest the full one (apps/core/asgi.py).
django_asgi_app = with_lean_api(get_asgi_application())

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs Django set up)

from apps.gateway.http import gateway_router  # noqa: E402
from apps.live.routing import websocket_application  # noqa: E402
from apps.mcp.http import mcp_router  # noqa: E402

# /mcp and the memory gateway's /proxy/ routes are ASGI endpoints on the server's loop,
# in front of Django (apps/mcp/http.py, apps/gateway/http.py); the rest is Django.
application = recording_main_loop(ProtocolTypeRouter({
    "http": mcp_router(gateway_router(django_asgi_app)),
    "websocket": websocket_application()}))
