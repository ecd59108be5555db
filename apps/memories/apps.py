from django.apps import AppConfig


class MemoriesConfig(AppConfig):
    """Memories, their versions, the vector index outbox, ingest and recall."""

    name = "apps.memories"
    label = "memories"
