"""People in the admin (system admins only, as Django's model permissions say): every
change of a user account is written to the audit log, like every other change made in
the dashboard. Namespace roles are set on the namespace's page (through its service)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import transaction

from apps.audit.log import record as audit
from apps.tenancy.people import principal_for

User = get_user_model()

#: Fields whose change is named in the entry (never a password hash or other secret).
AUDITED_FIELDS = ("username", "email", "first_name", "last_name", "is_active", "is_staff",
                  "is_superuser", "groups", "user_permissions", "password")


class AuditedUserAdmin(UserAdmin):
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        named = {"password" if name.startswith("password") else name for name in form.changed_data}
        changed = sorted(named & set(AUDITED_FIELDS))
        audit(principal_for(request), "user.update" if change else "user.create",
              record_ids=[obj.pk], summary={"username": obj.get_username(), "fields": changed})

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit(principal_for(request), "user.delete", record_ids=[obj.pk],
                  summary={"username": obj.get_username()})
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for user in queryset:
                self.delete_model(request, user)


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, AuditedUserAdmin)
