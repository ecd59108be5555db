from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Health and readiness probes, metrics, background jobs, operational commands."""

    name = "apps.ops"
    label = "ops"

    def ready(self) -> None:
        from apps.ops.metrics import register_collectors

        register_collectors()
