from django.apps import AppConfig


class ServerConfig(AppConfig):
    """The top of the app layers: what composes every other app into a running server.

    The ASGI start-up (control socket, background drain, in-process job worker), the admin
    socket's server side, the health, readiness and metrics endpoints, and backup and
    restore. It may import any app; no app imports it (pyproject.toml's import contract).
    """

    name = "apps.server"
    label = "server"
    verbose_name = "Server"
