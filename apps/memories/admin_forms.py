"""The dashboard's memory forms: the edit form (the service layer's own validation) and the
bulk re-tag / re-kind forms.

Tags are typed as ``ops, billing`` (issue 17 item 5): the edit form took JSON
(``["ops","billing"]``) while bulk re-tag took commas, so "a, b" was "Enter a valid JSON."
A JSON list is still read, so older scripts and bookmarks that post one keep working.
Metadata is a JSON editor: pretty-printed, and a parse error names what is wrong and where.
``static/dashboard/edit.js`` adds chips and live JSON feedback; without it both are plain
inputs that the server parses the same way.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput

from apps.core import parsers
from apps.core.errors import ServiceError
from apps.core.parsers import BoundedJSONFormField
from apps.memories import schemas
from apps.memories.models import Memory, MemoryKind
from apps.memories.services import EDITABLE_FIELDS

LIMITS = schemas.LIMITS


def split_tags(text: str) -> list[str]:
    """``"ops, billing ,, ops"`` -> ``["ops", "billing"]``: trimmed, no blanks, first
    occurrence kept (the order the service keeps, schemas.TagsField)."""
    return list(dict.fromkeys(tag.strip() for tag in text.split(",") if tag.strip()))


def parse_tags(text: str) -> list[str]:
    """Comma-separated tags, or a JSON list of strings (the old input, still accepted).

    Text that starts with ``[`` but is not a JSON list of strings is read as commas, so a
    tag may begin with a bracket; the service's validation then judges each tag."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
            return list(dict.fromkeys(tag.strip() for tag in value if tag.strip()))
    return split_tags(text)


class TagsInput(forms.TextInput):
    """A comma input; edit.js turns it into chips (and keeps this input's value in step)."""

    def __init__(self, attrs: dict[str, Any] | None = None):
        super().__init__({"class": "vTextField mw-tags-input", "data-mw-tags": "",
                          "autocomplete": "off", "placeholder": "e.g. ops, billing",
                          "data-max-tags": LIMITS["max_tags"],
                          "data-max-length": LIMITS["max_tag_length"], **(attrs or {})})


class TagsField(forms.Field):
    """Tags as a list, typed as commas; checked by the service layer's ``TagsField``, so
    the limits and messages are the API's, with the offending tag named."""

    widget = TagsInput
    default_help_text = (f"Comma-separated, e.g. <kbd>ops, billing</kbd>. At most "
                         f"{LIMITS['max_tags']} tags of {LIMITS['max_tag_length']} characters.")

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", self.default_help_text)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return ", ".join(str(tag) for tag in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if value in self.empty_values:
            return []
        if isinstance(value, (list, tuple)):
            return [str(tag) for tag in value]
        return parse_tags(str(value))

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        try:
            schemas.validate(schemas.MemoryUpdate, {"tags": value}, partial=True)
        except ServiceError as exc:
            raise ValidationError(tag_error(value, exc), code="invalid") from None

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return list(initial or []) != self.to_python(data)
        except ValidationError:
            return True


def tag_error(tags: list[str], exc: ServiceError) -> str:
    """The service's message about ``tags[3]``, saying which tag that is."""
    field = exc.field or ""
    message = exc.message.removeprefix(f"{field}: ") if field else exc.message
    if field.startswith("tags[") and field.endswith("]"):
        index = int(field[5:-1])
        if 0 <= index < len(tags):
            tag = tags[index] if len(tags[index]) <= 40 else tags[index][:39] + "…"
            return f"Tag “{tag}”: {message}"
    if exc.code == "max_length" or "no more than" in message:
        return f"At most {LIMITS['max_tags']} tags ({len(tags)} given)."
    return message


class JSONEditor(forms.Textarea):
    """A monospace box for a JSON object; edit.js checks it as it is typed."""

    def __init__(self, attrs: dict[str, Any] | None = None):
        super().__init__({"class": "vLargeTextField mw-json-editor", "rows": 8,
                          "spellcheck": "false", "autocapitalize": "off",
                          "autocomplete": "off", "data-mw-json": "object",
                          "data-max-depth": schemas.MAX_METADATA_DEPTH, **(attrs or {})})


class MetadataField(BoundedJSONFormField):
    """A JSON object, shown pretty-printed. Broken JSON is refused with the parser's own
    words and position ("Expecting ',' delimiter at line 3, column 5") instead of "Enter a
    valid JSON."; then the service layer's ``MetadataField`` (object, depth, size,
    characters). Still a :class:`BoundedJSONFormField`: text nested past
    ``MEMORYWEB_MAX_JSON_DEPTH`` is refused before it is parsed. A blank box is ``{}``."""

    widget = JSONEditor
    default_help_text = ("A JSON object, e.g. <code>{\"subject_id\": \"jane\"}</code>; "
                         f"nested at most {schemas.MAX_METADATA_DEPTH} levels.")

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", self.default_help_text)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Any:
        if self.disabled:
            return value
        if value in self.empty_values or (isinstance(value, str) and not value.strip()):
            return {}
        return self._parse(value) if isinstance(value, str) else value

    def _parse(self, text: str) -> Any:
        try:
            return parsers.loads(text, strict=True)
        except parsers.JSONTooDeep as exc:
            raise ValidationError(str(exc), code="invalid") from None
        except json.JSONDecodeError as exc:
            raise ValidationError(f"Not valid JSON: {exc.msg} at line {exc.lineno}, column "
                                  f"{exc.colno}.", code="invalid") from None
        except ValueError as exc:  # NaN / Infinity (strict), bad UTF-8
            raise ValidationError(f"Not valid JSON: {exc}.", code="invalid") from None

    def validate(self, value: Any) -> None:
        super().validate(value)
        if not isinstance(value, dict):
            kind = "a list" if isinstance(value, list) else "a single value"
            raise ValidationError(f"Metadata must be a JSON object ({{\"key\": value, …}}), "
                                  f"not {kind}.", code="invalid")
        try:
            schemas.validate(schemas.MemoryUpdate, {"metadata": value}, partial=True)
        except ServiceError as exc:
            raise ValidationError(exc.message, code="invalid") from None

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True,
                          cls=self.encoder)  # one order on SQLite and PostgreSQL (jsonb reorders)


class MemoryForm(forms.ModelForm):
    """Runs the service layer's own validation, so refusals show on the form, not as a 500."""

    tags = TagsField()
    metadata = MetadataField()

    class Meta:
        model = Memory
        fields = ["namespace", *EDITABLE_FIELDS]

    class Media:
        css = {"all": ["dashboard/edit.css"]}
        js = [forms.Script("dashboard/edit.js", defer=True)]

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
            if field not in self.fields:
                field = None
            if field is None or field not in self.errors:  # one message per field
                self.add_error(field, exc.message)
        return cleaned


class TagsForm(forms.Form):
    add = forms.CharField(required=False, help_text="Comma-separated tags to add.")
    remove = forms.CharField(required=False, help_text="Comma-separated tags to remove.")

    @staticmethod
    def split(text: str) -> list[str]:
        return [tag.strip() for tag in text.split(",") if tag.strip()]


class KindForm(forms.Form):
    kind = forms.ChoiceField(choices=MemoryKind.choices)
