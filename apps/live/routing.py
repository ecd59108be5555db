"""WebSocket routes, and the origin check that guards browser sessions."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import OriginValidator as ChannelsOriginValidator
from django.conf import settings
from django.urls import path

from apps.live.consumers import LiveConsumer

websocket_urlpatterns = [path("ws/v1/live", LiveConsumer.as_asgi())]


class OriginValidator(ChannelsOriginValidator):
    """Channels' ALLOWED_HOSTS origin check (AllowedHostsOriginValidator), except that a
    connection without an Origin header (an agent's WebSocket library, not a browser) is
    let through: Origin checks
    stop other sites from riding a browser's session, and such connections must bring
    an API key anyway (the consumer uses the session only when an Origin was sent)."""

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)


def websocket_application():
    from channels.routing import URLRouter

    from apps.live.transport import close_failed_connections_with_a_code

    close_failed_connections_with_a_code()  # 1009 for an over-size message, not a drop

    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:  # as channels' AllowedHostsOriginValidator does
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), allowed)
