from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    name = "apps.privacy"
    label = "privacy"
    verbose_name = "Privacy (export, erasure)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.privacy.erasure import register_stores

        register_stores()  # the erasure records, in memories' store registry (kept)
