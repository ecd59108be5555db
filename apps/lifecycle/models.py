"""What the lifecycle keeps of its own: when each namespace was last consolidated on
schedule (ids and counts only: the lineage itself lives on the memories)."""

from __future__ import annotations

from django.db import models

from apps.core.scoping import NamespaceScopedQuerySet
from apps.tenancy.models import Namespace


class ConsolidationState(models.Model):
    """The scheduled consolidation of one namespace: its last run and what it did."""

    namespace = models.OneToOneField(Namespace, on_delete=models.CASCADE,
                                     related_name="consolidation_state")
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    #: Counts of the last run (candidates, merged, superseded, stale, conflicts_linked) or
    #: its error; never a memory's text or id.
    last_result = models.JSONField(default=dict, blank=True)

    objects = NamespaceScopedQuerySet.as_manager()

    def __str__(self) -> str:
        return f"consolidation of {self.namespace_id}"
