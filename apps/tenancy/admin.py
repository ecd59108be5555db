"""Admin for namespaces, members, API keys and sharing grants, scoped per namespace.

Team admins see the namespaces they manage and change them, their members, keys and
grants through the same services as REST (so every change is checked and audited);
system admins see everything. A new key's secret is shown once, in a message.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import BooleanField, Case, Count, ExpressionWrapper, Value, When
from django.http import Http404, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import formats, timezone

from apps.core.confirm import confirmation_page, confirmed, plural
from apps.core.errors import ServiceError
from apps.core.roles import ROLE_CHOICES, ROLE_LABELS, Action, Role
from apps.core.validation import validate
from apps.tenancy import grants, invitations, namespaces
from apps.tenancy.admin_base import ScopedAdmin
from apps.tenancy.keys import (
    check_new_expiry,
    create_key,
    revoke_key,
    revoke_system_key,
    rotate_key,
    set_expiry,
)
from apps.tenancy.models import ApiKey, Invitation, Namespace, SharingGrant
from apps.tenancy.services import SLUG_RE, check_agent_id, create_api_key, create_namespace

#: The roles a member may hold (system admins are superusers, never members).
MEMBER_ROLES = (Role.READER, Role.AGENT, Role.ADMIN)


def _what_is_lost(username: str, yourself: bool, old: Role, new: Role, slug: str) -> str:
    """The demotion's effect in words, for the confirmation page."""
    who = "You" if yourself else username
    if old is Role.ADMIN:
        lost = (f"{who} can no longer manage {slug} (members, keys, grants, erasure requests) "
                "or edit and delete its memories")
        if new is Role.READER:
            lost += ", nor store new ones"
        return lost + ", at once."
    return f"{who} can no longer store memories in {slug}, at once; reading stays."


class NamespaceForm(forms.ModelForm):
    class Meta:
        model = Namespace
        fields = ["slug", "name", "near_duplicate_policy", "near_duplicate_threshold",
                  "recall_defaults", "rollups", "consolidation", "memory_mode", "gateway",
                  "audit_reads", "retention_days"]

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
        if self.instance.pk and "expires_at" in self.changed_data:
            try:  # the key service's own rule: never revive a revoked or rotated key
                check_new_expiry(self.instance, cleaned.get("expires_at"))
            except ServiceError as exc:
                self.add_error("expires_at", exc.message)
        if not self.instance.pk and cleaned.get("role"):
            system = cleaned["role"] == Role.SYSTEM.label
            if system and cleaned.get("namespace"):
                self.add_error("namespace", "a system-admin key is global; leave the namespace empty.")
            if not system and not cleaned.get("namespace"):
                self.add_error("namespace", "this role needs a namespace.")
        return cleaned


