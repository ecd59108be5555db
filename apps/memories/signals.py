"""Keep derived SQL data in step with writes that do not go through the services."""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_delete, post_migrate
from django.dispatch import receiver

from apps.memories import lexical
from apps.tenancy import changes as tenancy_changes
from apps.tenancy.models import Namespace


@receiver(tenancy_changes.namespace_deleting, dispatch_uid="memories.forget_namespace")
def forget_namespace(sender: type[Namespace], namespace: Namespace, **kwargs: Any) -> None:
    """Before a namespace's rows go (tenancy.namespaces.delete_namespace): what the
    cascade leaves, through the write path (writes.forget_namespace)."""
    from apps.memories import writes  # writes imports the stores, which import these models

    writes.forget_namespace(namespace)


@receiver(post_delete, sender=Namespace, dispatch_uid="memories.drop_keyword_table")
def drop_keyword_table(sender: type[Namespace], instance: Namespace, **kwargs: Any) -> None:
    """A deleted namespace takes its keyword table along, in the same transaction.

    A signal rather than a call in ``services.delete_namespace``: the admin, a queryset
    delete or any future cleanup deletes namespaces through the ORM too, and an orphan
    table would keep the deleted tenant's words on disk. The cascade deletes of its
    memories need no per-row unindexing: the whole table goes.
    """
    lexical.drop(instance.pk)


@receiver(post_migrate, dispatch_uid="memories.drop_orphan_keyword_tables")
def drop_orphan_keyword_tables(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """After ``migrate`` or ``flush``: drop keyword tables whose namespace is gone.

    ``flush`` empties the namespaces table but leaves virtual tables alone; if it also
    resets the id sequence, a new namespace would inherit an old one's table and words.
    """
    if getattr(sender, "label", None) == "memories" and using == DEFAULT_DB_ALIAS:
        lexical.drop_orphans()
