"""Four eyes on erasures: whoever asked for an erasure does not approve it too.

With ``MEMORYWEB_ERASURE_FOUR_EYES`` on (the default when ``MEMORYWEB_ENV=production``)
an approval must come from another *identity* than the request. Principals are compared
by who stands behind them, not by label, or one person could ask through their session
and approve through a key they made:

* a person (``user:alice``) is that person;
* a key is whoever created it: the actor of the audit entry that minted it (``key.create``
  or ``key.rotate``; they were shown its secret). A key minted by a key belongs to whoever
  stands behind that one, and so on. A key made by ``manage.py create_api_key`` has no
  recorded owner (``system:manage.py`` is whoever ran the command): it is its own identity;
* jobs (``system:retention``) are not people: they erase what a setting already decided
  (a namespace's retention), and are not held to the rule.
"""

from __future__ import annotations

from django.conf import settings

from apps.audit.models import AuditEntry
from apps.tenancy.models import ApiKey

#: Audit operations that mint a key; the entry names the new key's id.
_MINTING = ("key.create", "key.rotate")
#: How far a chain of keys minted by keys is followed.
_MAX_HOPS = 8


def enabled() -> bool:
    return settings.MEMORYWEB_ERASURE_FOUR_EYES


def is_job(label: str) -> bool:
    """A background job's principal (``system:<job>``), not a person or a key."""
    return label.startswith("system:")


def identity(label: str) -> str:
    """The person or key that stands behind a principal label (see the module docstring)."""
    seen: set[str] = set()
    while label.startswith("key:") and label not in seen and len(seen) < _MAX_HOPS:
        seen.add(label)
        key_id = ApiKey.objects.filter(prefix=label[len("key:"):]).values_list("pk", flat=True).first()
        if key_id is None:
            break
        minter = (AuditEntry.objects.filter(operation__in=_MINTING, records__record_id=str(key_id))
                  .order_by("seq").values_list("actor", flat=True).first())
        if not minter or not minter.startswith(("user:", "key:")):
            break  # minted by a command: nobody on record
        label = minter
    return label


def same_identity(a: str, b: str) -> bool:
    return identity(a) == identity(b)
