"""Admin for namespaces, API keys and sharing grants. A new key's secret is shown once,
in a message. Keys and grants change through their services, as over REST."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count

from apps.core.admin import SuperuserOnlyAdmin
from apps.core.errors import ServiceError
from apps.memories.schemas import validate
from apps.tenancy import grants, namespaces
from apps.tenancy.keys import revoke_key, revoke_system_key, rotate_key, set_expiry
from apps.tenancy.models import ApiKey, Namespace, SharingGrant
from apps.tenancy.principal import Principal
from apps.tenancy.roles import Role
from apps.tenancy.services import SLUG_RE, check_agent_id, create_api_key, create_namespace


class NamespaceForm(forms.ModelForm):
    class Meta:
        model = Namespace
        fields = ["slug", "name", "near_duplicate_policy", "near_duplicate_threshold",
                  "recall_defaults", "audit_reads", "retention_days"]

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if not SLUG_RE.match(slug):
            raise forms.ValidationError("lowercase letters, digits, '-' or '_'.")
        return slug


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["namespace", "role", "agent_id", "name", "expires_at", "revoked_at"]

    def clean_agent_id(self):
        try:
            return check_agent_id(self.cleaned_data["agent_id"])
        except ServiceError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and cleaned.get("role"):
            system = cleaned["role"] == Role.SYSTEM.label
            if system and cleaned.get("namespace"):
                self.add_error("namespace", "a system-admin key is global; leave the namespace empty.")
            if not system and not cleaned.get("namespace"):
                self.add_error("namespace", "this role needs a namespace.")
        return cleaned


@admin.register(Namespace)
class NamespaceAdmin(SuperuserOnlyAdmin):
    form = NamespaceForm
    list_display = ["slug", "name", "memory_count", "created_at"]
    search_fields = ["slug", "name"]
    readonly_fields = ["collection", "created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(memory_count=Count("memories"))

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "slug"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        """Through the namespace services, so the change is validated and audited."""
        principal = Principal.for_user(request.user)
        if not change:
            created = create_namespace(obj.slug, obj.name, actor=principal)
            for name in ("near_duplicate_policy", "near_duplicate_threshold", "recall_defaults",
                         "audit_reads", "retention_days"):
                setattr(created, name, getattr(obj, name))
            obj.pk = created.pk
            form.changed_data = [name for name in form.changed_data if name not in ("slug", "name")]
        if form.changed_data:
            data = {name: getattr(obj, name) for name in form.changed_data
                    if name in namespaces.NamespaceUpdate().fields}
            try:
                namespaces.update(principal, Namespace.objects.get(pk=obj.pk).slug, data)
            except ServiceError as exc:  # the form validated the same rules
                messages.error(request, exc.message)

    def delete_model(self, request, obj):
        from apps.memories.services import delete_namespace  # the door calls the service

        delete_namespace(Principal.for_user(request.user), obj)

    def delete_queryset(self, request, queryset):
        for namespace in queryset:
            self.delete_model(request, namespace)

    @admin.display(ordering="memory_count", description="memories")
    def memory_count(self, obj):
        return obj.memory_count


@admin.register(ApiKey)
class ApiKeyAdmin(SuperuserOnlyAdmin):
    form = ApiKeyForm
    list_display = ["prefix", "namespace", "role", "agent_id", "name", "created_at",
                    "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["role", "namespace"]
    search_fields = ["prefix", "agent_id", "name"]
    fields = ["namespace", "role", "agent_id", "name", "expires_at", "revoked_at"]
    actions = ["revoke", "rotate"]

    def get_readonly_fields(self, request, obj=None):
        # Key material and binding never change (make a new key); revoking is an action.
        if obj is None:
            return ["revoked_at"]
        fixed = ["namespace", "role", "agent_id", "name", "prefix", "created_at", "last_used_at",
                 "revoked_at"]
        # A system key's expiry has no service door (it belongs to no namespace): fixed too.
        return fixed + (["expires_at"] if obj.namespace_id is None else [])

    def save_model(self, request, obj, form, change):
        principal = Principal.for_user(request.user)
        if change:  # only the expiry can change: through the key service
            if "expires_at" in form.changed_data and obj.namespace is not None:
                expiry = obj.expires_at.isoformat() if obj.expires_at else None
                try:
                    set_expiry(principal, obj.namespace.slug, obj.pk, {"expires_at": expiry})
                except ServiceError as exc:
                    messages.error(request, exc.message)
            return
        key, raw = create_api_key(  # the form has already checked what the service checks
            role=Role.from_label(obj.role), agent_id=obj.agent_id, namespace=obj.namespace,
            name=obj.name, expires_at=obj.expires_at, actor=principal,
        )
        obj.pk = key.pk
        messages.warning(request, f"Copy the new key now, it is not shown again: {raw}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        """Through the key service, as the REST endpoint."""
        principal = Principal.for_user(request.user)
        count = 0
        for key in queryset.filter(revoked_at__isnull=True).select_related("namespace"):
            if key.namespace is None:
                revoke_system_key(principal, key.pk)
            else:
                revoke_key(principal, key.namespace.slug, key.pk)
            count += 1
        self.message_user(request, f"{count} key(s) revoked.")

    @admin.action(description="Rotate selected keys (old secrets work for the grace period)")
    def rotate(self, request, queryset):
        """Through the key service, as the REST endpoint; each new secret is shown once."""
        principal = Principal.for_user(request.user)
        for key in queryset.select_related("namespace"):
            if key.namespace is None:
                self.message_user(request, f"{key.prefix}: system keys are rotated by creating "
                                  "a new one.", messages.ERROR)
                continue
            try:
                new, raw = rotate_key(principal, key.namespace.slug, key.pk)
            except ServiceError as exc:
                self.message_user(request, f"{key.prefix}: {exc.message}", messages.ERROR)
                continue
            messages.warning(request, f"{key.prefix} rotated. Copy the new key now, it is not "
                             f"shown again: {raw} (new prefix {new.prefix})")


class SharingGrantForm(forms.ModelForm):
    class Meta:
        model = SharingGrant
        fields = ["grantor", "grantee", "tags", "kinds", "created_after", "created_before",
                  "expires_at"]

    def service_input(self) -> dict:
        """The form's values as the grant service's input (what REST would send)."""
        data = {name: self.cleaned_data.get(name) for name in self.Meta.fields[2:]}
        data = {name: value for name, value in data.items() if value not in (None, [], "")}
        for moment in ("created_after", "created_before", "expires_at"):
            if moment in data:
                data[moment] = data[moment].isoformat()
        grantee = self.cleaned_data.get("grantee")
        return {"grantee": grantee.slug if grantee else "", **data}

    def clean(self):
        cleaned = super().clean()
        grantor, grantee = cleaned.get("grantor"), cleaned.get("grantee")
        if grantor and grantee and grantor == grantee:
            self.add_error("grantee", "a namespace cannot share with itself.")
        try:
            validate(grants.GrantInput, self.service_input())
        except ServiceError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return cleaned


@admin.register(SharingGrant)
class SharingGrantAdmin(SuperuserOnlyAdmin):
    """Grants are created and revoked through apps.tenancy.grants, never edited in place
    or deleted (a changed scope is a new grant; the revoked row is the record)."""

    form = SharingGrantForm
    list_display = ["grantor", "grantee", "tags", "kinds", "created_at", "expires_at",
                    "revoked_at", "created_by"]
    list_filter = ["grantor", "grantee"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [*SharingGrantForm.Meta.fields, "revoked_at", "created_at", "created_by"]

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if not change:  # the form has checked what the service checks
            grant = grants.create_grant(Principal.for_user(request.user), obj.grantor.slug,
                                        form.service_input())
            obj.pk = grant.pk

    @admin.action(description="Revoke selected grants")
    def revoke(self, request, queryset):
        principal = Principal.for_user(request.user)
        for grant in queryset.select_related("grantor"):
            grants.revoke_grant(principal, grant.grantor.slug, grant.pk)
        self.message_user(request, f"{queryset.count()} grant(s) revoked.")
