from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Health and readiness probes, operational commands."""

    name = "apps.ops"
    label = "ops"
