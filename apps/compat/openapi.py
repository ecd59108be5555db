"""Request shapes of the drop-in routes, for the OpenAPI schema only.

The drop-in views translate their seed's bodies by hand (apps/compat/cmm.py,
memoryoss.py) and the services validate the result with apps.memories.schemas; these
serializers describe what that accepts, field by field, with the same field classes
(and so the same limits). Fields a route reads but ignores are documented as "any
value, ignored", so the schema never calls an accepted body invalid. Checked against
the running server by tests/schema/test_schemathesis.py.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

from apps.lifecycle.merged_text import CHOICES as MERGED_TEXTS
from apps.memories.models import MemoryKind
from apps.memories.schemas import (
    LIMITS,
    MetadataField,
    TagsField,
    TextField,
    UTCDateTimeField,
)

MAX_K = LIMITS["max_k"]
MAX_ID = LIMITS["max_id_length"]
#: Empty (no filter) or some non-space text.
EMPTY_OR_TEXT = RegexValidator(r"^$|[^\s\x1c-\x1f]")


class StrictBody(serializers.Serializer):
    """A body whose unknown fields are a 400 (``additionalProperties: false``)."""

    refuses_unknown_fields = True


def _ignored(what: str) -> serializers.JSONField:
    return serializers.JSONField(required=False, allow_null=True,
                                 help_text=f"Accepted and ignored: {what}")


def _unit(help_text: str = "") -> serializers.FloatField:
    return serializers.FloatField(required=False, min_value=0.0, max_value=1.0,
                                  help_text=help_text)


def _k(name: str) -> serializers.IntegerField:
    return serializers.IntegerField(required=False, min_value=1, max_value=MAX_K,
                                    help_text=f"How many results (default 5); `{name}` is "
                                    "the other spelling, `k` wins when both are given.")


# --- seed 000 (/cmm/) ---------------------------------------------------------------------

class _CmmMemory(StrictBody):
    importance = serializers.FloatField(
        required=False, min_value=0.0, help_text="Seed 000's weight: 1.0 is ordinary, larger "
        "is more important (stored as w / (1 + w) on MemoryWeb's 0..1 scale).")
    metadata = MetadataField(
        required=False, allow_null=True, help_text="Free-form; `agent_id` and `session_id` "
        "in it mean the same as the top-level fields (the agent must be the key's own).")
    tags = TagsField(required=False)
    kind = serializers.ChoiceField(choices=MemoryKind.choices, required=False)
    occurred_at = UTCDateTimeField(required=False, allow_null=True)
    expires_at = UTCDateTimeField(required=False, allow_null=True,
                                  help_text="In the future: after it the memory is not served.")
    confidence = _unit()


class CmmIngest(_CmmMemory):
    """Exactly one of ``gist``, ``content``, ``text`` carries the memory's text."""

    openapi_one_of_required = ("gist", "content", "text")
    gist = TextField(required=False, help_text="The memory's text (up to 32 KiB of UTF-8).")
    content = TextField(required=False, help_text="Another name for gist.")
    text = TextField(required=False, help_text="Another name for gist.")
    session_id = TextField(required=False, allow_blank=True, max_length=MAX_ID)
    agent_id = TextField(required=False, allow_null=True, max_length=MAX_ID,
                         help_text="The key's own agent id, or absent: it comes from the key.")
    namespace = serializers.SlugField(required=False, allow_blank=True,
                                      help_text="System-admin keys: the namespace to store in.")
    query = _ignored("/cmm/ingest_and_recall reads it.")
    k = _ignored("/cmm/ingest_and_recall reads it.")
    top_k = _ignored("/cmm/ingest_and_recall reads it.")


class CmmIngestAndRecall(CmmIngest):
    query = TextField(required=False, allow_null=True,
                      help_text="What to recall; default: the memory's text.")
    k = _k("top_k")
    top_k = _k("k")


