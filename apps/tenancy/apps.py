from django.apps import AppConfig


class TenancyConfig(AppConfig):
    """Namespaces, API keys, principals and roles."""

    name = "apps.tenancy"
    label = "tenancy"

    def ready(self) -> None:
        from apps.tenancy import schema  # noqa: F401  (registers OpenAPI extensions)
