"""Tenants (namespaces) and the API keys agents authenticate with."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.kinds import MemoryKind
from apps.core.roles import ROLE_CHOICES, Role
from apps.core.scoping import NamespaceScopedQuerySet


def new_collection_name() -> str:
    """A Chroma collection name that is never reused, even for a re-created slug."""
    return uuid.uuid4().hex


class NearDuplicatePolicy(models.TextChoices):
    KEEP = "keep"
    LINK = "link"
    SKIP = "skip"


class NamespaceQuerySet(NamespaceScopedQuerySet):
    namespace_fields = ("pk",)


class Namespace(models.Model):
    """A tenant: memories, keys and (later) members and grants belong to exactly one."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    collection = models.CharField(
        max_length=64,
        unique=True,
        default=new_collection_name,
        editable=False,
        help_text="Suffix of this namespace's Chroma collection.",
    )
    reindex_started_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Set while manage.py reindex rebuilds the collection: writes keep their "
        "outbox rows so the rebuild replays them after the swap.",
    )
    near_duplicate_policy = models.CharField(
        max_length=8, choices=NearDuplicatePolicy.choices, default=NearDuplicatePolicy.LINK,
        help_text="What ingest does with a memory whose embedding is within the threshold of "
        "an existing one: keep it unlinked, store it linked (near_duplicate_of), or skip it "
        "and return the existing memory.")
    near_duplicate_threshold = models.FloatField(
        null=True, blank=True,
        help_text="Cosine similarity at or above which a memory is a near-duplicate; empty "
        "means MEMORYWEB_NEAR_DUPLICATE_THRESHOLD.")
    recall_defaults = models.JSONField(
        default=dict, blank=True,
        help_text='Overrides of the server\'s recall settings for this namespace, e.g. '
        '{"mode": "hybrid", "fusion": "rrf", "weights": {"lexical": 1.5}, "min_score": 0.2, '
        '"mmr_lambda": 0.7}. See docs/recall.md.')
    rollups = models.JSONField(
        default=dict, blank=True,
        help_text='The timeline\'s scheduled rollups here, e.g. {"enabled": true, '
        '"interval_minutes": 60, "agents": ["planner"]}; empty follows the server '
        '(MEMORYWEB_ROLLUPS_SCHEDULED). See docs/timeline.md.')
    consolidation = models.JSONField(
        default=dict, blank=True,
        help_text='Scheduled consolidation here, e.g. {"enabled": true, "interval_hours": 24, '
        '"threshold": 0.86}: merges the memories that say the same thing on schedule '
        '(reversible). Empty: off. See docs/lifecycle.md.')
    memory_mode = models.JSONField(
        default=dict, blank=True,
        help_text='The memory mode of the gateway and the drop-in store routes here, e.g. '
        '{"default": "readonly", "allow_client_control": false}: full, readonly, after '
        '(with "after": "YYYY-MM-DD") or off. Empty: full, headers honoured. See docs/gateway.md.')
    gateway = models.JSONField(
        default=dict, blank=True,
        help_text='The gateway\'s upstreams for this namespace (system admins only), e.g. '
        '{"upstreams": {"openai": {"url": "https://…/v1", "key_file": "acme.key"}}}: key files '
        'are names in MEMORYWEB_GATEWAY_KEY_DIR. Empty: the server\'s. See docs/gateway.md.')
    audit_reads = models.BooleanField(
        null=True, blank=True,
        help_text="Write an audit entry for every recall in this namespace (ids returned, never "
        "the query or content); empty means MEMORYWEB_AUDIT_READS. Exports are always audited.")
    retention_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Erase memories older than this many days (manage.py expire_memories, "
        "through the erasure path, with a certificate); empty keeps them until deleted.")
    archived_at = models.DateTimeField(
        null=True, blank=True,
        help_text="Set when a system admin archives the namespace: its memories stay readable, "
        "writes are refused (409) until it is unarchived.")
    encrypted = models.BooleanField(
        default=False, editable=False,
        help_text="Its memories' text is sealed under the namespace's own data key (kept "
        "wrapped in MEMORYWEB_KEYSTORE_DIR) and its keyword index holds blind tokens; set by "
        "create_namespace --encrypted, never turned off. See docs/encryption.md.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = NamespaceQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]
        # Member roles are bundles of these, held per namespace (roles.ROLE_PERMISSIONS).
        permissions = [
            ("read_memories", "Recall and read the namespace's memories"),
            ("ingest_memories", "Store memories in the namespace"),
            ("edit_memories", "Edit and delete the namespace's memories"),
            ("manage_namespace", "Manage the namespace's members, keys and grants"),
        ]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from apps.core.errors import InvalidInput
        from apps.tenancy import namespace_settings  # keeps DRF out of the models import

        if self.near_duplicate_threshold is not None and not 0 < self.near_duplicate_threshold <= 1:
            raise ValidationError({"near_duplicate_threshold": "must be in (0, 1]."})
        for name in SETTING_FIELDS:
            try:
                setattr(self, name, namespace_settings.clean(name, getattr(self, name)))
            except InvalidInput as exc:
                where = f"{exc.field}: " if exc.field else ""
                raise ValidationError({name: where + exc.message}) from None


#: Namespace fields whose rules belong to an app above tenancy (namespace_settings.py).
SETTING_FIELDS = ("recall_defaults", "rollups", "consolidation", "memory_mode", "gateway")


class ApiKeyQuerySet(NamespaceScopedQuerySet):
    def active(self) -> ApiKeyQuerySet:
        """Keys that authenticate now: every door looks keys up through this.

        A rotated key's grace end is checked on its own, not only through ``expires_at``
        (which a constraint already keeps at or before it), so supersession is honoured
        even if the expiry were ever written past it.
        """
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        ).filter(models.Q(grace_ends_at__isnull=True) | models.Q(grace_ends_at__gt=now))