class CmmEdit(_CmmMemory):
    """The fields to change; at most one of ``gist``, ``content``, ``text``. A memory's
    ``agent_id`` and ``session_id`` are provenance: a GET's values may be sent back
    unchanged (also inside ``metadata``), a different value is refused."""

    openapi_at_most_one_of = ("gist", "content", "text")
    gist = TextField(required=False, help_text="The new text.")
    content = TextField(required=False, help_text="Another name for gist.")
    text = TextField(required=False, help_text="Another name for gist.")
    namespace = _ignored("the memory's id names it; ?namespace= for system-admin keys.")


class CmmRecall(StrictBody):
    query = TextField(help_text="What to look for (up to 4 KiB of UTF-8).")
    k = _k("top_k")
    top_k = _k("k")
    agent_id = TextField(required=False, allow_blank=True, allow_null=True, max_length=MAX_ID,
                         validators=[EMPTY_OR_TEXT], help_text="Only this agent's memories; "
                         "empty or null: every agent's.")
    session_id = TextField(required=False, allow_blank=True, allow_null=True, max_length=MAX_ID,
                           validators=[EMPTY_OR_TEXT], help_text="Only this session's memories.")
    namespace = serializers.SlugField(required=False, allow_blank=True, allow_null=True,
                                      help_text="System-admin keys: the namespace to search.")


@extend_schema_field({"anyOf": [{"type": "string", "format": "date"},
                               {"type": "string", "maxLength": 0}], "nullable": True})
class DayOrEmptyField(serializers.CharField):
    """Seed 000's /end_of_day ``date``: a day as YYYY-MM-DD, or empty / null for today."""


class CmmMerge(StrictBody):
    """Seed 000's /merge: which namespace moves into which."""

    source = serializers.CharField(help_text="The slug of the namespace whose memories move "
                                   "(archived afterwards).")
    target = serializers.CharField(help_text="The slug of the namespace that receives them.")
    dry_run = serializers.BooleanField(required=False, help_text="Only report (default false).")


class CmmEndOfDay(StrictBody):
    """Seed 000's /end_of_day: which day's digest (default today, UTC), of the whole
    namespace or of one agent."""

    date = DayOrEmptyField(required=False, allow_blank=True, allow_null=True,
                           help_text="The day (UTC) as YYYY-MM-DD, not after today; empty or "
                           "null: today (UTC).")
    agent_id = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$", required=False, allow_blank=True,
        allow_null=True, help_text="That agent's own digest; empty or null: the whole "
        "namespace's.")
    namespace = serializers.SlugField(required=False, allow_blank=True, allow_null=True,
                                      help_text="System-admin keys: the namespace.")


#: The kinds consolidation may merge (never events nor the timeline's summaries).
CONSOLIDATED_KINDS = [k for k in MemoryKind.values if k not in (MemoryKind.EVENT, MemoryKind.SUMMARY)]
_THRESHOLD_HELP = ("The similarity at which two memories say the same thing (default "
                   "MEMORYWEB_CONSOLIDATE_THRESHOLD).")


class CmmConsolidate(StrictBody):
    """Seed 000's /consolidate: merges at once unless ``dry_run``."""

    namespace = serializers.SlugField(required=False, allow_blank=True, allow_null=True,
                                      help_text="System-admin keys: the namespace.")
    dry_run = serializers.BooleanField(required=False, allow_null=True,
                                       help_text="Only propose (default false: merge).")
    threshold = serializers.FloatField(required=False, allow_null=True, min_value=0.5,
                                       max_value=1.0, help_text=_THRESHOLD_HELP)
    agent_id = TextField(required=False, allow_null=True, allow_blank=True, max_length=128,
                         help_text="Only this agent's memories (empty or null: every agent's).")
    kind = serializers.ChoiceField(choices=CONSOLIDATED_KINDS, required=False, allow_null=True,
                                   allow_blank=True, help_text="Only memories of this kind.")
    tags = TagsField(required=False, allow_null=True,
                     help_text="Only memories with every one of these tags.")
    merged_text = serializers.ChoiceField(
        choices=MERGED_TEXTS, required=False, allow_null=True,
        help_text="What a merged memory says: its best member's text (`member`) or the "
        "summarizer's text of the group (`summary`); default: the namespace's setting.")


