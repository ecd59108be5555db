"""The scheduled consolidation's state per namespace, read-only for people: the job
writes it (apps/lifecycle/tasks.py)."""

from django.contrib import admin

from apps.core.roles import Action
from apps.lifecycle.models import ConsolidationState
from apps.tenancy.admin_base import ReadOnlyAdmin


@admin.register(ConsolidationState)
class ConsolidationStateAdmin(ReadOnlyAdmin):
    scope_action = Action.EDIT
    list_display = ("namespace", "last_started_at", "last_finished_at", "last_result")
    list_select_related = ("namespace",)