class ApiKey(models.Model):
    """An agent credential bound to one namespace, one agent_id and one role.

    Only a SHA-256 of the key is stored; ``prefix`` (the first characters, shown in
    lists) finds the row, and the hash is compared in constant time. A key with role
    ``system`` has no namespace and names one per request.
    """

    namespace = models.ForeignKey(
        Namespace, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    role = models.CharField(max_length=16, choices=ROLE_CHOICES)
    agent_id = models.CharField(max_length=128)
    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Rotation is recorded, not only expressed as an expiry: clearing or pushing out the
    # expiry of a rotated key must never bring its old secret back (issue 16, item 3).
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="supersedes",
        editable=False, help_text="The key that replaced this one when it was rotated.")
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False,
                                      help_text="When this key was rotated away.")
    grace_ends_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="A rotated key's last moment: its expiry may move earlier, never past this.")

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        # Not Django's "Api keys" from the class name.
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role="system", namespace__isnull=True)
                | (~models.Q(role="system") & models.Q(namespace__isnull=False)),
                name="apikey_system_iff_no_namespace",
            ),
            models.CheckConstraint(
                condition=models.Q(rotated_at__isnull=True, grace_ends_at__isnull=True)
                | models.Q(rotated_at__isnull=False, grace_ends_at__isnull=False),
                name="apikey_rotation_recorded_whole",
            ),
            # The database itself refuses to revive a rotated key, whatever writes it.
            models.CheckConstraint(
                condition=models.Q(grace_ends_at__isnull=True)
                | models.Q(expires_at__isnull=False, expires_at__lte=models.F("grace_ends_at")),
                name="apikey_rotated_expires_within_grace",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.role}, {self.agent_id})"

    @property
    def role_enum(self) -> Role:
        return Role.from_label(self.role)

    @property
    def is_superseded(self) -> bool:
        return self.rotated_at is not None

    @property
    def status(self) -> str:
        """active, expired or revoked (a rotated key past its grace is expired)."""
        if self.revoked_at is not None:
            return "revoked"
        now = timezone.now()
        if ((self.expires_at is not None and self.expires_at <= now)
                or (self.grace_ends_at is not None and self.grace_ends_at <= now)):
            return "expired"
        return "active"


class SharingGrantQuerySet(NamespaceScopedQuerySet):
    #: A grant is visible to both sides; only the grantor's admins may revoke it.
    namespace_fields = ("grantor_id", "grantee_id")

    def live(self) -> SharingGrantQuerySet:
        """Neither revoked nor expired: read at every request, so a revoke bites at once."""
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=timezone.now())
        )


