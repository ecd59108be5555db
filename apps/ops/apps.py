from django.apps import AppConfig


class OpsConfig(AppConfig):
    """The machinery every app uses: background jobs (the runner, their state, the
    in-process worker), Prometheus metrics, the admin socket's client side, and the
    ``jobs`` command. Low in the app layers: it imports only apps.core."""

    name = "apps.ops"
    label = "ops"

    def ready(self) -> None:
        from apps.ops.jobs import autodiscover
        from apps.ops.metrics import register_collectors

        register_collectors()
        autodiscover()  # every app's tasks module: the jobs it owns join the registry
