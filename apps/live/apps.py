from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "apps.live"
    label = "live"
    verbose_name = "Live (WebSocket)"

    def ready(self) -> None:
        from apps.live import receivers  # noqa: F401  (connects to memories' and tenancy's signals)