class SharingGrant(models.Model):
    """Namespace ``grantor`` lets namespace ``grantee`` read some of its memories.

    The scope is every memory of the grantor unless narrowed: ``tags`` (a memory with
    any of them), ``kinds`` (one of them) and a window on when memories were stored
    (``created_after`` inclusive, ``created_before`` exclusive). Several live grants
    between the same pair add up (a memory is shared if any grant covers it). Grants
    are revoked, not deleted, so the record of what was shared stays.
    """

    grantor = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="grants_given")
    grantee = models.ForeignKey(Namespace, on_delete=models.CASCADE,
                                related_name="grants_received")
    tags = models.JSONField(default=list, blank=True,
                            help_text="Share only memories with any of these tags (empty: any).")
    kinds = models.JSONField(default=list, blank=True,
                             help_text="Share only memories of these kinds (empty: any).")
    created_after = models.DateTimeField(
        null=True, blank=True, help_text="Share only memories stored at or after this moment.")
    created_before = models.DateTimeField(
        null=True, blank=True, help_text="Share only memories stored before this moment.")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=200, editable=False,
                                  help_text="The principal that created the grant.")

    objects = SharingGrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(grantor=models.F("grantee")),
                                   name="sharinggrant_not_to_itself"),
        ]
        indexes = [models.Index(fields=["grantee", "revoked_at"], name="grant_grantee_idx")]

    def __str__(self) -> str:
        return f"{self.grantor} → {self.grantee}"

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    @property
    def is_unrestricted(self) -> bool:
        return not (self.tags or self.kinds or self.created_after or self.created_before)

    def covers(self, memory) -> bool:
        """Whether this grant's scope includes ``memory`` (a Memory of the grantor)."""
        return memory.namespace_id == self.grantor_id and self.covers_fields(
            memory.tags, memory.kind, memory.created_at)

    def covers_fields(self, tags, kind: str, created_at) -> bool:
        """The scope test on a memory's fields (a row, or a live event's copy of one).

        A restricted grant shares summaries only when its ``kinds`` name ``summary``: a
        summary (the timeline's, rebuilt with a new ``created_at``) quotes memories from
        any time and of any kind and tag, so a window or a tag would not bound what it
        carries (docs/tenancy.md)."""
        if kind == MemoryKind.SUMMARY and not self.is_unrestricted and MemoryKind.SUMMARY not in (
                self.kinds or []):
            return False
        return ((not self.tags or bool(set(self.tags) & set(tags or [])))
                and (not self.kinds or kind in self.kinds)
                and (self.created_after is None or created_at >= self.created_after)
                and (self.created_before is None or created_at < self.created_before))


class InvitationStatus(models.TextChoices):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"


class InvitationQuerySet(NamespaceScopedQuerySet):
    def open(self) -> InvitationQuerySet:
        """Pending and not expired: what the invited person may still accept."""
        return self.filter(status=InvitationStatus.PENDING, expires_at__gt=timezone.now())


class Invitation(models.Model):
    """A team admin's offer of a role in their namespace; the person accepts or declines.

    ``invitee`` is the username or e-mail address as the inviter typed it. ``user`` is
    whom it named when it was sent (empty when it named nobody who may accept: no such
    account, a system admin, an inactive account). The inviter never sees ``user``, and a
    name that nobody holds is stored and listed like any other, so sending an invitation
    tells the inviter nothing about who exists on the server; an account registered
    under that name later does not inherit it.
    """

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="invitations")
    invitee = models.CharField(max_length=254)
    by_email = models.BooleanField(default=False, help_text="invitee is an e-mail address.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, editable=False,
                             on_delete=models.SET_NULL, related_name="+")
    role = models.CharField(max_length=16, choices=[c for c in ROLE_CHOICES if c[0] != "system"])
    status = models.CharField(max_length=16, choices=InvitationStatus.choices,
                              default=InvitationStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=200, editable=False,
                                  help_text="The principal that sent the invitation.")
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True,
                                      help_text="When it was accepted, declined or revoked.")

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["namespace", "invitee", "by_email"],
                                    condition=models.Q(status="pending"),
                                    name="invitation_one_pending_per_invitee"),
        ]
        indexes = [models.Index(fields=["user", "status"], name="invitation_user_idx")]

    def __str__(self) -> str:
        return f"{self.invitee} → {self.namespace} ({self.role}, {self.state})"

    @property
    def state(self) -> str:
        """The status, with a pending invitation past its expiry shown as expired."""
        if self.status == InvitationStatus.PENDING and self.expires_at <= timezone.now():
            return "expired"
        return self.status
