from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Shared plumbing: the error format, request limits, pagination."""

    name = "apps.core"
    label = "core"

    def ready(self) -> None:
        # Registers the settings checks (apps/core/checks.py) with Django's framework.
        from apps.core import checks  # noqa: F401
