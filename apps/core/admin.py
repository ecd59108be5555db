"""Admin helpers shared by the apps."""

from django.contrib import admin


class SuperuserOnlyAdmin(admin.ModelAdmin):
    """Visible to superusers (system admins) only.

    Team admins get scoped access through per-namespace permissions (django-guardian,
    issue 4) and the dashboard (issue 7); until then a staff flag alone must not reveal
    every tenant's data.
    """

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_delete_permission(self, request, obj=None):
        return self.has_module_permission(request)


class ReadOnlyAdmin(SuperuserOnlyAdmin):
    """Viewable by system admins, never added, changed or deleted here: records (audit
    entries, erasure requests) that only their services write."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
