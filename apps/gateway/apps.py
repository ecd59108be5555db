from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The memory gateway (docs/gateway.md): OpenAI- and Anthropic-compatible proxy routes
    under /proxy/ that recall the key's memories, inject them and forward to the upstream.
    A door: it calls the memories services, mounted in memoryweb/asgi.py."""

    name = "apps.gateway"
    label = "gateway"
    verbose_name = "Memory gateway"