# --- seed 003 (/v1/) ----------------------------------------------------------------------

@extend_schema_field({"anyOf": [{"type": "boolean", "enum": [False]},
                               {"type": "array", "maxItems": 0},
                               {"type": "object", "maxProperties": 0}], "nullable": True})
class EmptyOnlyField(serializers.JSONField):
    """A seed 003 feature MemoryWeb refuses (client-side embeddings and the like): only an
    empty value (null, false, [], {}) is accepted."""


def _unsupported(what: str) -> EmptyOnlyField:
    return EmptyOnlyField(required=False, allow_null=True, help_text=f"Not supported ({what}): "
                          "only an empty value (null, false, [], {}) is accepted.")


MEMORY_TYPES = ["semantic", "episodic", "procedural", "working", *MemoryKind.values]
#: Seed 003's types consolidation may merge (never events nor the timeline's summaries).
CONSOLIDATED_MEMORY_TYPES = [t for t in MEMORY_TYPES
                             if t not in (MemoryKind.EVENT, MemoryKind.SUMMARY)]


class V1Store(StrictBody):
    content = TextField(help_text="The memory's text (up to 32 KiB of UTF-8).")
    tags = TagsField(required=False)
    agent = TextField(required=False, allow_null=True, max_length=MAX_ID,
                      help_text="The key's own agent id, or absent: it comes from the key.")
    session = TextField(required=False, allow_null=True, allow_blank=True, max_length=MAX_ID)
    namespace = serializers.SlugField(required=False, allow_blank=True,
                                      help_text="System-admin keys: the namespace to store in.")
    memory_type = serializers.ChoiceField(choices=MEMORY_TYPES, required=False, allow_null=True,
                                          help_text="semantic = fact, episodic = episode, "
                                          "procedural = procedure, working = note; MemoryWeb's "
                                          "kinds as they are.")
    metadata = MetadataField(required=False)
    importance = _unit("MemoryWeb's 0..1 (0.5 is ordinary).")
    confidence = _unit()
    zero_knowledge = _unsupported("client-side embeddings")
    embedding = _unsupported("client-side embeddings")


class V1StoreBatch(serializers.Serializer):
    memories = V1Store(many=True, min_length=1, max_length=LIMITS["max_batch"],
                       help_text=f"1 to {LIMITS['max_batch']:,}, stored all or nothing, into "
                       "one namespace.")
    namespace = serializers.SlugField(required=False, allow_blank=True, allow_null=True)


class V1Recall(StrictBody):
    query = TextField(help_text="What to look for (up to 4 KiB of UTF-8).")
    limit = serializers.IntegerField(required=False, min_value=1,
                                     help_text=f"How many results (default 10; more than "
                                     f"{MAX_K} gives {MAX_K}).")
    agent = TextField(required=False, allow_null=True, max_length=MAX_ID)
    session = TextField(required=False, allow_null=True, max_length=MAX_ID)
    namespace = serializers.SlugField(required=False, allow_blank=True, allow_null=True)
    memory_type = serializers.ChoiceField(choices=MEMORY_TYPES, required=False, allow_null=True)
    tags = TagsField(required=False, allow_null=True, help_text="Memories with any of these tags.")
    before = UTCDateTimeField(required=False, allow_null=True, help_text="Stored before.")
    after = UTCDateTimeField(required=False, allow_null=True, help_text="Stored at or after.")
    consistency = serializers.ChoiceField(choices=["strong", "eventual"], required=False,
                                          allow_null=True, help_text="Recall always reads its "
                                          "own writes here.")
    cursor = _unsupported("cursor paging")
    weights = _unsupported("per-request weights; a namespace's recall_defaults set them")
    query_embedding = _unsupported("client-side query embeddings")


