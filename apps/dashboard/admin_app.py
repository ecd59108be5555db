from django.contrib.admin.apps import AdminConfig


class DashboardAdminConfig(AdminConfig):
    """django.contrib.admin with MemoryWeb's site as the default ``admin.site``, so every
    app's ``@admin.register`` lands on the scoped site (apps/dashboard/sites.py)."""

    default_site = "apps.dashboard.sites.DashboardSite"
