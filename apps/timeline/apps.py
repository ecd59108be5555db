from django.apps import AppConfig


class TimelineConfig(AppConfig):
    """Memory over time: day/week/month/year rollups of a namespace's events and
    memories, with grips back to their sources (docs/timeline.md)."""

    name = "apps.timeline"
    label = "timeline"
    verbose_name = "Timeline (rollups)"

    def ready(self) -> None:
        from apps.tenancy import namespace_settings
        from apps.timeline.erasure import register_stores
        from apps.timeline.namespace_setting import RollupSettings, validate_rollup_settings

        # A namespace's ``rollups`` (schedule on/off, interval, agents) is timeline's rule,
        # stored on tenancy's row.
        namespace_settings.register(namespace_settings.NamespaceSetting(
            "rollups", validate_rollup_settings, RollupSettings))
        register_stores()  # erasure, its checks and stats reach the rollups