class V1Consolidate(StrictBody):
    """Seed 003's /v1/consolidate: merges similar memories at once unless ``dry_run``."""

    namespace = serializers.SlugField(required=False, allow_blank=True, allow_null=True)
    dry_run = serializers.BooleanField(required=False, allow_null=True,
                                       help_text="Only propose (default false: merge).")
    threshold = serializers.FloatField(required=False, allow_null=True, min_value=0.5,
                                       max_value=1.0, help_text=_THRESHOLD_HELP)
    agent = TextField(required=False, allow_null=True, max_length=128,
                      help_text="Only this agent's memories.")
    memory_type = serializers.ChoiceField(
        choices=CONSOLIDATED_MEMORY_TYPES, required=False, allow_null=True,
        help_text="Only memories of this type.")
    tags = TagsField(required=False, allow_null=True,
                     help_text="Only memories with every one of these tags.")
    merged_text = serializers.ChoiceField(
        choices=MERGED_TEXTS, required=False, allow_null=True,
        help_text="What a merged memory says: its best member's text (`member`) or the "
        "summarizer's text of the group (`summary`); default: the namespace's setting.")


class V1RecallBatch(serializers.Serializer):
    queries = V1Recall(many=True, min_length=1, max_length=10, help_text="1 to 10 recalls.")


class V1Update(StrictBody):
    id = serializers.CharField(help_text="The memory's id.")
    content = TextField(required=False)
    tags = TagsField(required=False)
    memory_type = serializers.ChoiceField(choices=MEMORY_TYPES, required=False, allow_null=True)
    metadata = MetadataField(required=False)
    importance = _unit()
    confidence = _unit()
    namespace = _ignored("the id names the memory.")


class V1Forget(StrictBody):
    """By ``ids`` (team admin), or by filters (system admin): not both."""

    ids = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True,
                                max_length=LIMITS["max_batch"])
    agent = TextField(required=False, allow_null=True, max_length=MAX_ID)
    session = TextField(required=False, allow_null=True, max_length=MAX_ID)
    namespace = serializers.SlugField(required=False, allow_blank=True, allow_null=True)
    tags = TagsField(required=False, allow_null=True, help_text="Memories with any of these tags.")
    before = UTCDateTimeField(required=False, allow_null=True, help_text="Stored before.")


#: ``?limit=`` of the drop-in lists.
PAGE_LIMIT = {"type": "integer", "minimum": 1, "maximum": LIMITS["max_page_size"]}
#: ``?offset=`` of seed 003's list.
PAGE_OFFSET = {"type": "integer", "minimum": 0, "maximum": 999_999_999}


class V1Token(serializers.Serializer):
    api_key = serializers.CharField(required=False, help_text="A MemoryWeb API key; it is "
                                    "handed back as the bearer token. Other fields are ignored.")


class V1ForgetCertified(StrictBody):
    """Select the subject by one of ``ids``, ``agent``, ``session`` or ``subject_id``."""

    openapi_one_of_required = ("ids", "agent", "session", "subject_id")

    ids = serializers.ListField(child=serializers.UUIDField(), required=False, allow_null=True,
                                allow_empty=True)
    agent = TextField(required=False, allow_null=True, max_length=MAX_ID)
    session = TextField(required=False, allow_null=True, max_length=MAX_ID)
    subject_id = TextField(required=False, allow_null=True, max_length=MAX_ID,
                           help_text="The person the memories are about (metadata.subject_id).")
    namespace = serializers.SlugField(required=False, allow_null=True, max_length=64)


#: Seed 003's "after" mode as a header.
MEMORY_AFTER_HEADER = OpenApiParameter(
    "X-Memory-After", OpenApiTypes.DATE, OpenApiParameter.HEADER,
    description="Only memories that happened on or after this date (a date-time works too).")

#: The seed 003 error shape as a response of its own (the token check's 401).
FLAT_ERROR = OpenApiResponse(response={"$ref": "#/components/schemas/FlatError"},
                             description="An unknown, revoked or expired key.")
