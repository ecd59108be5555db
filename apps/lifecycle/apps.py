from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    """Memory that maintains itself (docs/lifecycle.md): the day's digest, consolidation of
    memories that say the same thing (with lineage, reversible), namespace merge, strength
    and decay. Above live/privacy: it builds on the timeline and erases through privacy;
    nothing below imports it (its stores reach erasure through the registry)."""

    name = "apps.lifecycle"
    label = "lifecycle"
    verbose_name = "Lifecycle (digests, consolidation)"
