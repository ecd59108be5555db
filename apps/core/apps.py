from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Shared plumbing: the error format, request limits, pagination."""

    name = "apps.core"
    label = "core"
