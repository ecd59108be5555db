from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The dashboard: MemoryWeb's admin site, its login rules and pages beyond CRUD.

    The admin app itself is installed as ``apps.dashboard.admin_app.DashboardAdminConfig``.
    """

    name = "apps.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"
