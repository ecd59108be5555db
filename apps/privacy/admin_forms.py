"""The dashboard's export and erasure-request forms (issue 17, item 1).

They only collect a selector — a namespace the person manages and at most one subject
field — and hand it to the same services REST uses (``selectors.select``,
``erasure.create``); every rule, refusal and audit entry is theirs. A refusal comes back
as a :class:`~apps.core.errors.ServiceError` and is shown on the field it names.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings

from apps.core.errors import ServiceError
from apps.core.roles import Action
from apps.tenancy.models import Namespace
from apps.tenancy.principal import Principal

#: The subject fields in the order the form shows them, with their labels.
SUBJECT_LABELS = {
    "subject_id": "Data subject id",
    "agent_id": "Agent",
    "session_id": "Session",
    "ids": "Memory ids",
}
_ID_SEPARATORS = re.compile(r"[\s,;]+")


def managed_namespaces(principal: Principal) -> list[tuple[str, str]]:
    """(slug, label) of the namespaces the person manages; system admins: all of them.
    Nothing else is offered, so the form's choices leak no other tenant's slug."""
    rows = Namespace.objects.for_principal(principal, Action.MANAGE).order_by("slug")
    return [(slug, slug if not archived else f"{slug} (archived)")
            for slug, archived in rows.values_list("slug", "archived_at")]


class SelectorForm(forms.Form):
    """A namespace and at most one of subject id, agent, session or memory ids."""

    #: Whether leaving every subject field empty (the whole namespace) is allowed.
    whole_namespace_allowed = True

    namespace = forms.ChoiceField(label="Namespace")
    subject_id = forms.CharField(
        label=SUBJECT_LABELS["subject_id"], required=False, max_length=128,
        help_text='Memories whose metadata has "subject_id" equal to this (a person).')
    agent_id = forms.CharField(label=SUBJECT_LABELS["agent_id"], required=False,
                               max_length=128, help_text="Memories stored by this agent.")
    session_id = forms.CharField(label=SUBJECT_LABELS["session_id"], required=False,
                                 max_length=128, help_text="Memories of this session.")
    ids = forms.CharField(
        label=SUBJECT_LABELS["ids"], required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "spellcheck": "false"}),
        help_text="Memory ids, separated by commas, spaces or new lines "
                  f"(at most {settings.MEMORYWEB_LIMITS['max_batch']:,}).")

    def __init__(self, *args: Any, principal: Principal, **kwargs: Any):
        super().__init__(*args, **kwargs)
        choices = managed_namespaces(principal)
        self.fields["namespace"].choices = choices
        if len(choices) == 1:
            self.fields["namespace"].initial = choices[0][0]

    def clean_ids(self) -> list[str]:
        return [part for part in _ID_SEPARATORS.split(self.cleaned_data.get("ids") or "") if part]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        given = [name for name in SUBJECT_LABELS if cleaned.get(name)]
        if len(given) > 1:
            raise forms.ValidationError(
                "Fill in one of " + ", ".join(SUBJECT_LABELS[name].lower() for name in given)
                + ", not several: one request or export selects one subject.")
        if not given and not self.whole_namespace_allowed:
            raise forms.ValidationError(
                "Name whose memories: fill in a data subject id, an agent, a session or "
                "memory ids.")
        return cleaned

    def selector_data(self) -> dict[str, Any]:
        """The selector as the services take it (REST's JSON body)."""
        data: dict[str, Any] = {"namespace": self.cleaned_data["namespace"]}
        for name in SUBJECT_LABELS:
            if self.cleaned_data.get(name):
                data[name] = self.cleaned_data[name]
        return data

    def refused(self, exc: ServiceError) -> None:
        """Show the service's refusal on the field it names (``ids.3`` -> ids)."""
        name = (exc.field or "").split(".")[0]
        self.add_error(name if name in self.fields else None, exc.message)


class ExportForm(SelectorForm):
    """Export: leave the subject empty to export the whole namespace."""


class ErasureForm(SelectorForm):
    """A new erasure request: one subject is required, a reason is recommended."""

    whole_namespace_allowed = False

    reason = forms.CharField(
        label="Reason", required=False, max_length=500,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Why: the data subject's request reference, for example. Kept with the "
                  "request, its certificate and the audit log.")

    def selector_data(self) -> dict[str, Any]:
        return {**super().selector_data(), "reason": self.cleaned_data.get("reason", "")}
