"""Admin for memories. Every change goes through the service layer (versions, index)."""

from django import forms
from django.contrib import admin, messages

from apps.core.admin import SuperuserOnlyAdmin
from apps.core.errors import ServiceError
from apps.memories import schemas, services
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


class MemoryForm(forms.ModelForm):
    """Runs the service layer's own validation, so refusals show on the form, not as a 500."""

    class Meta:
        model = Memory
        fields = ["namespace", *EDITABLE_FIELDS]

    def clean(self):
        cleaned = super().clean()
        data = {f: cleaned[f] for f in EDITABLE_FIELDS if cleaned.get(f) is not None}
        try:
            schemas.validate(schemas.MemoryUpdate if self.instance.pk else schemas.MemoryInput, data,
                             partial=bool(self.instance.pk))
        except ServiceError as exc:
            field = exc.field.split(".")[0].split("[")[0] if exc.field else None
            self.add_error(field if field in self.fields else None, exc.message)
        return cleaned


@admin.register(Memory)
class MemoryAdmin(SuperuserOnlyAdmin):
    form = MemoryForm
    list_display = ["snippet", "namespace", "agent_id", "kind", "created_at", "last_recalled_at",
                    "access_count"]
    list_filter = ["namespace", "kind", "created_at", "agent_id",
                   ("near_duplicate_of", admin.EmptyFieldListFilter)]
    search_fields = ["content", "agent_id", "session_id"]
    date_hierarchy = "created_at"
    list_select_related = ["namespace"]
    inlines = [MemoryVersionInline]
    readonly_fields = ["id", "agent_id", "session_id", "created_at", "updated_at",
                       "last_recalled_at", "access_count", "near_duplicate_of", "content_hash",
                       "version"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "namespace"] if obj else self.readonly_fields

    @admin.display(description="content")
    def snippet(self, obj):
        return obj.content[:80] + ("…" if len(obj.content) > 80 else "")

    # The services run their own transactions and index after commit; the admin's
    # outer transaction would hold SQLite's write lock while the model embeds.
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return self._changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        return self._delete_view(request, object_id, extra_context)

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
        try:
            ids = list(queryset.values_list("pk", flat=True))
            services.delete_many(Principal.for_user(request.user), ids)
        except ServiceError as exc:
            messages.error(request, exc.message)


@admin.register(IndexOutbox)
class IndexOutboxAdmin(SuperuserOnlyAdmin):
    list_display = ["id", "namespace", "memory_id", "op", "created_at", "attempts", "last_error"]
    list_filter = ["op", "namespace"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # pending index work is replayed, never discarded by hand
