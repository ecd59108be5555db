from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    """Memory that maintains itself (docs/lifecycle.md): the day's digest, consolidation of
    memories that say the same thing (with lineage, reversible), namespace merge, strength
    and decay. Above live/privacy: it builds on the timeline and erases through privacy;
    nothing below imports it (its stores reach erasure through the registry)."""

    name = "apps.lifecycle"
    label = "lifecycle"
    verbose_name = "Lifecycle (digests, consolidation)"

    def ready(self) -> None:
        from apps.lifecycle import consolidation_jobs, forgetting
        from apps.lifecycle.namespace_merge import register_stores
        from apps.lifecycle.namespace_setting import (
            ConsolidationSettings,
            validate_consolidation_settings,
        )
        from apps.tenancy import namespace_settings

        # A namespace's ``consolidation`` (schedule, interval, threshold) is lifecycle's
        # rule, stored on tenancy's row.
        namespace_settings.register(namespace_settings.NamespaceSetting(
            "consolidation", validate_consolidation_settings, ConsolidationSettings))
        register_stores()  # the namespace merges' records (kept, ids only)
        forgetting.register_stores()  # the forgetting review list (cascade)
        consolidation_jobs.register_stores()  # consolidation jobs' results (ids only)
