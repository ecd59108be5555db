from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    name = "apps.privacy"
    label = "privacy"
    verbose_name = "Privacy (export, erasure)"
    default_auto_field = "django.db.models.BigAutoField"
