from django.apps import AppConfig


class MemoriesConfig(AppConfig):
    """Memories, their versions, the vector index outbox, ingest and recall."""

    name = "apps.memories"
    label = "memories"

    def ready(self) -> None:
        from apps.memories import signals  # noqa: F401  (connects the receivers)
        from apps.memories.schemas import RecallDefaults, validate_recall_defaults
        from apps.tenancy import namespace_settings

        # A namespace's recall_defaults are memories' rules, stored on tenancy's row.
        namespace_settings.register(namespace_settings.NamespaceSetting(
            "recall_defaults", validate_recall_defaults, RecallDefaults))
        from apps.memories.memory_modes import MemoryModeSettings, validate_memory_mode_settings

        # The memory mode (full/readonly/after/off) that the gateway and the drop-in store
        # routes honour: memories' rule, since two sibling doors read it.
        namespace_settings.register(namespace_settings.NamespaceSetting(
            "memory_mode", validate_memory_mode_settings, MemoryModeSettings))

        from apps.memories.own_stores import register_memory_stores

        register_memory_stores()  # the registry erasure, verification, stats and reindex iterate

        from apps.memories.collectors import register_collectors

        register_collectors()  # the outbox backlog gauge at /metrics
