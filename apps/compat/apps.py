from django.apps import AppConfig


class CompatConfig(AppConfig):
    """Moving to MemoryWeb: drop-in routes for clients of the memory servers it replaces
    (seed 000 at MEMORYWEB_CMM_PREFIX, seed 003 at MEMORYWEB_MEMORYOSS_PREFIX) and the
    importers (`manage.py import_memories`)."""

    name = "apps.compat"
    label = "compat"
    verbose_name = "Compatibility"
