"""``{{ value|as_json }}``: JSON values (audit summaries, record ids) shown as JSON.

Without it a template prints Python's repr (``{'count': 250, 'flag': True}``), which
reads wrong next to the audit entry page and the API, both of which speak JSON.
"""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder

register = template.Library()


@register.filter
def as_json(value: Any) -> str:
    """Compact JSON (autoescaped by the template like any other text), keys sorted: the
    same entry reads the same on SQLite and on PostgreSQL (jsonb reorders keys)."""
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, sort_keys=True)
