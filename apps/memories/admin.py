"""Admin for memories. Every change goes through the service layer (versions, index)."""

from django.contrib import admin

from apps.memories import services
from apps.memories.models import IndexOutbox, Memory, MemoryVersion
from apps.memories.services import EDITABLE_FIELDS
from apps.tenancy.principal import Principal


class MemoryVersionInline(admin.TabularInline):
    model = MemoryVersion
    extra = 0
    can_delete = False
    fields = ["version", "changed_by", "changed_at", "changes"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ["snippet", "namespace", "agent_id", "kind", "created_at", "last_recalled_at",
                    "access_count"]
    list_filter = ["namespace", "kind", "created_at", "agent_id"]
    search_fields = ["content", "agent_id", "session_id"]
    date_hierarchy = "created_at"
    list_select_related = ["namespace"]
    inlines = [MemoryVersionInline]
    readonly_fields = ["id", "agent_id", "session_id", "created_at", "updated_at",
                       "last_recalled_at", "access_count", "content_hash", "version"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "namespace"] if obj else self.readonly_fields

    @admin.display(description="content")
    def snippet(self, obj):
        return obj.content[:80] + ("…" if len(obj.content) > 80 else "")

    def save_model(self, request, obj, form, change):
        principal = Principal.for_user(request.user)
        data = {f: form.cleaned_data[f] for f in EDITABLE_FIELDS if f in form.cleaned_data}
        if change:
            changed = {f: v for f, v in data.items() if f in form.changed_data}
            saved = services.update(principal, obj.pk, changed) if changed else obj
        else:
            saved = services.ingest(principal, {k: v for k, v in data.items() if v is not None},
                                    namespace=obj.namespace.slug)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        services.delete(Principal.for_user(request.user), obj.pk)

    def delete_queryset(self, request, queryset):
        principal = Principal.for_user(request.user)
        for pk in queryset.values_list("pk", flat=True):
            services.delete(principal, pk)


@admin.register(IndexOutbox)
class IndexOutboxAdmin(admin.ModelAdmin):
    list_display = ["id", "namespace", "memory_id", "op", "created_at", "attempts", "last_error"]
    list_filter = ["op", "namespace"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
