"""Namespaces, keys and authorization: the tenancy half of the service layer."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.audit.log import record as audit
from apps.core import namespace_keys
from apps.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from apps.core.roles import Action, Role
from apps.tenancy import key_cache
from apps.tenancy.key_touch import key_touches
from apps.tenancy.models import ApiKey, Namespace
from apps.tenancy.principal import Principal

KEY_PREFIX_WRITE = "mw_live_"
KEY_PREFIX_READ = "mw_read_"  # read-only keys are recognisable at a glance
_LOOKUP_CHARS = 12  # characters of the random part kept in clear as the lookup prefix

#: Agent ids of keys: URL-safe (they appear in /agents/{agent_id}/...) and never of the
#: form "user:<name>", which names people acting through the admin.
AGENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
SLUG_RE = re.compile(r"^[a-z0-9][-a-z0-9_]{0,63}$")


def check_agent_id(agent_id: str, field: str = "agent_id") -> str:
    if not isinstance(agent_id, str) or not AGENT_ID_RE.match(agent_id):
        raise InvalidInput(
            "agent_id must be 1-128 characters: letters, digits, '_', '.', '@', '-' "
            "(starting with a letter or digit).", field=field)
    return agent_id


def _hash_key(raw: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough (no dictionary attack).
    return hashlib.sha256(raw.encode()).hexdigest()


def create_namespace(slug: str, name: str = "", *,
                     actor: Principal | str = "system:manage.py",
                     encrypted: bool = False) -> Namespace:
    """A new namespace; ``actor`` is who the audit entry names (a principal, or the
    command that created it). ``encrypted``: its data key is made in the key store in
    the same transaction (docs/encryption.md), so an encrypted namespace never exists
    without one; a key store that cannot take it fails the creation."""
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise InvalidInput("slug must be lowercase letters, digits, '-' or '_'.", field="slug")
    try:
        with transaction.atomic():
            namespace = Namespace.objects.create(slug=slug, name=name or slug,
                                                 encrypted=encrypted)
            summary: dict[str, object] = {"name": namespace.name}
            if encrypted:
                summary["encrypted"] = True
                summary["key_version"] = namespace_keys.create(namespace.pk, namespace.slug)
            audit(actor, "namespace.create", namespace=namespace, summary=summary)
            return namespace
    except IntegrityError:
        raise Conflict(f"namespace {slug!r} already exists.", field="slug") from None


def create_api_key(
    *,
    role: Role,
    agent_id: str,
    namespace: Namespace | None = None,
    name: str = "",
    expires_at: datetime | None = None,
    actor: Principal | str = "system:manage.py",
    operation: str = "key.create",
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored or shown again
    (nor audited: the entry names the key's prefix, role and agent_id)."""
    if role == Role.SYSTEM and namespace is not None:
        raise InvalidInput("a system-admin key is global; give no namespace.", field="namespace")
    if role != Role.SYSTEM and namespace is None:
        raise InvalidInput("a namespace is required for this role.", field="namespace")
    check_agent_id(agent_id)
    head = KEY_PREFIX_READ if role == Role.READER else KEY_PREFIX_WRITE
    raw = head + secrets.token_urlsafe(32)
    with transaction.atomic():
        key = ApiKey.objects.create(
            namespace=namespace,
            role=role.label,
            agent_id=agent_id,
            name=name,
            prefix=raw[: len(head) + _LOOKUP_CHARS],
            key_hash=_hash_key(raw),
            expires_at=expires_at,
        )
        audit(actor, operation, namespace=namespace, record_ids=[key.pk],
              summary=key_summary(key))
    return key, raw


def key_summary(key: ApiKey) -> dict:
    """What an audit entry says about a key: never its secret or hash."""
    return {"prefix": key.prefix, "role": key.role, "agent_id": key.agent_id,
            "expires_at": key.expires_at.isoformat() if key.expires_at else None}


