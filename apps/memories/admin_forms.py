"""The dashboard's memory forms: the edit form (the service layer's own validation) and the
bulk re-tag / re-kind forms."""

from __future__ import annotations

from django import forms

from apps.core.errors import ServiceError
from apps.memories import schemas
from apps.memories.models import Memory, MemoryKind
from apps.memories.services import EDITABLE_FIELDS


class MemoryForm(forms.ModelForm):
    """Runs the service layer's own validation, so refusals show on the form, not as a 500."""

    class Meta:
        model = Memory
        fields = ["namespace", *EDITABLE_FIELDS]

    def clean(self):
        cleaned = super().clean()
        data = {f: cleaned[f] for f in EDITABLE_FIELDS if cleaned.get(f) is not None}
        if self.instance.pk:  # an edit sends only what changed (save_model): check that
            data = {f: v for f, v in data.items() if f in self.changed_data}
        try:
            schemas.validate(schemas.MemoryUpdate if self.instance.pk else schemas.MemoryInput, data,
                             partial=bool(self.instance.pk))
        except ServiceError as exc:
            field = exc.field.split(".")[0].split("[")[0] if exc.field else None
            self.add_error(field if field in self.fields else None, exc.message)
        return cleaned


class TagsForm(forms.Form):
    add = forms.CharField(required=False, help_text="Comma-separated tags to add.")
    remove = forms.CharField(required=False, help_text="Comma-separated tags to remove.")

    @staticmethod
    def split(text: str) -> list[str]:
        return [tag.strip() for tag in text.split(",") if tag.strip()]


class KindForm(forms.Form):
    kind = forms.ChoiceField(choices=MemoryKind.choices)
