"""WebSocket routes, and the origin check that guards browser sessions."""

from __future__ import annotations

from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.urls import path
from django.utils.http import is_same_domain

from apps.live.consumers import LiveConsumer

websocket_urlpatterns = [path("ws/v1/live", LiveConsumer.as_asgi())]


class OriginValidator:
    """The browser's page must be this site, as Django's CSRF check asks of a POST's
    Origin, except for the scheme: behind a proxy that ends TLS the socket arrives as
    ``ws`` while the page was ``https``, so the host decides (a page on another host,
    whatever its scheme, is refused).

    An ``Origin`` is valid when its host (and port) is the ``Host`` the browser connected
    to, that host is one this server serves (``ALLOWED_HOSTS``), or the origin is listed
    in ``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` wildcards as in Django).
    Channels' own check compared the Origin with ``ALLOWED_HOSTS``, so ``'*'`` (common
    behind proxies) let any site open a socket riding a logged-in person's session.

    A connection without an Origin (an agent's WebSocket library, not a browser) is let
    through: such connections must bring an API key anyway (the consumer uses the session
    only when an Origin was sent). Settings are read per connection.
    """

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers", []))  # the last of a repeated header
        origin = headers.get(b"origin")
        host = headers.get(b"host", b"").decode("latin-1")
        if origin is None or self.same_site(urlparse(origin.decode("latin-1")), host):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    @staticmethod
    def same_site(parsed_origin, host: str) -> bool:
        if not parsed_origin.scheme or not parsed_origin.netloc:
            return False  # "null" (sandboxed pages, file://) and garbage
        origin = f"{parsed_origin.scheme}://{parsed_origin.netloc}".lower()
        for trusted in settings.CSRF_TRUSTED_ORIGINS:
            scheme, _, trusted_host = trusted.lower().partition("://")
            if scheme == parsed_origin.scheme.lower() and (
                    origin == trusted.lower()
                    or (trusted_host.startswith("*.")
                        and is_same_domain(parsed_origin.netloc.lower(), trusted_host[1:]))):
                return True
        host = host.lower()
        return bool(host) and parsed_origin.netloc.lower() == host and validate_host(
            split_domain_port(host)[0], _allowed_hosts())


def _allowed_hosts() -> list[str]:
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:  # as Django does for requests
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return allowed


def websocket_application():
    from channels.routing import URLRouter

    from apps.live.transport import close_failed_connections_with_a_code

    close_failed_connections_with_a_code()  # 1009 for an over-size message, not a drop

    return OriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