@admin.register(Namespace)
class NamespaceAdmin(ScopedAdmin):
    """Team admins change their namespaces' settings and members; creating and deleting
    namespaces is for system admins."""

    system_only_add = True
    system_only_delete = True
    form = NamespaceForm
    change_form_template = "admin/tenancy/namespace/change_form.html"
    list_display = ["slug", "name", "memory_count", "created_at"]
    search_fields = ["slug", "name"]
    readonly_fields = ["collection", "created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(memory_count=Count("memories"))

    def get_readonly_fields(self, request, obj=None):
        fields = [*self.readonly_fields, "slug"] if obj else list(self.readonly_fields)
        if not self.principal(request).is_system_admin:
            fields.append("gateway")  # names server credentials (namespace_setting.py)
        return fields

    def save_model(self, request, obj, form, change):
        """Through the namespace services, so the change is validated and audited."""
        principal = self.principal(request)
        if not change:
            created = create_namespace(obj.slug, obj.name, actor=principal)
            for name in ("near_duplicate_policy", "near_duplicate_threshold", "recall_defaults",
                         "rollups", "consolidation", "memory_mode", "gateway", "audit_reads",
                         "retention_days"):
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
        namespaces.delete_namespace(self.principal(request), obj)  # the door calls the service

    def delete_queryset(self, request, queryset):
        for namespace in queryset:
            self.delete_model(request, namespace)

    def get_deleted_objects(self, objs, request):
        """Everything in a namespace goes with it, through the namespace service (audited):
        deleting it needs the namespace's own delete permission (system admins), not a
        permission per key, grant or memory (keys, for one, are never deleted on their own)."""
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    @admin.display(ordering="memory_count", description="memories")
    def memory_count(self, obj):
        return obj.memory_count

    def get_urls(self):
        return [path("<path:object_id>/members/<str:username>/remove/",
                     self.admin_site.admin_view(self.remove_member_view),
                     name="tenancy_namespace_remove_member"),
                path("<path:object_id>/members/<str:username>/role/<str:role>/",
                     self.admin_site.admin_view(self.demote_member_view),
                     name="tenancy_namespace_demote_member"),
                *super().get_urls()]

    def _managed(self, request, object_id):
        """The namespace if the person manages it, else 404 (whoever else asks)."""
        namespace = self.get_object(request, object_id)
        if namespace is None or not self.principal(request).can(Action.MANAGE, namespace.pk):
            raise Http404("namespace not found.")
        return namespace

    def demote_member_view(self, request, object_id, username, role):
        """Lower a member's role after a confirmation page naming what they lose (issue 17,
        item 3); a GET or an unconfirmed POST changes nothing. Raising a role needs no
        confirmation (the member form does it at once). The last admin cannot be demoted:
        ``members.set_role`` refuses it (409) behind every door; this page says so first."""
        namespace = self._managed(request, object_id)
        principal = self.principal(request)
        back = reverse("admin:tenancy_namespace_change", args=[namespace.pk])
        current = namespaces.list_members(principal, namespace.slug)
        try:
            new = Role.from_label(role)
        except ValueError:
            raise Http404("no such role.") from None
        if username not in current or new not in MEMBER_ROLES:
            raise Http404("not a member, or not a member's role.")
        old = current[username]
        if new >= old:  # not a demotion: the member form sets it at once
            return HttpResponseRedirect(back)
        yourself = username == request.user.get_username()
        last = old is Role.ADMIN and [n for n, r in current.items() if r is Role.ADMIN] == [username]

        page = dict(title="Lower a member's role",
                    effect=f"Demote {username} from {old.label} to {new.label} in {namespace.slug}",
                    button=f"Demote {username} to {new.label}",
                    details=[_what_is_lost(username, yourself, old, new, namespace.slug),
                             "Their API keys keep their own roles (revoke them on the API keys "
                             "page)."])
        # Whoever demoted themself from admin cannot manage the namespace any more.
        return self._confirm_member_change(
            request, namespace, username, {"role": new.label}, last=last, page=page,
            done=f"Member {username}: now {new.label}.", back=back,
            leaves=yourself and new < Role.ADMIN)

    def remove_member_view(self, request, object_id, username):
        """Remove a member after a confirmation page naming them and the namespace (issue 17,
        item 3); a GET or an unconfirmed POST changes nothing. The namespace service refuses
        to remove the last admin (409), shown here as the page's error, before and after."""
        namespace = self._managed(request, object_id)
        principal = self.principal(request)
        back = reverse("admin:tenancy_namespace_change", args=[namespace.pk])
        current = namespaces.list_members(principal, namespace.slug)
        if username not in current:
            raise Http404("not a member.")
        yourself = username == request.user.get_username()
        admins = [name for name, role in current.items() if role is Role.ADMIN]
        last = admins == [username]

        page = dict(title="Remove member",
                    effect=f"Remove {username} ({current[username].label}) from {namespace.slug}",
                    button=f"Remove {username} from {namespace.slug}",
                    details=["You will lose access to this namespace at once." if yourself else
                             f"{username} loses access to {namespace.slug} at once.",
                             "Adding them back needs a new invitation."])
        # Whoever removed themselves cannot see the namespace any more.
        return self._confirm_member_change(request, namespace, username, None, last=last,
                                           page=page, done=f"Member {username}: removed.",
                                           back=back, leaves=yourself)

    def _confirm_member_change(self, request, namespace, username: str, change: dict | None, *,
                               last: bool, page: dict, done: str, back: str, leaves: bool):
        """The confirmation page ``page`` (title, effect, button, details), then
        ``set_member(…, change)`` on the confirming POST. The last admin's page says so and
        has no button (409 on a POST); the service is what enforces it, behind every door.
        ``leaves``: the person loses the namespace, so the result is the dashboard's index."""

        def show(error: str | None = None, status: int = 200):
            return confirmation_page(request, self.admin_site, cancel_url=back, error=error,
                                     can_confirm=error is None, status=status, **page)

        if last:  # said before the click too
            return show(f"{username} is the last admin of {namespace.slug}: make someone else "
                        "admin first.", 409 if request.method == "POST" else 200)
        if not confirmed(request):
            return show()
        try:
            namespaces.set_member(self.principal(request), namespace.slug, username, change)
        except ServiceError as exc:
            return show(exc.message, exc.status)
        messages.success(request, done)
        return HttpResponseRedirect(reverse("admin:index") if leaves else back)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The settings form, with the namespace's members below it (set through the
        namespace service: audited, team admins only for their own namespaces)."""
        namespace = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if namespace is not None:
            principal = self.principal(request)
            if request.method == "POST" and "_member" in request.POST:
                return self._set_member(request, principal, namespace)
            if request.method == "POST" and "_invitation" in request.POST:
                return self._revoke_invitation(request, principal, namespace)
            extra_context["members"] = namespaces.list_members(principal, namespace.slug)
            extra_context["member_roles"] = ["reader", "agent", "admin"]
            extra_context["invitations"] = [
                i for i in invitations.list_invitations(principal, namespace.slug)
                if i.state == "pending"]
        return super().change_view(request, object_id, form_url, extra_context)

    def _set_member(self, request, principal, namespace):
        """A member's role changes at once; anyone else is invited (as over REST, the
        message is the same whoever the name belongs to)."""
        username = request.POST.get("username", "").strip()
        role = request.POST.get("role", "")
        if role == "remove":  # only through the confirmation page (remove_member_view)
            return HttpResponseRedirect(reverse("admin:tenancy_namespace_remove_member",
                                                args=[namespace.pk, username or "?"]))
        held = namespaces.list_members(principal, namespace.slug).get(username)
        if held is not None and role in ROLE_LABELS and Role.from_label(role) < held:
            # A lower role: only through the confirmation page (demote_member_view).
            return HttpResponseRedirect(reverse("admin:tenancy_namespace_demote_member",
                                                args=[namespace.pk, username, role]))
        try:
            result = namespaces.set_member(principal, namespace.slug, username,
                                           None if role == "remove" else {"role": role})
        except ServiceError as exc:
            messages.error(request, f"Member {username or '?'}: {exc.message}")
        else:
            if isinstance(result, Invitation):
                messages.success(request, f"Member {username}: invited as {role} (they become "
                                 "a member when they accept).")
            else:
                messages.success(request, f"Member {username}: now {role}.")
        return HttpResponseRedirect(request.path)

    def _revoke_invitation(self, request, principal, namespace):
        try:
            invitation = invitations.revoke(principal, namespace.slug,
                                            request.POST.get("invitation"))
        except ServiceError as exc:
            messages.error(request, f"Invitation: {exc.message}")
        else:
            messages.success(request, f"Invitation of {invitation.invitee} revoked.")
        return HttpResponseRedirect(request.path)


@admin.register(ApiKey)
class ApiKeyAdmin(ScopedAdmin):
    form = ApiKeyForm
    list_display = ["prefix", "namespace", "role", "agent_id", "name", "created_at",
                    "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["role", ("namespace", admin.RelatedOnlyFieldListFilter)]
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

    def get_form(self, request, obj=None, change=False, **kwargs):
        """A team admin picks one of their namespaces and a member role, never system."""
        form = super().get_form(request, obj, change, **kwargs)
        principal = self.principal(request)
        if obj is None and not principal.is_system_admin:
            form.base_fields["namespace"].queryset = Namespace.objects.for_principal(
                principal, Action.MANAGE)
            form.base_fields["namespace"].required = True
            form.base_fields["role"].choices = [c for c in ROLE_CHOICES if c[0] != Role.SYSTEM.label]
        return form

    def has_delete_permission(self, request, obj=None):
        return False  # revoke (audited, evented); the row stays as the record

    def save_model(self, request, obj, form, change):
        principal = self.principal(request)
        if change:  # only the expiry can change: through the key service
            if "expires_at" in form.changed_data and obj.namespace is not None:
                expiry = obj.expires_at.isoformat() if obj.expires_at else None
                try:
                    set_expiry(principal, obj.namespace.slug, obj.pk, {"expires_at": expiry})
                except ServiceError as exc:
                    messages.error(request, exc.message)
            return
        if obj.namespace is None:  # a system key (the form allowed it to system admins only)
            key, raw = create_api_key(role=Role.SYSTEM, agent_id=obj.agent_id, namespace=None,
                                      name=obj.name, expires_at=obj.expires_at, actor=principal)
        else:  # the form has already checked what the service checks
            key, raw = create_key(principal, obj.namespace.slug, {
                "role": obj.role, "agent_id": obj.agent_id, "name": obj.name,
                "expires_at": obj.expires_at.isoformat() if obj.expires_at else None})
        obj.pk = key.pk
        messages.warning(request, f"Copy the new key now, it is not shown again: {raw}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        """Through the key service, as the REST endpoint."""
        principal = self.principal(request)
        count = 0
        for key in queryset.filter(revoked_at__isnull=True).select_related("namespace"):
            try:
                if key.namespace is None:
                    revoke_system_key(principal, key.pk)
                else:
                    revoke_key(principal, key.namespace.slug, key.pk)
            except ServiceError as exc:
                self.message_user(request, f"{key.prefix}: {exc.message}", messages.ERROR)
                continue
            count += 1
        self.message_user(request, f"{plural(count, 'key', 'keys')} revoked.")

    @admin.action(description="Rotate selected keys (old secrets work for the grace period)")
    def rotate(self, request, queryset):
        """Through the key service, as the REST endpoint; each new secret is shown once."""
        principal = self.principal(request)
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
    #: Named by slug, as over REST: a drop-down would list every tenant's namespace.
    grantee = forms.CharField(max_length=64, help_text="The slug of the namespace that may read.")

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

    def clean_grantee(self):
        slug = self.cleaned_data["grantee"].strip()
        grantee = Namespace.objects.filter(slug=slug).first() if SLUG_RE.match(slug) else None
        if grantee is None:
            raise forms.ValidationError(f"namespace {slug!r} does not exist.")
        return grantee

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
class SharingGrantAdmin(ScopedAdmin):
    """Grants are created and revoked through apps.tenancy.grants, never edited in place
    or deleted (a changed scope is a new grant; the revoked row is the record)."""

    form = SharingGrantForm
    list_display = ["grantor", "grantee", "tags", "kinds", "created_at", "expires_at", "status",
                    "revoked", "made_by"]
    list_filter = [("grantor", admin.RelatedOnlyFieldListFilter),
                   ("grantee", admin.RelatedOnlyFieldListFilter)]
    actions = ["revoke"]
    #: What only the grantor's side sees: who at the grantor made the grant, and when it
    #: was revoked (REST's /sharing/accessible shows the grantee neither).
    GRANTOR_ONLY = ("revoked_at", "created_by")

    def grantor_side(self, request, obj) -> bool:
        """Whether the viewer manages the grant's grantor (else they see it as grantee)."""
        principal = self.principal(request)
        return principal.is_system_admin or principal.can(Action.MANAGE, obj.grantor_id)

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(SharingGrantForm.Meta.fields)
        fields = [*SharingGrantForm.Meta.fields, "status", "revoked_at", "created_at", "created_by"]
        if not self.grantor_side(request, obj):
            fields = [name for name in fields if name not in self.GRANTOR_ONLY]
        return fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return self.get_fields(request, obj)

    def get_queryset(self, request):
        """Each row knows whether the viewer sees it as its grantor (the list's columns
        below depend on it; the admin instance is shared, so nothing is kept on it)."""
        principal = self.principal(request)
        mine = (Value(True) if principal.is_system_admin else Case(
            When(grantor_id__in=principal.namespace_ids(Action.MANAGE), then=Value(True)),
            default=Value(False)))
        return super().get_queryset(request).annotate(
            viewer_is_grantor=ExpressionWrapper(mine, output_field=BooleanField()))

    @admin.display(description="status")
    def status(self, obj):
        return obj.status

    @admin.display(ordering="revoked_at", description="revoked")
    def revoked(self, obj):
        if obj.revoked_at is None or not obj.viewer_is_grantor:
            return "-"
        return formats.localize(timezone.template_localtime(obj.revoked_at))

    @admin.display(description="made by")
    def made_by(self, obj):
        return obj.created_by if obj.viewer_is_grantor else "-"

    def has_delete_permission(self, request, obj=None):
        return False

    def get_form(self, request, obj=None, change=False, **kwargs):
        """A team admin shares from a namespace they manage (to any namespace)."""
        form = super().get_form(request, obj, change, **kwargs)
        principal = self.principal(request)
        if obj is None and not principal.is_system_admin:
            form.base_fields["grantor"].queryset = Namespace.objects.for_principal(
                principal, Action.MANAGE)
        return form

    def save_model(self, request, obj, form, change):
        if not change:  # the form has checked what the service checks
            grant = grants.create_grant(self.principal(request), obj.grantor.slug,
                                        form.service_input())
            obj.pk = grant.pk

    @admin.action(description="Revoke selected grants")
    def revoke(self, request, queryset):
        principal = self.principal(request)
        revoked = 0
        for grant in queryset.select_related("grantor"):
            try:
                grants.revoke_grant(principal, grant.grantor.slug, grant.pk)
                revoked += 1
            except ServiceError as exc:  # a grantee's admin sees the grant, cannot revoke it
                self.message_user(request, f"grant {grant.pk}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{plural(revoked, 'grant', 'grants')} revoked.")