def authenticate_key(raw: str) -> ApiKey | None:
    """The active key matching ``raw``, compared in constant time, or None.

    A key authenticated in the last ``MEMORYWEB_KEY_CACHE_SECONDS`` comes from this
    process's memory of it (apps/tenancy/key_cache.py: keyed by the key's hash, expiry
    checked now, forgotten at once when it changes here), without SQL; each caller gets
    its own copy. (The gateway, while the database is down, asks the cache itself:
    apps/gateway/memory.py, ``key_cache.remembered``.)
    """
    if not raw.startswith((KEY_PREFIX_WRITE, KEY_PREFIX_READ)) or len(raw) > 200:
        return None
    digest = _hash_key(raw)
    remembered = key_cache.find(digest)
    if remembered is not None:
        if _touch(remembered):
            key_cache.remember(digest, remembered, key_cache.generation(), keep_until=True)
        return remembered
    seen = key_cache.generation()
    known, key = key_cache.revalidate(digest)  # remembered, its seconds up: read by pk
    if not known:
        key = _lookup(raw[: len(KEY_PREFIX_WRITE) + _LOOKUP_CHARS], digest)
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    _touch(key)
    key_cache.remember(digest, key, seen)
    return key


def _lookup(prefix: str, digest: str) -> ApiKey | None:
    """The active key with this prefix and hash, with its namespace: its id by the
    (unique) prefix, one statement not compiled by the ORM, then the row and namespace by
    primary key (``key_cache.read_active``: hash compared in constant time, active now).
    The ORM's lookup (active keys joined to their namespace, ``first()``) cost 0.75 ms
    in-process, ~1.1 ms in the server, for every key a process had not seen; this 0.16."""
    meta = ApiKey._meta
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote(meta.pk.column)} FROM {quote(meta.db_table)} WHERE "
                       f"{quote(meta.get_field('prefix').column)} = %s", [prefix])
        found = cursor.fetchone()
    return None if found is None else key_cache.read_active(found[0], digest)


def _touch(key: ApiKey) -> bool:
    """Record use at most once per MEMORYWEB_KEY_TOUCH_SECONDS, so reads stay reads;
    whether it did. Written off the request path (apps/tenancy/key_touch.py)."""
    now = timezone.now()
    period = timedelta(seconds=settings.MEMORYWEB_KEY_TOUCH_SECONDS)
    if key.last_used_at is None or now - key.last_used_at > period:
        key_touches.touch(key.pk, now)
        key.last_used_at = now
        return True
    return False


def resolve_namespace(principal: Principal, slug: str | None) -> Namespace:
    """The namespace a request acts on.

    A namespace-bound key acts on its own namespace (naming another one is a 404, as if
    it did not exist). A system admin must name one.
    """
    if slug is not None and (not isinstance(slug, str) or (slug and not SLUG_RE.match(slug))):
        raise NotFound("namespace not found.", field="namespace")  # cannot exist
    if principal.namespace_id is not None:
        namespace = principal.namespace or Namespace.objects.filter(pk=principal.namespace_id).first()
        if namespace is None or (slug and slug != namespace.slug):
            raise NotFound(f"namespace {slug!r} not found.", field="namespace")
        return namespace
    if not slug:
        raise InvalidInput("namespace is required for this credential.", field="namespace")
    namespace = Namespace.objects.filter(slug=slug).first()
    if namespace is None or principal.role_in(namespace.pk) is None:
        raise NotFound(f"namespace {slug!r} not found.", field="namespace")
    return namespace


def authorize(principal: Principal, namespace_id: int, action: Action) -> Role:
    """Raise NotFound if the namespace is invisible, PermissionDenied if the role is too low."""
    role = principal.role_in(namespace_id)
    if role is None:
        raise NotFound("not found.")
    if namespace_id in principal.dormant:  # apps/tenancy/mfa.py: the role awaits TOTP
        raise PermissionDenied(
            f"two-factor authentication is required for your {role.label} role in this "
            "namespace: set up an authenticator at /accounts/2fa/ (or use an API key).")
    if not principal.can(action, namespace_id):
        raise PermissionDenied(f"role {role.label!r} may not {action.value} in this namespace.")
    return role


def managed_namespace(principal: Principal, slug: str) -> Namespace:
    """The namespace ``slug`` if the principal may manage it (members, keys, grants)."""
    namespace = resolve_namespace(principal, slug)
    authorize(principal, namespace.pk, Action.MANAGE)
    return namespace


def check_writable(ns: Namespace) -> None:
    """An archived namespace keeps its memories readable and refuses every write."""
    if ns.archived_at is not None:
        raise Conflict(f"namespace {ns.slug!r} is archived; writes are refused until a system "
                       "admin unarchives it.", field="namespace")
