from django.apps import AppConfig


class MemoriesConfig(AppConfig):
    """Memories, their versions, the vector index outbox, ingest and recall."""

    name = "apps.memories"
    label = "memories"

    def ready(self) -> None:
        from apps.memories import signals  # noqa: F401  (connects the receivers)
